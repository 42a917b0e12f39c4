# shellcheck shell=bash
# Shared by the scripts: find or install redis-server, pick a free loopback port, start and
# stop a throwaway server. Source it; it defines functions only.

# Makes sure redis-server (and redis-cli) exist: installs Debian's package when we are root,
# otherwise says the one command to run. Returns non-zero when it cannot.
ensure_redis_server() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing; installing Debian's package (redis-server)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }; then
      echo "error: installing redis-server failed" >&2
      return 1
    fi
    # The package starts a system service on 6379 on some systems; we use our own servers.
    return 0
  fi
  echo "error: redis-server is not installed. Install it with: sudo apt-get install -y redis-server" >&2
  return 1
}

# Prints a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 - <<'PY' 2>/dev/null || echo $(( 20000 + RANDOM % 20000 ))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# start_redis DIR PORT: starts a throwaway redis-server (no persistence) with its files in DIR,
# writes DIR/redis.pid, waits until it answers PING. Returns non-zero if it does not come up.
start_redis() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" --daemonize yes >/dev/null || return 1
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "error: redis-server on port $port did not start; see $dir/redis.log" >&2
  return 1
}

# stop_redis DIR: stops the server whose pid file is in DIR, if it runs.
stop_redis() {
  local pidfile=$1/redis.pid
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  rm -f "$pidfile"
}

# pid_alive PID: is that process still running? A zombie counts as ended: a daemonized
# redis-server that exited waits, as a zombie, for init to reap it, and some inits take a
# second or more to do that.
pid_alive() {
  local stat
  if [ -d /proc/self ]; then
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
  else
    kill -0 "$1" 2>/dev/null
  fi
}

# shellcheck shell=bash
# Shared by the scripts: find or install redis-server, pick a free loopback port, start and
# stop a throwaway server, and the local topologies built of them (a Redis Cluster of three
# primaries with a replica each; a primary, a replica and three sentinels). Source it; it
# defines functions only.

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

# Prints a port P <= 55535 on 127.0.0.1 such that P and P + 10000 (a cluster node's bus port)
# are both free right now.
free_cluster_port() {
  python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(1000):
    p = random.randint(20000, 55535)
    if free(p) and free(p + 10000):
        print(p); break
PY
}

# start_redis DIR PORT [ARGS...]: starts a throwaway redis-server (no persistence) with its files
# in DIR and ARGS added to its options, writes DIR/redis.pid, waits until it answers PING.
# Returns non-zero if it does not come up.
start_redis() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" --daemonize yes "$@" >/dev/null || return 1
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

# wait_for SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds; non-zero after SECONDS.
wait_for() {
  local limit=$1 i
  shift
  for i in $(seq 1 $((limit * 10))); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

# cluster_ok PORT: does the node on PORT say cluster_state:ok?
cluster_ok() {
  redis-cli -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

# cluster_complete PORT: cluster_state:ok, and the node on PORT sees three replicas (the
# replicas' roles spread after the slots do).
cluster_complete() {
  cluster_ok "$1" && [ "$(redis-cli -p "$1" cluster nodes 2>/dev/null | grep -cE '[ ,]slave ')" = 3 ]
}

# start_cluster STATE PORT...: six nodes (three primaries, three replicas) in STATE/cluster-N,
# joined with `redis-cli --cluster create`; waits until every node says cluster_state:ok and
# sees the three replicas.
start_cluster() {
  local state=$1 i=0 port addresses=()
  shift
  for port in "$@"; do
    i=$((i + 1))
    rm -rf "$state/cluster-$i"
    start_redis "$state/cluster-$i" "$port" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 5000 || return 1
    echo "$port" >"$state/cluster-$i/port"
    addresses+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$state/cluster-1/create.log" 2>&1 || {
    echo "error: redis-cli --cluster create failed; see $state/cluster-1/create.log" >&2
    return 1
  }
  for port in "$@"; do
    wait_for 60 cluster_complete "$port" || {
      echo "error: the cluster node on port $port never reached cluster_state:ok with three replicas" >&2
      return 1
    }
  done
}

# sentinel_knows PORT NAME: does the sentinel on PORT name the primary of NAME?
sentinel_knows() {
  redis-cli -p "$1" sentinel get-master-addr-by-name "$2" 2>/dev/null | grep -q .
}

# start_sentinel STATE NAME PRIMARY REPLICA S1 S2 S3: a primary, its replica and three sentinels
# monitoring it as NAME (quorum 2), in STATE/sentinel-*; waits until every sentinel names it.
start_sentinel() {
  local state=$1 name=$2 primary=$3 replica=$4 i=0 port dir
  shift 4
  rm -rf "$state/sentinel-primary" "$state/sentinel-replica"
  start_redis "$state/sentinel-primary" "$primary" || return 1
  echo "$primary" >"$state/sentinel-primary/port"
  start_redis "$state/sentinel-replica" "$replica" --replicaof 127.0.0.1 "$primary" || return 1
  echo "$replica" >"$state/sentinel-replica/port"
  for port in "$@"; do
    i=$((i + 1))
    dir="$state/sentinel-$i"
    rm -rf "$dir"
    mkdir -p "$dir"
    # A sentinel rewrites its configuration file: each has its own.
    cat >"$dir/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
dir $dir
logfile $dir/redis.log
pidfile $dir/redis.pid
daemonize yes
sentinel monitor $name 127.0.0.1 $primary 2
sentinel down-after-milliseconds $name 5000
sentinel failover-timeout $name 10000
CONF
    redis-server "$dir/sentinel.conf" --sentinel >/dev/null || return 1
    echo "$port" >"$dir/port"
  done
  for port in "$@"; do
    wait_for 30 sentinel_knows "$port" "$name" || {
      echo "error: the sentinel on port $port does not name the primary of $name" >&2
      return 1
    }
  done
}

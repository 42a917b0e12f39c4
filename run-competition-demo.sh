#!/usr/bin/env bash
# Seed 002's lock competition, played on one machine: builds leasectl, uses your configured
# Redis or else a throwaway local redis-server (three with --quorum), then runs four rounds of
# `leasectl run` instances racing for one lease (five in quorum mode), with each instance's
# output prefixed and coloured. Stops everything it started when it ends, fails or is
# interrupted. `--help` explains.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./run-competition-demo.sh [--quorum | --endpoint URL...] [--no-build] [--fast]

Plays seed 002's distributed-lock scenarios with `leasectl run` instances on this machine:
  1. two instances start at the same moment: exactly one wins, the other says who holds it
  2. three regions start at the same moment: exactly one winner
  3. takeover after a graceful release: a waiting instance gets the lease right away
  4. takeover after a crash: the holder is killed (SIGKILL); the lease is taken once its
     TTL runs out
  5. (--quorum only) an instance goes down: one of the three redis-servers is stopped
     (SIGTERM); two instances starting at once still give exactly one winner, and
     `leasectl inspect` shows the stopped server with an error

Redis: the one you configured (appsettings.Local.json here or in ~/.config/leasectl/, or
RedisLeasing__ConnectionString / RedisLeasing__Endpoints in the environment); otherwise a
throwaway redis-server on a free loopback port, installed with apt-get when missing and
running as root. On a configured Redis (or one given with --endpoint) the demo's keys live
under the key prefix 'leasectl-demo:': the lease leasectl-demo:critical-section-lock and its
fencing counter leasectl-demo:@fence{leasectl-demo:critical-section-lock}, which stays (counters are never
deleted) and goes on counting from run to run. If an earlier run left that lease held (it
was killed before it could release it), the demo waits for it to expire first.

Quorum mode (Redlock): a lease is held when a majority of independent Redis servers granted
it. --quorum starts three throwaway redis-servers and gives all three to every leasectl call
(a lease needs two of them); repeated --endpoint flags, or Endpoints in your settings, play
the first four rounds on your servers.

Options:
  --quorum        quorum mode on three throwaway local redis-servers, with round 5
  --endpoint URL  use this Redis (redis://host:port, rediss://..., or host:port,password=...);
                  repeat it for quorum mode on your own servers
  --no-build      do not run cargo; use the existing target/debug/leasectl
  --fast          shorter work and TTLs (the rounds take about 15 seconds instead of 35;
                  with --quorum, 20 instead of 40)
  -h, --help      this help

Exit status: 0 when every round had exactly one holder at a time, 1 otherwise or on an
error, 2 for a usage mistake, 130 when interrupted.
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
me=$(basename "$0")

if [ -z "${BASH_VERSINFO[0]:-}" ] || [ "${BASH_VERSINFO[0]}" -lt 4 ]; then
  echo "$me: error: needs bash 4 or newer (this is ${BASH_VERSION:-not bash})" >&2
  exit 1
fi

endpoints=()
build=1
fast=0
quorum_own=0  # --quorum: three throwaway servers of our own, and round 5
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --endpoint)
      if [ $# -lt 2 ] || [ -z "$2" ]; then
        echo "$me: --endpoint needs a URL (see --help)" >&2
        exit 2
      fi
      endpoints+=("$2"); shift 2 ;;
    --endpoint=?*) endpoints+=("${1#--endpoint=}"); shift ;;
    --endpoint=) echo "$me: --endpoint needs a URL (see --help)" >&2; exit 2 ;;
    --no-build) build=0; shift ;;
    --fast) fast=1; shift ;;
    --quorum) quorum_own=1; shift ;;
    *) echo "$me: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$quorum_own" = 1 ] && [ "${#endpoints[@]}" -gt 0 ]; then
  echo "$me: --quorum starts its own three servers; it does not go with --endpoint (see --help)" >&2
  exit 2
fi

# leasectl looks for appsettings*.json in the current directory: work from the repository.
cd "$here"
# shellcheck source=scripts/lib/redis.sh
. scripts/lib/redis.sh

# Timestamps (EPOCHREALTIME) with a '.' whatever the locale.
export LC_NUMERIC=C

# Colours: only on a terminal, and never with NO_COLOR set.
color=0
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then color=1; fi
paint() { # paint SGR TEXT
  if [ "$color" = 1 ]; then printf '\033[%sm%s\033[0m' "$1" "$2"; else printf '%s' "$2"; fi
}
say() { printf '%s\n' "$(paint 2 "  ▸") $*"; }
header() { printf '\n%s\n' "$(paint '1;4' "$*")"; }
now() { printf '%s' "${EPOCHREALTIME:-$(date +%s)}"; }

# Durations: normal pace, or --fast.
if [ "$fast" = 1 ]; then
  work1=2s work2=2s ttl3=2s work3=3s work3b=1s ttl4=3s work4b=1s ttl5=2s work5=3s pause=0
else
  work1=7s work2=4s ttl3=3s work3=7s work3b=3s ttl4=5s work4b=3s ttl5=3s work5=5s pause=1
fi

# ---------------------------------------------------------------------------------------------
# Everything this script starts, so that cleanup can stop it.
tmp=""
redis_dirs=()  # throwaway redis-servers: their folders, with their pid files
running=()  # leasectl pids not yet reaped
readers=()  # output relays not yet reaped
declare -A rc_of=()  # exit code of each reaped leasectl pid

# reap PID: waits for a leasectl instance, notes its exit code, drops it from `running`.
# With stderr off: bash's own "Killed" report for the crashed instance would clutter the output.
reap() {
  local kept=() p rc=0
  { wait "$1"; } 2>/dev/null || rc=$?
  rc_of[$1]=$rc
  for p in "${running[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  running=("${kept[@]}")
}

# stop_own_redis DIR: stops a throwaway redis-server with SIGTERM through its pid file and
# waits until it has exited (not until init has reaped it: see pid_alive). Also when
# interrupted right after redis-server forked: it writes its pid file a moment later.
stop_own_redis() {
  local pidfile=$1/redis.pid pid _
  if [ -f "$1/redis.log" ] && [ ! -f "$pidfile" ]; then
    for _ in $(seq 1 20); do [ -f "$pidfile" ] && break; sleep 0.05; done
  fi
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    pid_alive "$pid" || break
    sleep 0.05
  done
  rm -f "$pidfile"
}

cleanup() {
  local status=$? p
  set +e
  trap - EXIT INT TERM
  if [ "${#running[@]}" -gt 0 ]; then
    # SIGTERM: leasectl releases its lease before it exits.
    for p in "${running[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 1 50); do
      local alive=0
      for p in "${running[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for p in "${running[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${running[@]}"; do wait "$p" 2>/dev/null; done
  fi
  # The relays end when their instance's output closes (let them print its last lines);
  # make sure anyway.
  for _ in $(seq 1 20); do
    local reading=0
    for p in "${readers[@]}"; do kill -0 "$p" 2>/dev/null && reading=1; done
    [ "$reading" = 0 ] && break
    sleep 0.05
  done
  for p in "${readers[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${readers[@]}"; do wait "$p" 2>/dev/null; done
  for p in "${redis_dirs[@]}"; do stop_own_redis "$p"; done
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'echo; echo "$me: interrupted; stopping what it started" >&2; exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/leasectl-demo.XXXXXX")

# ---------------------------------------------------------------------------------------------
# The binary.
bin="${CARGO_TARGET_DIR:-$here/target}/debug/leasectl"
case $bin in /*) ;; *) bin="$here/$bin" ;; esac
if [ "$build" = 1 ]; then
  if ! command -v cargo >/dev/null 2>&1; then
    echo "$me: error: cargo not found; install Rust (https://rustup.rs) or pass --no-build" >&2
    exit 1
  fi
  echo "Building leasectl (cargo build; the first build takes a few minutes, later ones seconds)..."
  cargo build --quiet --bin leasectl
fi
if [ ! -x "$bin" ]; then
  echo "$me: error: $bin does not exist; run without --no-build to build it" >&2
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# Which Redis: the configured one (leasectl resolves it and its secrets itself) or a throwaway.

# host:port of an endpoint, for messages: no scheme, user, password or options.
endpoint_address() {
  local text=${1#*://}
  text=${text##*@}
  text=${text%%/*}
  printf '%s' "${text%%,*}"
}

# Where an endpoint is configured, or nothing. Mirrors leasectl's lookup: the environment,
# then appsettings.Local.json / appsettings.json here or in ~/.config/leasectl/.
configured_source() {
  local var value
  while IFS='=' read -r var value; do
    case ${var,,} in
      redisleasing__connectionstring | redisleasing__endpoints* | redisleasing__endpoint)
        if [ -n "${value//[[:space:]]/}" ]; then printf '%s in the environment' "$var"; return; fi ;;
    esac
  done < <(env)
  local config_dir=${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}/leasectl file
  for file in appsettings.Local.json "$config_dir/appsettings.Local.json" \
    appsettings.json "$config_dir/appsettings.json"; do
    if [ -f "$file" ] && grep -qiE '"(ConnectionString|Endpoints?)"[[:space:]]*:[[:space:]]*("[^"[:space:]]|\[)' "$file"; then
      # shellcheck disable=SC2088 # a name to show, not a path to use
      case $file in "${HOME:-/nonexistent}"/*) file="~/${file#"$HOME"/}" ;; esac
      printf '%s' "$file"
      return
    fi
  done
}

# Every leasectl call gets these.
common=()
source_note=""
if [ "${#endpoints[@]}" -gt 0 ]; then
  addresses=()
  for e in "${endpoints[@]}"; do
    common+=(--endpoint "$e")
    addresses+=("$(endpoint_address "$e")")
  done
  source_note="the Redis given with --endpoint (${addresses[*]})"
else
  where=$(configured_source)
  if [ -n "$where" ]; then source_note="your configured Redis ($where)"; fi
fi

# start_own_redis: starts a throwaway redis-server on a free loopback port (its folder is
# added to redis_dirs, for cleanup); sets own_port. Not in a subshell: redis_dirs must last.
own_port=""
start_own_redis() {
  local dir="$tmp/redis-$((${#redis_dirs[@]} + 1))" candidate
  redis_dirs+=("$dir")
  for _ in 1 2 3; do
    candidate=$(free_port)
    # A server that was already there would answer too: check that it is ours (its folder).
    if start_redis "$dir" "$candidate" 2>"$tmp/redis.err" \
      && [ "$(redis-cli -p "$candidate" config get dir 2>/dev/null | sed -n 2p)" = "$dir" ]; then
      echo "$candidate" >"$dir/port"
      own_port=$candidate
      return 0
    fi
    stop_own_redis "$dir"
  done
  cat "$tmp/redis.err" >&2
  echo "$me: error: could not start a throwaway redis-server" >&2
  return 1
}

shared=0
if [ "$quorum_own" = 0 ] && [ -n "$source_note" ]; then
  # A Redis others may use: keep the demo's keys apart, under one fixed prefix (a new prefix
  # per run would leave a fencing counter behind every time).
  shared=1
  prefix="leasectl-demo:"
  common+=(--key-prefix "$prefix")
  redis_note="$source_note; the demo's keys live under '$prefix'"
else
  ensure_redis_server || exit 1
  ports=()
  for _ in $(seq 1 $((quorum_own ? 3 : 1))); do
    start_own_redis || exit 1
    ports+=("$own_port")
    common+=(--endpoint "redis://127.0.0.1:$own_port")
  done
  if [ "$quorum_own" = 1 ]; then
    redis_note="three throwaway redis-servers on 127.0.0.1, ports ${ports[*]} (stopped at the end)"
    if [ -n "$source_note" ]; then redis_note+="; not $source_note"; fi
  else
    redis_note="a throwaway redis-server on 127.0.0.1:${ports[0]} (stopped at the end)"
  fi
fi

started_at=$SECONDS
printf '%s\n' "$(paint 1 "leasectl lock competition: seed 002's demo scenarios")"
say "Redis: $redis_note"
if ! "$bin" "${common[@]}" inspect --json >"$tmp/check.json" 2>"$tmp/check.err"; then
  cat "$tmp/check.err" >&2
  echo "$me: error: cannot use that Redis (see the message above)" >&2
  exit 1
fi
# Quorum mode (--quorum, several --endpoint or configured Endpoints): inspect lists each
# instance's view.
servers=$(grep -o '"address":' "$tmp/check.json" | wc -l || true)
quorum=0
if [ "$servers" -gt 1 ]; then
  quorum=1
  say "quorum mode (Redlock): a lease is held when $((servers / 2 + 1)) of the $servers servers granted it"
fi
rounds=4
if [ "$quorum_own" = 1 ]; then rounds=5; fi

# ---------------------------------------------------------------------------------------------
# Instances: each runs in the background, its output goes through a FIFO to a relay that
# keeps a timestamped log (to watch for states) and prints the lines with the instance's name.

color_of() {
  case $1 in
    us-east-1) echo 36 ;;
    eu-west-1) echo 35 ;;
    ap-south-1) echo 33 ;;
    *) echo 34 ;;
  esac
}

# Whether the relays show the holder table a losing instance prints (set per round).
show_tables=1

# relay NAME LOG: prints stdin (an instance's output) with NAME in front of every line, and
# keeps it with timestamps in LOG. A holder table is printed in one piece, so that the
# tables of two instances do not interleave line by line.
relay() {
  local name=$1 log=$2 line body prefix block=""
  # Ctrl-C reaches the whole process group: keep relaying what the instance says as it stops.
  trap '' INT
  prefix="$(paint "1;$(color_of "$name")" "$(printf '%-10s' "$name")") $(paint "$(color_of "$name")" "│")"
  exec 3>>"$log"
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\t%s\n' "$(now)" "$line" >&3
    case $line in
      # leasectl run's banner: the prefix already names the instance.
      "" | ======* | "DISTRIBUTED LOCK DEMO - REDIS" | "Instance ID: "* | "Region: "*) continue ;;
      "    "*)
        if [ "$show_tables" = 1 ]; then block+="$prefix $line"$'\n'; fi
        continue ;;
    esac
    if [ -n "$block" ]; then printf '%s' "$block"; block=""; fi
    body=${line#"[$name] "}
    case $body in
      *"✓ Lock acquired"*) body=$(paint 32 "$body") ;;
      *"✗ "*) body=$(paint 31 "$body") ;;
    esac
    printf '%s %s\n' "$prefix" "$body"
  done
  if [ -n "$block" ]; then printf '%s' "$block"; fi
}

round=0
starts=0  # instances started so far: names their files
names=()
pids=()
logs=()

# start NAME REGION [run flags...]: starts `leasectl run` in the background.
start() {
  local name=$1 region=$2
  shift 2
  starts=$((starts + 1))
  local log="$tmp/$starts.$name.log" fifo="$tmp/$starts.$name.fifo"
  : >"$log"
  mkfifo "$fifo"
  relay "$name" "$log" <"$fifo" &
  readers+=("$!")
  "$bin" "${common[@]}" run --instance "$name" --region "$region" "$@" >"$fifo" 2>&1 &
  running+=("$!")
  names+=("$name")
  pids+=("$!")
  logs+=("$log")
}

# index_of NAME: its position in this round's arrays.
index_of() {
  local i
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = "$1" ]; then echo "$i"; return; fi
  done
  return 1
}

# wait_for NAME TEXT SECONDS: until the instance prints TEXT; fails if it ends first or on time.
wait_for() {
  local i deadline
  i=$(index_of "$1")
  deadline=$((SECONDS + $3))
  while ! grep -qF -- "$2" "${logs[$i]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      grep -qF -- "$2" "${logs[$i]}"
      return
    fi
    sleep 0.05
  done
}

# finish SECONDS: waits for this round's instances (stopping any still running after SECONDS),
# sets rcs[] to their exit codes.
rcs=()
finish() {
  local deadline=$((SECONDS + $1)) i p alive
  while [ "${#running[@]}" -gt 0 ]; do
    alive=0
    for p in "${running[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "$(paint 31 "still running after ${1}s: stopping it")"
      for p in "${running[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
      sleep 2
      for p in "${running[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
      break
    fi
    sleep 0.05
  done
  while [ "${#running[@]}" -gt 0 ]; do reap "${running[0]}"; done
  rcs=()
  for i in "${!pids[@]}"; do rcs[i]=${rc_of[${pids[$i]}]}; done
  # Let the relays print the last lines before the next header.
  for i in "${readers[@]}"; do wait "$i" 2>/dev/null || true; done
  readers=()
}

# new_round TITLE EXPLANATION
new_round() {
  round=$((round + 1))
  names=() pids=() logs=() rcs=()
  if [ "$round" -gt 1 ] && [ "$pause" != 0 ]; then sleep "$pause"; fi
  header "Round $round of $rounds: $1"
  say "$2"
}

# time_of NAME TEXT: when the instance printed TEXT (epoch seconds), or nothing.
time_of() {
  local i
  i=$(index_of "$1") || return 0
  awk -F'\t' -v text="$2" 'index($2, text) { print $1; exit }' "${logs[$i]}"
}

# not_before A B: is B at least A (less 50 ms for the relays' timestamps)?
not_before() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && b >= a - 0.05) }'; }
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fs", b - a }'; }
# The relays' timestamps are a few milliseconds apart at best: below 10 ms it is "at once".
milliseconds_between() {
  awk -v a="$1" -v b="$2" 'BEGIN { d = (b - a) * 1000; if (d < 10) print "within 10 ms of"; else printf "%d ms after\n", d }'
}

acquired() { # acquired NAME: did it print "✓ Lock acquired"?
  local i
  i=$(index_of "$1") || return 1
  grep -qF "✓ Lock acquired" "${logs[$i]}"
}

summary=()
failed=0
record() { # record OK|FAIL TEXT
  local mark
  if [ "$1" = OK ]; then mark=$(paint 32 "✓"); else mark=$(paint 31 "✗"); failed=1; fi
  summary+=("  $mark Round $round: $2")
}

# race NAME:REGION... -- RUN FLAGS...: starts the instances one right after the other, in a
# random order (so that starting first is no advantage that shows round after round).
race() {
  local entries=() i j tmp_entry
  while [ "$1" != -- ]; do entries+=("$1"); shift; done
  shift
  for ((i = ${#entries[@]} - 1; i > 0; i--)); do
    j=$((RANDOM % (i + 1)))
    tmp_entry=${entries[i]} entries[i]=${entries[j]} entries[j]=$tmp_entry
  done
  for i in "${entries[@]}"; do start "${i%%:*}" "${i#*:}" "$@"; done
}

# split_vote: did nobody win because the votes split? In quorum mode each racer may get the
# lease on a minority of the servers only: then each undoes its part and exits 3 naming
# another racer as the holder, and the lease is free. (Redlock's answer is to try again after
# a random pause; `leasectl run` without --wait does not.)
split_vote() {
  local i
  [ "$quorum" = 1 ] || return 1
  for i in "${!names[@]}"; do
    if acquired "${names[$i]}" || [ "${rcs[$i]}" != 3 ]; then return 1; fi
  done
  "$bin" "${common[@]}" inspect --json 2>/dev/null | sed 's/,"instances":.*//' | grep -qF '"held":false'
}

# contest TITLE NAME:REGION... -- RUN FLAGS...: a race round, judged. A split vote is told
# and raced again (twice at most). during_race, when set, names a function to call while
# the instances run.
during_race=""
contest() {
  local title=$1 splits=0
  shift
  while :; do
    race "$@"
    if [ -n "$during_race" ]; then "$during_race"; fi
    finish 30
    if [ "$splits" -lt 2 ] && split_vote; then
      splits=$((splits + 1))
      say "$(paint 33 "split vote: each instance got the lease on a minority of the servers, so nobody holds it")"
      say "$(paint 33 "(each undid its part and named another as the holder; leasectl run does not retry): racing again")"
      names=() pids=() logs=() rcs=()
      continue
    fi
    break
  done
  local note=""
  if [ "$splits" -gt 0 ]; then note=", after $splits split vote$([ "$splits" = 1 ] || echo s)"; fi
  judge_race "$title" "$note"
}

# The race rounds: every instance starts at once; exactly one exits 0 having printed
# "✓ Lock acquired", every other exits 3 naming the winner as the holder.
judge_race() { # judge_race TITLE [NOTE]
  local title=$1 note=${2:-} winners=() i problems=() named
  for i in "${!names[@]}"; do
    if acquired "${names[$i]}"; then winners+=("${names[$i]}"); fi
  done
  if [ "${#winners[@]}" -ne 1 ]; then
    problems+=("${#winners[@]} winners")
  fi
  for i in "${!names[@]}"; do
    if acquired "${names[$i]}"; then
      [ "${rcs[$i]}" = 0 ] || problems+=("${names[$i]} exited ${rcs[$i]}")
    else
      [ "${rcs[$i]}" = 3 ] || problems+=("${names[$i]} exited ${rcs[$i]}, not 3")
      if [ "${#winners[@]}" = 1 ] && ! grep -qF "Held by: ${winners[0]} " "${logs[$i]}"; then
        named=$(sed -n 's/.*✗ Lock unavailable | Held by: \([^ ]*\).*/\1/p' "${logs[$i]}" | head -1)
        if [ "$quorum" = 1 ] && [ -n "$named" ] && index_of "$named" >/dev/null; then
          # Quorum mode: when it asked, no racer had a majority yet; it names one that held
          # some of the servers then (and gave them back).
          say "$(paint 33 "${names[$i]} named $named as the holder: $named held a minority of the servers when ${names[$i]} asked, and gave them back")"
          note+="; ${names[$i]} named $named (a partial grant)"
        else
          problems+=("${names[$i]} did not name ${winners[0]} as the holder")
        fi
      fi
    fi
  done
  if [ "${#problems[@]}" = 0 ]; then
    record OK "$title: ${winners[0]} won, $((${#names[@]} - 1)) exited 3 (held)$note"
  else
    local IFS=';'
    record FAIL "$title: ${problems[*]}$note"
  fi
}

# ---------------------------------------------------------------------------------------------
# On a shared Redis, an earlier run killed before it could release (SIGKILL, a lost terminal)
# leaves the demo's lease held until its TTL runs out: wait for that. A lease held past its
# TTL is being renewed: someone is running the demo (or `leasectl run`) on it right now.
held_ttl_ms() { # prints the longest TTL left (ms) of the demo's lease, on any server; fails when free
  local json
  json=$("$bin" "${common[@]}" inspect --json 2>/dev/null) || return 1
  case $json in *'"held":true'*) ;; *) return 1 ;; esac
  # No ttlMs: a key with no expiry (written by another tool).
  { printf '%s' "$json" | grep -o '"ttlMs":[0-9]*' || true; } | cut -d: -f2 | sort -n | tail -1
}
if [ "$shared" = 1 ] && ttl_ms=$(held_ttl_ms); then
  say "$(paint 33 "the demo's lease is still held, left by an earlier run that could not release it, or by a run going on now:")"
  "$bin" "${common[@]}" inspect 2>&1 | relay inspect "$tmp/held-before.log"
  release_hint="leasectl --key-prefix $prefix release critical-section-lock --force"
  if [ -z "$ttl_ms" ]; then
    echo "$me: error: that key has no TTL (another tool wrote it?), so it will never expire;" >&2
    echo "if nothing uses it, free it with: $release_hint" >&2
    exit 1
  fi
  wait_s=$(((ttl_ms + 999) / 1000 + 2))
  say "waiting up to ${wait_s}s for it to expire (Ctrl-C to give up)..."
  deadline=$((SECONDS + wait_s))
  while held_ttl_ms >/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
  if held_ttl_ms >/dev/null; then
    echo "$me: error: the lease is still held after its TTL ran out, so its holder renews it: someone is" >&2
    echo "running the demo (or leasectl run with --key-prefix $prefix) on this Redis now. Try again when" >&2
    echo "it has finished; if you are sure nothing holds it any more: $release_hint" >&2
    exit 1
  fi
  say "it is free now"
  started_at=$SECONDS
fi

# ---------------------------------------------------------------------------------------------
new_round "simultaneous start of two instances" \
  "us-east-1 and eu-west-1 start at the same moment; $(if [ "$quorum" = 1 ]; then
    printf 'the atomic acquire on each server lets one of them in, and only one can have a majority.'
  else printf 'the atomic acquire lets exactly one win.'; fi)"
contest "two at once" us-east-1:us-east eu-west-1:eu-west -- --work "$work1"

new_round "three regions at once" \
  "us-east-1, eu-west-1 and ap-south-1 race for the same lease: still exactly one winner (the losers' holder tables are left out this time)."
show_tables=0
contest "three at once" us-east-1:us-east eu-west-1:eu-west ap-south-1:ap-south -- --work "$work2"
show_tables=1

new_round "takeover after a graceful release" \
  "us-east-1 holds the lease with a ${ttl3} TTL and renews it while it works ${work3}; eu-west-1 waits (--wait 30s) and gets it as soon as it is released."
start us-east-1 us-east --ttl "$ttl3" --work "$work3"
if wait_for us-east-1 "✓ Lock acquired" 15; then
  start eu-west-1 eu-west --wait 30s --work "$work3b"
fi
finish 60
done_at=$(time_of us-east-1 "Completed")
taken_at=$(time_of eu-west-1 "✓ Lock acquired")
if acquired us-east-1 && [ "${rcs[0]}" = 0 ] && [ "${#names[@]}" = 2 ] \
  && acquired eu-west-1 && [ "${rcs[1]}" = 0 ] && not_before "$done_at" "$taken_at"; then
  record OK "release takeover: us-east-1, then eu-west-1, $(milliseconds_between "$done_at" "$taken_at") the release"
else
  record FAIL "release takeover: exit codes ${rcs[*]} (expected 0 0); acquired by: $(
    for n in "${names[@]}"; do acquired "$n" && printf '%s ' "$n"; done)$(
    not_before "$done_at" "$taken_at" || printf '(eu-west-1 before us-east-1 released it)')"
fi

new_round "takeover after a crash" \
  "ap-south-1 takes the lease with a ${ttl4} TTL and is killed (SIGKILL) while working: it cannot release it."
start ap-south-1 ap-south --ttl "$ttl4" --work 60s
crash_ok=0
if wait_for ap-south-1 "✓ Lock acquired" 15; then
  {
    kill -KILL "${pids[0]}"
    killed_at=${EPOCHREALTIME:-$(date +%s)}
    reap "${pids[0]}"
  } 2>/dev/null
  crash_ok=1
  say "killed ap-south-1 (pid ${pids[0]}) with SIGKILL; its lease stays until the TTL runs out:"
  "$bin" "${common[@]}" inspect 2>&1 | relay inspect "$tmp/round$round.inspect.log"
  if [ "$pause" != 0 ]; then sleep 1.5; fi
  say "us-east-1 starts with --wait 20s and takes the lease once the TTL has run out:"
  start us-east-1 us-east --wait 20s --work "$work4b"
fi
finish 60
# The lease can be taken only once it expired: the TTL after ap-south-1 asked for it. Its
# acquiredAt (shown by inspect) is when it asked; the line "✓ Lock acquired" comes later, by
# more than the relays' 50 ms of slack on a busy machine (in quorum mode above all).
acquired_at=$(sed -n 's/^[^\t]*\t *acquiredAt *\([0-9T:.-]*Z\)$/\1/p' "$tmp/round$round.inspect.log" 2>/dev/null | head -1)
asked_at=""
if [ -n "$acquired_at" ]; then asked_at=$(date -d "$acquired_at" +%s.%N 2>/dev/null || true); fi
if [ -z "$asked_at" ]; then asked_at=$(time_of ap-south-1 "✓ Lock acquired"); fi
expiry=$(awk -v t="$asked_at" -v ttl="${ttl4%s}" 'BEGIN { if (t != "") printf "%.6f", t + ttl }')
taken_at=$(time_of us-east-1 "✓ Lock acquired")
if [ "$crash_ok" = 1 ] && [ "${#names[@]}" = 2 ] && [ "${rcs[0]}" = 137 ] \
  && acquired us-east-1 && [ "${rcs[1]}" = 0 ] && not_before "$expiry" "$taken_at"; then
  record OK "crash takeover: ap-south-1 (killed), then us-east-1 $(seconds_between "$killed_at" "$taken_at") after the crash (TTL ${ttl4})"
else
  record FAIL "crash takeover: exit codes ${rcs[*]} (expected 137 0); acquired by: $(
    for n in "${names[@]}"; do acquired "$n" && printf '%s ' "$n"; done)$(
    not_before "$expiry" "$taken_at" || printf '(us-east-1 before the lease expired)')"
fi
"$bin" "${common[@]}" inspect 2>&1 | relay inspect "$tmp/round$round.inspect-after.log"

# ---------------------------------------------------------------------------------------------
# Round 5, with --quorum only: one of the three servers goes down.

# show_dead_server: once the race has its winner (and the losers have said who holds the
# lease), shows `leasectl inspect` and checks that it lists the stopped server with an error.
dead_error=""
show_dead_server() {
  local i winner="" deadline=$((SECONDS + 15)) alive
  while [ "$SECONDS" -lt "$deadline" ]; do
    winner="" alive=0
    for i in "${!names[@]}"; do
      if acquired "${names[$i]}"; then
        winner=${names[$i]}
      elif kill -0 "${pids[$i]}" 2>/dev/null; then
        alive=1
      fi
    done
    [ "$alive" = 0 ] && break
    sleep 0.05
  done
  [ -n "$winner" ] || return 0
  sleep 0.2 # the losers' relays print their last lines
  say "while $winner works, leasectl inspect asks every server; the stopped one answers with an error:"
  "$bin" "${common[@]}" inspect 2>&1 | relay inspect "$tmp/$round.inspect-down.$starts.log"
  dead_error=$("$bin" "${common[@]}" inspect --json 2>/dev/null \
    | grep -oE "\"address\":\"127\.0\.0\.1:$dead_port\",[^}]*\"error\":\"[^\"]*\"" \
    | sed 's/.*"error":"//; s/"$//') || true
}

if [ "$quorum_own" = 1 ]; then
  dead_port=${ports[1]}
  new_round "an instance goes down" \
    "the redis-server on 127.0.0.1:$dead_port (2 of 3) is stopped, then us-east-1 and eu-west-1 start at the same moment."
  say "The two servers left are still a majority: exactly one winner, which renews its ${ttl5} TTL on them while it works ${work5}."
  dead_pid=$(cat "${redis_dirs[1]}/redis.pid")
  stop_own_redis "${redis_dirs[1]}"
  if pid_alive "$dead_pid"; then
    say "$(paint 31 "redis-server pid $dead_pid is still running")"
  else
    say "stopped it: SIGTERM to pid $dead_pid (from its pid file)"
  fi
  during_race=show_dead_server
  contest "one server down, two at once" us-east-1:us-east eu-west-1:eu-west -- --ttl "$ttl5" --work "$work5"
  during_race=""
  if [ -n "$dead_error" ]; then
    record OK "inspect listed 127.0.0.1:$dead_port as down ($dead_error), the lease held on the other two"
  else
    record FAIL "inspect did not list the stopped server 127.0.0.1:$dead_port with an error"
  fi
fi

# ---------------------------------------------------------------------------------------------
header "Summary"
if [ "$quorum" = 1 ]; then
  say "quorum mode: $servers redis-servers, a lease needs $((servers / 2 + 1)) of them"
fi
printf '%s\n' "${summary[@]}"
if [ "$failed" = 0 ]; then
  say "every round had exactly one holder at a time (the rounds took $((SECONDS - started_at))s)"
else
  say "$(paint 31 "some rounds did not go as they should (✗ above)")"
  exit 1
fi

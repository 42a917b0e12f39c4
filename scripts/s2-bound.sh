#!/usr/bin/env bash
# How fast S2 could be with leasectl's client and calls if its scripts did less (issue 17).
# Builds two variants of leasectl from a copy of this tree, with only their acquire and release
# scripts replaced:
#   minimal  the free path's commands that the SPEC's data needs, straight-line, nothing else:
#            EXISTS, TIME, SET ... GET, HSET, PEXPIRE; HGET, DEL, ZRANGE, PUBLISH
#   trivial  SET PX and DEL: none of that data (no counter, no queue, no ownership check)
# and runs S2 with this build (`current`), the variants and, when the peer harness has built
# it, rslock on both runtimes, alternating, on one throwaway redis-server. Prints each one's
# median cycles/s, its ratio to rslock's median, and the server's and client's CPU per cycle
# (/proc/PID/stat of the redis-server, /usr/bin/time of the client). The variants are
# measuring sticks only: they never leave target/s2-bound.
#   scripts/s2-bound.sh [ROUNDS (default 3)] [SECONDS per run (default 4)]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/redis.sh

rounds=${1:-3}
seconds=${2:-4}
[[ $rounds =~ ^[1-9][0-9]*$ && $seconds =~ ^[1-9][0-9]*$ ]] || {
  echo "usage: scripts/s2-bound.sh [ROUNDS] [SECONDS]" >&2
  exit 2
}
ensure_redis_server
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }
rslock=${PEERBENCH_WORK:-/tmp/peerbench}/rust/target/release/peerbench-rslock

work=target/s2-bound
mkdir -p "$work/bin"
cargo build --release -q
cp target/release/leasectl "$work/bin/current"
build_variant() { # NAME ACQUIRE_LUA RELEASE_LUA
  rm -rf "$work/src-$1"
  mkdir -p "$work/src-$1"
  cp -r Cargo.toml Cargo.lock src "$work/src-$1/"
  echo "$2" >"$work/src-$1/src/scripts/acquire.lua"
  echo "$3" >"$work/src-$1/src/scripts/handoff.lua"
  CARGO_TARGET_DIR=$work/target cargo build --release -q --manifest-path "$work/src-$1/Cargo.toml" --bin leasectl
  cp "$work/target/release/leasectl" "$work/bin/$1"
}
build_variant minimal "if redis.call('EXISTS', KEYS[1], KEYS[3]) > 0 then return 0 end
local time = redis.call('TIME')
local floor = time[1] .. string.sub('00000' .. time[2], -6)
redis.call('SET', KEYS[2], floor, 'GET')
redis.call('HSET', KEYS[1], 'leaseId', ARGV[1], 'acquiredAt', ARGV[3], 'fencingToken', floor)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return tonumber(floor)" "if redis.call('HGET', KEYS[1], 'leaseId') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call(ARGV[1], ARGV[3], redis.call('ZRANGE', KEYS[2], '0', '0')[1] or '')
return 1"
build_variant trivial "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 7" "redis.call('DEL', KEYS[1])
return 1"

state=$(mktemp -d)
port=$(free_port)
trap 'stop_redis "$state"; rm -rf "$state"' EXIT
start_redis "$state" "$port"
pid=$(cat "$state/redis.pid")

runs=(current minimal trivial)
[ -x "$rslock" ] && runs+=(rslock rslock-ct) ||
  echo "(no rslock: run ../shared/peers/run.sh --peers rslock once to build it)" >&2
for _ in $(seq "$rounds"); do
  for run in "${runs[@]}"; do
    case $run in
      rslock | rslock-ct)
        runtime=mt; [ "$run" = rslock-ct ] && runtime=ct
        cmd=("$rslock" --runtime "$runtime" --lib-version 0.10.0 --redis-rs-version 1.8.1
          --scenario S2 --redis "127.0.0.1:$port" --cycles 1000 --warmup 200
          --duration "$seconds" --concurrency 50 --workers 4 --hold-ms 1 --ttl-ms 10000
          --wait-timeout-s 10 --max-seconds 60 --key-prefix s2bound) ;;
      *)
        cmd=("$work/bin/$run" bench --json --scenario S2 --redis "redis://127.0.0.1:$port"
          --duration "${seconds}s" --concurrency 50) ;;
    esac
    redis-cli -p "$port" flushall >/dev/null
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(/usr/bin/time -o "$state/time" -f '%U %S' "${cmd[@]}" 2>/dev/null | tail -1)
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "$run $out" >>"$state/runs"
    echo "$run $before $after $(cat "$state/time")" >>"$state/cpu"
  done
done

python3 - "$state" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
state, tick = sys.argv[1], int(sys.argv[2])
rows = {}
for line, cpu in zip(open(f"{state}/runs"), open(f"{state}/cpu")):
    name, text = line.split(" ", 1)
    d = json.loads(text)
    _, before, after, user, system = cpu.split()
    n = d["n"]
    rows.setdefault(name, []).append((d["ops_per_s"], (float(after) - float(before)) / tick / n * 1e6,
                                      (float(user) + float(system)) / n * 1e6))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in rows.items()}
ref = med.get("rslock", [None])[0]
print(f"{'':10} {'cycles/s':>9} {'x rslock':>8} {'server us':>9} {'client us':>9}  (medians of {len(rows['current'])} runs)")
for k, (ops, server, client) in med.items():
    ratio = f"{ops / ref:.2f}" if ref else "-"
    print(f"{k:10} {ops:9,.0f} {ratio:>8} {server:9.2f} {client:9.2f}")
PY

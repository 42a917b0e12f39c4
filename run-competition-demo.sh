#!/usr/bin/env bash
# The lock competition on this machine: builds leasectl, uses your configured Redis or else
# throwaway local redis-servers, and hands over to `leasectl demo`, which plays the rounds with
# real `leasectl run --json` processes. Stops what it started. `--help` explains.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./run-competition-demo.sh [--quorum | --endpoint URL...] [--no-build] [--fast]

Plays the lock competition (`leasectl demo --help` tells the rounds): instances of
`leasectl run` race for one lease; every round must have exactly one holder at a time.

Redis: the one you configured (appsettings.Local.json here or in ~/.config/leasectl/, or
RedisLeasing__* in the environment) or given with --endpoint, under the key prefix
'leasectl-demo:'; otherwise a throwaway redis-server on a free loopback port (installed with
apt-get when missing and running as root), stopped at the end.

Options:
  --quorum        quorum mode (Redlock) on three throwaway redis-servers, with a fifth round
                  in which one of them is shut down
  --endpoint URL  use this Redis (repeat it for quorum mode on your own servers)
  --no-build      do not run cargo; use the existing target/debug/leasectl
  --fast          shorter work and TTLs
  -h, --help      this help

Exit status: 0 when every round had exactly one holder at a time, 1 otherwise or on an
error, 2 for a usage mistake, 130 when interrupted.
EOF
}

me=$(basename "$0")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
args=() flags=() build=1 quorum=0 given=0
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --endpoint) [ $# -ge 2 ] && [ -n "$2" ] || { echo "$me: --endpoint needs a URL (see --help)" >&2; exit 2; }
      args+=(--endpoint "$2"); given=1; shift 2 ;;
    --endpoint=?*) args+=(--endpoint "${1#--endpoint=}"); given=1; shift ;;
    --no-build) build=0; shift ;;
    --fast) flags+=(--fast); shift ;;
    --quorum) quorum=1; shift ;;
    *) echo "$me: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$quorum" = 1 ] && [ "$given" = 1 ]; then
  echo "$me: --quorum starts its own three servers; it does not go with --endpoint (see --help)" >&2
  exit 2
fi

# leasectl looks for appsettings*.json in the current directory: work from the repository.
cd "$here"
# shellcheck source=scripts/lib/redis.sh
. scripts/lib/redis.sh

tmp=$(mktemp -d "${TMPDIR:-/tmp}/leasectl-demo.XXXXXX")
dirs=()
cleanup() {
  local status=$? dir
  trap - EXIT INT TERM
  for dir in "${dirs[@]}"; do stop_redis "$dir"; done
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bin="${CARGO_TARGET_DIR:-$here/target}/debug/leasectl"
case $bin in /*) ;; *) bin="$here/$bin" ;; esac
if [ "$build" = 1 ]; then
  command -v cargo >/dev/null 2>&1 || { echo "$me: error: cargo not found; install Rust (https://rustup.rs) or pass --no-build" >&2; exit 1; }
  echo "Building leasectl (cargo build; the first build takes a few minutes, later ones seconds)..."
  cargo build --quiet --bin leasectl
fi
[ -x "$bin" ] || { echo "$me: error: $bin does not exist; run without --no-build to build it" >&2; exit 1; }

# A Redis of the user's: given with --endpoint, or configured (leasectl says when it is not).
configured=0
if [ "$given" = 0 ] && [ "$quorum" = 0 ]; then
  said=$("$bin" inspect --json 2>&1 >/dev/null </dev/null || true)
  case $said in *"no Redis settings found"*) ;; *) configured=1 ;; esac
fi
if [ "$given" = 0 ] && [ "$configured" = 0 ]; then
  ensure_redis_server || exit 1
  for i in $(seq 1 $((quorum ? 3 : 1))); do
    port=$(free_port)
    dirs+=("$tmp/redis-$i")
    start_redis "$tmp/redis-$i" "$port" || exit 1
    args+=(--endpoint "redis://127.0.0.1:$port")
  done
  if [ "$quorum" = 1 ]; then flags+=(--quorum); fi
  echo "Throwaway redis-server(s) on 127.0.0.1 (stopped at the end)"
fi
# Not exec: the servers are stopped when the demo ends, however it ends.
status=0
"$bin" "${args[@]}" demo "${flags[@]}" || status=$?
exit "$status"

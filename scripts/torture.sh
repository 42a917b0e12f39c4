#!/usr/bin/env bash
# The long torture run: library clients and `leasectl exec` processes compete for a few leases
# on real redis-servers (single, quorum of 3 and of 5, a Redis Cluster, at once) under seeded
# faults (failovers too, in the cluster), and the checker reads the whole history. Prints the seed first and the summary last; exits non-zero
# when the checker finds anything. See the README's "Safety under faults".
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/torture.sh [--acquisitions N] [--seed S] [--faults-each N] [--ttl-ms MS]
                          [--hold-ms MS] [--no-single-restarts] [--limit-s S]
                          [--deployments LIST] [--wait-replicas N]

  --acquisitions N   critical sections to record, across the deployments (default 100000)
  --seed S           replay the fault schedule of an earlier run (default: a fresh seed, printed)
  --faults-each N    go on until every fault kind was injected N times in each deployment
                     (default 100)
  --ttl-ms MS        the leases' TTL (default 1000); faults scale with it
  --hold-ms MS       the longest short hold (default 5); one hold in twenty is 1-2 TTLs
  --no-single-restarts  never restart the single-mode Redis (it restarts with empty memory by
                     default, like a quorum instance)
  --limit-s S        stop after S seconds whatever was reached (default 3600)
  --deployments LIST only these, comma-separated: single, quorum_3, quorum_5, cluster
                     (default all four)
  --wait-replicas N  the cluster's leasectl clients set WaitReplicas N (acquire and renew wait
                     for N replicas)

The same settings as environment variables: LEASECTL_TORTURE_ACQUISITIONS, _SEED, _FAULTS_EACH,
_TTL_MS, _HOLD_MS, _SINGLE_RESTARTS=0, _LIMIT_S, _DEPLOYMENTS, _WAIT_REPLICAS. The CI-sized runs are ordinary tests
(cargo test --test it torture::).
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --acquisitions) export LEASECTL_TORTURE_ACQUISITIONS="$2"; shift 2 ;;
    --seed) export LEASECTL_TORTURE_SEED="$2"; shift 2 ;;
    --faults-each) export LEASECTL_TORTURE_FAULTS_EACH="$2"; shift 2 ;;
    --ttl-ms) export LEASECTL_TORTURE_TTL_MS="$2"; shift 2 ;;
    --hold-ms) export LEASECTL_TORTURE_HOLD_MS="$2"; shift 2 ;;
    --no-single-restarts) export LEASECTL_TORTURE_SINGLE_RESTARTS=0; shift ;;
    --limit-s) export LEASECTL_TORTURE_LIMIT_S="$2"; shift 2 ;;
    --deployments) export LEASECTL_TORTURE_DEPLOYMENTS="$2"; shift 2 ;;
    --wait-replicas) export LEASECTL_TORTURE_WAIT_REPLICAS="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

# shellcheck source=lib/redis.sh
. scripts/lib/redis.sh
ensure_redis_server
cargo test --release --test it -- --ignored --exact torture::long --nocapture

#!/usr/bin/env bash
# Measures each local deployment in one run: starts a standalone server, a quorum of three, a
# Redis Cluster and a Sentinel deployment with setup-resources.sh, checks that `leasectl run`
# works on the settings it wrote, runs `leasectl bench` on each (two rounds, interleaved; the
# quorum's S4), prints one line per scenario, and stops them all.
#   Usage: scripts/bench-deployments.sh [OUTDIR]      (default: a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
cargo build --release --quiet
leasectl=target/release/leasectl
kinds=(single quorum cluster sentinel)
stop() {
  for kind in "${kinds[@]}"; do
    bash scripts/setup-resources.sh --project redis --stop --state-dir "$out/state-$kind" \
      >/dev/null 2>&1 || true
  done
}
trap stop EXIT
for kind in "${kinds[@]}"; do
  flag=()
  [ "$kind" != single ] && flag=("--$kind")
  bash scripts/setup-resources.sh --project redis --local "${flag[@]}" \
    --output "$out/$kind.json" --state-dir "$out/state-$kind" >/dev/null
  "$leasectl" --config "$out/$kind.json" run --instance us-east-1 --region us-east --work 1s \
    >"$out/$kind-run.txt" 2>&1 || { echo "$kind: leasectl run failed (see $out/$kind-run.txt)"; exit 1; }
done
for round in 1 2; do
  for kind in "${kinds[@]}"; do
    scenarios=(--scenario S1 --scenario S2 --scenario S3)
    [ "$kind" = quorum ] && scenarios=(--scenario S4)
    "$leasectl" --config "$out/$kind.json" bench "${scenarios[@]}" --json \
      | sed "s/^/$kind round $round: /"
  done
done

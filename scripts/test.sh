#!/usr/bin/env bash
# The README's test command: installs redis-server when it is missing (the tests start their
# own servers on free ports), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/redis.sh
. scripts/lib/redis.sh
ensure_redis_server
cargo test --all-targets "$@"
cargo test --doc

#!/usr/bin/env bash
# Creates the Redis that leasectl uses and writes appsettings.Local.json for it: local
# throwaway servers (--local: one, a quorum, a cluster or sentinels), or an Azure Managed Redis
# (or, --legacy, an Azure Cache for Redis) through the Azure CLI.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/setup-resources.sh --project redis --local [--quorum|--cluster|--sentinel] [--port P]...
       scripts/setup-resources.sh --project redis --stop            (or --delete --local)
       scripts/setup-resources.sh --project redis --name NAME --resource-group GROUP [options]
       scripts/setup-resources.sh --project redis --legacy --name NAME --resource-group GROUP
       scripts/setup-resources.sh --project redis --delete [--yes]

Creates the Redis that leasectl uses and writes appsettings.Local.json (mode 0600) for it.
Running it again reuses what is already there.

Local servers on 127.0.0.1 (installs Debian's redis-server when missing and running as root):
  --local                one server, written as ConnectionString
  --quorum               with --local: three independent servers, written as Endpoints
  --cluster              with --local: a Redis Cluster of three primaries with a replica each
                         (ports at most 55535); written as one node's address (leasectl finds
                         the others)
  --sentinel             with --local: a primary, a replica and three sentinels monitoring it
                         as "mymaster"; written as 127.0.0.1:S1,...,serviceName=mymaster
  --port P               with --local/--quorum: use this port (repeat for --quorum); default:
                         free ports
  --stop                 stop the local servers this script started, and remove their files

Azure Managed Redis (the default without --local; the Azure CLI must be logged in):
  --name NAME            the cluster name (NAME.REGION.redis.azure.net)
  --resource-group G     the resource group (created when missing)
  --location L           region for new resources (default: eastus)
  --sku S                default Balanced_B0 (also e.g. Balanced_B1, MemoryOptimized_M10,
                         ComputeOptimized_X3)
  --clustering-policy P  OSSCluster (default: clients are cluster-aware, as leasectl is) or
                         EnterpriseCluster (one proxy endpoint)
  --access-keys          enable access keys and write a ConnectionString with the key, instead
                         of Microsoft Entra ID (the default: the signed-in user or service
                         principal gets the data-access policy, and the settings say
                         Endpoint NAME.REGION.redis.azure.net:10000 + EntraId Default)
  The database ("default") listens on port 10000 with TLS. The script waits until the
  cluster and database run, showing their state.

  --legacy               an Azure Cache for Redis instead (az redis create), for existing
                         caches: new ones can no longer be created. Then --sku is Basic,
                         Standard or Premium (default: Basic) and --vm-size C0..C6 or P1..P5
                         (default: C0); settings: ConnectionString with the access key.
  --delete               delete the Azure resources this script created (recorded in the state
                         folder; nothing else), after asking; with --local: same as --stop
  --yes                  with --delete: do not ask

Common:
  --output PATH          where to write the settings (default: appsettings.Local.json in the
                         project folder)
  --state-dir DIR        where the script keeps its state: local servers' files and pid files,
                         and the record of Azure resources it created (default:
                         $LEASECTL_STATE_DIR, else .leasectl/ in the project folder); pass the
                         same folder to --stop and --delete
  -h, --help             this help

An existing settings file is kept as PATH.bak before it is replaced.
An access key is written to the settings file only, never printed.

Examples:
  scripts/setup-resources.sh --project redis --local
  scripts/setup-resources.sh --project redis --local --quorum
  scripts/setup-resources.sh --project redis --local --cluster
  scripts/setup-resources.sh --project redis --local --sentinel
  scripts/setup-resources.sh --project redis --stop
  scripts/setup-resources.sh --project redis --name mylease --resource-group my-rg --location westeurope
  scripts/setup-resources.sh --project redis --name mylease --resource-group my-rg --access-keys
  scripts/setup-resources.sh --project redis --legacy --name mycache --resource-group my-rg
  scripts/setup-resources.sh --project redis --delete
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/redis.sh
. "$root/scripts/lib/redis.sh"
# shellcheck source=lib/azure.sh
. "$root/scripts/lib/azure.sh"

project="" local_mode=0 quorum=0 cluster=0 sentinel=0 stop=0 ports=()
name="" group="" location="eastus" sku="" vm_size="C0" clustering_policy="OSSCluster"
access_keys=0 legacy=0 delete=0 yes=0
output="$root/appsettings.Local.json"
state="${LEASECTL_STATE_DIR:-$root/.leasectl}"

die() { echo "setup-resources: error: $1" >&2; exit "${2:-1}"; }
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value" 2; }

while [ $# -gt 0 ]; do
  case $1 in
    --project) need_value "$@"; project=$2; shift 2 ;;
    --local) local_mode=1; shift ;;
    --quorum) quorum=1; shift ;;
    --cluster) cluster=1; shift ;;
    --sentinel) sentinel=1; shift ;;
    --clustering-policy) need_value "$@"; clustering_policy=$2; shift 2 ;;
    --access-keys) access_keys=1; shift ;;
    --legacy) legacy=1; shift ;;
    --delete) delete=1; shift ;;
    --yes|-y) yes=1; shift ;;
    --port) need_value "$@"; ports+=("$2"); shift 2 ;;
    --stop) stop=1; shift ;;
    --name) need_value "$@"; name=$2; shift 2 ;;
    --resource-group) need_value "$@"; group=$2; shift 2 ;;
    --location) need_value "$@"; location=$2; shift 2 ;;
    --sku) need_value "$@"; sku=$2; shift 2 ;;
    --vm-size) need_value "$@"; vm_size=$2; shift 2 ;;
    --output) need_value "$@"; output=$2; shift 2 ;;
    --state-dir) need_value "$@"; state=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
  esac
done

[ "$project" = redis ] || die "pass --project redis (see --help)" 2
[ $((quorum + cluster + sentinel)) -le 1 ] || die "choose one of --quorum, --cluster, --sentinel" 2
[ $((quorum + cluster + sentinel)) = 0 ] || [ "$local_mode" = 1 ] || die "--quorum, --cluster and --sentinel start local servers: add --local" 2
case $clustering_policy in
  OSSCluster|EnterpriseCluster) ;;
  *) die "--clustering-policy is OSSCluster or EnterpriseCluster, not '$clustering_policy'" 2 ;;
esac
if [ -z "$sku" ]; then
  if [ "$legacy" = 1 ]; then sku=Basic; else sku=Balanced_B0; fi
fi
for port in "${ports[@]}"; do
  [[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "--port $port is not a port number" 2
done

# write_settings JSON: replaces the settings file atomically (temp file + rename, mode 0600),
# keeping an existing different file as .bak.
write_settings() {
  local json=$1 dir tmp
  dir=$(dirname "$output")
  mkdir -p "$dir"
  tmp=$(mktemp "$dir/.appsettings.XXXXXX")
  chmod 600 "$tmp"
  printf '%s\n' "$json" >"$tmp"
  if [ -f "$output" ]; then
    if cmp -s "$tmp" "$output"; then
      rm -f "$tmp"
      echo "Settings unchanged: $output"
      return 0
    fi
    cp -p "$output" "$output.bak"
    chmod 600 "$output.bak"
    echo "Kept the previous settings as $output.bak"
  fi
  mv -f "$tmp" "$output"
  echo "Wrote $output (mode 0600)"
}

# running_port DIR: prints the port of the server recorded in DIR when it still answers.
running_port() {
  local dir=$1
  [ -f "$dir/redis.pid" ] && [ -f "$dir/port" ] || return 1
  kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null || return 1
  redis-cli -p "$(cat "$dir/port")" ping >/dev/null 2>&1 || return 1
  cat "$dir/port"
}

stop_local() {
  local stopped=0 dir
  for dir in "$state"/redis-* "$state"/cluster-* "$state"/sentinel-*; do
    [ -d "$dir" ] || continue
    stop_redis "$dir"
    rm -rf "$dir"
    stopped=$((stopped + 1))
  done
  rmdir "$state" 2>/dev/null || true
  echo "Stopped $stopped local Redis server(s)."
}

# running_topology PREFIX N: the ports of STATE/PREFIX-1..N when every one still answers.
running_topology() {
  local prefix=$1 n=$2 i port seen=()
  for i in $(seq 1 "$n"); do
    port=$(running_port "$state/$prefix-$i") || return 1
    seen+=("$port")
  done
  echo "${seen[@]}"
}

# A local Redis Cluster: six nodes on ports <= 55535 (the bus port is port + 10000).
setup_cluster() {
  ensure_redis_server || exit 1
  local nodes i port
  if nodes=$(running_topology cluster 6) && cluster_ok "${nodes%% *}"; then
    echo "The local Redis Cluster already runs on 127.0.0.1 ports $nodes"
  else
    stop_local >/dev/null
    nodes=""
    for i in 1 2 3 4 5 6; do
      port=$(free_cluster_port)
      [ -n "$port" ] || die "no free port pair (P and P + 10000) at or below 55535"
      nodes="$nodes $port"
    done
    nodes=${nodes# }
    # shellcheck disable=SC2086
    start_cluster "$state" $nodes || exit 1
    echo "Started a local Redis Cluster (3 primaries, 3 replicas) on 127.0.0.1 ports $nodes (files in $state)"
  fi
  write_settings "$(printf '{\n  "RedisLeasing": {\n    "ConnectionString": "redis://127.0.0.1:%s",\n    "KeyPrefix": "lease:",\n    "Database": 0\n  }\n}' "${nodes%% *}")"
  echo "Next: leasectl inspect    (stop the servers with: scripts/setup-resources.sh --project redis --stop)"
}

# Sentinel: a primary, a replica and three sentinels; the settings name the sentinels.
setup_sentinel() {
  ensure_redis_server || exit 1
  local sentinels p r s1 s2 s3 port list=""
  if sentinels=$(running_topology sentinel 3) && running_port "$state/sentinel-primary" >/dev/null \
    && sentinel_knows "${sentinels%% *}" mymaster; then
    echo "The local Sentinel deployment already runs (sentinels on 127.0.0.1 ports $sentinels)"
  else
    stop_local >/dev/null
    p=$(free_port) r=$(free_port) s1=$(free_port) s2=$(free_port) s3=$(free_port)
    start_sentinel "$state" mymaster "$p" "$r" "$s1" "$s2" "$s3" || exit 1
    sentinels="$s1 $s2 $s3"
    echo "Started a local primary (127.0.0.1:$p), its replica (127.0.0.1:$r) and three sentinels (127.0.0.1 ports $sentinels) monitoring it as mymaster (files in $state)"
  fi
  for port in $sentinels; do list="${list}127.0.0.1:$port,"; done
  write_settings "$(printf '{\n  "RedisLeasing": {\n    "ConnectionString": "%sserviceName=mymaster,ssl=False",\n    "KeyPrefix": "lease:",\n    "Database": 0\n  }\n}' "$list")"
  echo "Next: leasectl inspect    (stop the servers with: scripts/setup-resources.sh --project redis --stop)"
}

setup_local() {
  ensure_redis_server || exit 1
  local count=1 urls=() i port dir
  [ "$quorum" = 1 ] && count=3
  [ ${#ports[@]} -le "$count" ] || die "--port given ${#ports[@]} times for $count server(s)" 2
  for i in $(seq 1 "$count"); do
    dir="$state/redis-$i"
    if port=$(running_port "$dir"); then
      if [ -n "${ports[$((i - 1))]:-}" ] && [ "${ports[$((i - 1))]}" != "$port" ]; then
        die "a local server already runs on port $port; run --stop first to change ports" 2
      fi
      echo "Local Redis $i already runs on 127.0.0.1:$port"
    else
      port=${ports[$((i - 1))]:-$(free_port)}
      if redis-cli -p "$port" ping >/dev/null 2>&1; then
        die "port $port is taken by another server; choose another --port" 1
      fi
      rm -rf "$dir"
      start_redis "$dir" "$port" || exit 1
      echo "$port" >"$dir/port"
      echo "Started local Redis $i on 127.0.0.1:$port (files in $dir)"
    fi
    urls+=("redis://127.0.0.1:$port")
  done
  if [ "$count" = 1 ]; then
    write_settings "$(printf '{\n  "RedisLeasing": {\n    "ConnectionString": "%s",\n    "KeyPrefix": "lease:",\n    "Database": 0\n  }\n}' "${urls[0]}")"
  else
    write_settings "$(printf '{\n  "RedisLeasing": {\n    "Endpoints": ["%s", "%s", "%s"],\n    "KeyPrefix": "lease:",\n    "Database": 0\n  }\n}' "${urls[@]}")"
  fi
  echo "Next: leasectl inspect    (stop the servers with: scripts/setup-resources.sh --project redis --stop)"
}

if [ "$stop" = 1 ] || { [ "$delete" = 1 ] && [ "$local_mode" = 1 ]; }; then
  stop_local
elif [ "$delete" = 1 ]; then
  delete_azure
elif [ "$local_mode" = 1 ] && [ "$cluster" = 1 ]; then
  setup_cluster
elif [ "$local_mode" = 1 ] && [ "$sentinel" = 1 ]; then
  setup_sentinel
elif [ "$local_mode" = 1 ]; then
  setup_local
elif [ "$legacy" = 1 ]; then
  setup_legacy
else
  setup_managed
fi

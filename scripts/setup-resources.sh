#!/usr/bin/env bash
# Creates the Redis that leasectl uses and writes appsettings.Local.json for it: local
# throwaway servers (--local), or an Azure Cache for Redis through the Azure CLI.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/setup-resources.sh --project redis [--local [--quorum] [--port P]...] [options]
       scripts/setup-resources.sh --project redis --stop
       scripts/setup-resources.sh --project redis --name NAME --resource-group GROUP [options]

Creates the Redis that leasectl uses and writes appsettings.Local.json (mode 0600) for it.
Running it again reuses what is already there.

  --project redis        the only project there is (kept for the .NET sample's habits)
  --local                start local redis-server processes on 127.0.0.1 (installs Debian's
                         redis-server when missing and running as root)
  --quorum               with --local: three independent servers, written as Endpoints
  --port P               with --local: use this port (repeat for --quorum); default: free ports
  --stop                 stop the local servers this script started, and remove their files
  --name NAME            Azure: the cache name (NAME.redis.cache.windows.net)
  --resource-group G     Azure: the resource group (created when missing)
  --location L           Azure: region for new resources (default: eastus)
  --sku S                Azure: Basic, Standard or Premium (default: Basic)
  --vm-size V            Azure: C0..C6 or P1..P5 (default: C0)
  --output PATH          where to write the settings (default: appsettings.Local.json in the
                         project folder)
  --state-dir DIR        where local servers keep their files and pid files (default:
                         $LEASECTL_STATE_DIR, else .leasectl/ in the project folder); pass the
                         same folder to --stop
  -h, --help             this help

Local servers keep their files and pid files under .leasectl/ in the project folder (or
--state-dir DIR, or $LEASECTL_STATE_DIR).
An existing settings file is kept as PATH.bak before it is replaced.
The access key of an Azure cache is written to the settings file only, never printed.

Examples:
  scripts/setup-resources.sh --project redis --local
  scripts/setup-resources.sh --project redis --local --quorum
  scripts/setup-resources.sh --project redis --stop
  scripts/setup-resources.sh --project redis --name mycache --resource-group my-rg --location westeurope
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/redis.sh
. "$root/scripts/lib/redis.sh"

project="" local_mode=0 quorum=0 stop=0 ports=()
name="" group="" location="eastus" sku="Basic" vm_size="C0"
output="$root/appsettings.Local.json"
state="${LEASECTL_STATE_DIR:-$root/.leasectl}"

die() { echo "setup-resources: error: $1" >&2; exit "${2:-1}"; }
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value" 2; }

while [ $# -gt 0 ]; do
  case $1 in
    --project) need_value "$@"; project=$2; shift 2 ;;
    --local) local_mode=1; shift ;;
    --quorum) quorum=1; shift ;;
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
  local stopped=0
  for dir in "$state"/redis-*; do
    [ -d "$dir" ] || continue
    stop_redis "$dir"
    rm -rf "$dir"
    stopped=$((stopped + 1))
  done
  rmdir "$state" 2>/dev/null || true
  echo "Stopped $stopped local Redis server(s)."
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

setup_azure() {
  [ -n "$name" ] || die "pass --name NAME for the Azure cache (or --local for local servers)" 2
  [ -n "$group" ] || die "pass --resource-group GROUP" 2
  command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed; install it, or use --local for local servers"
  az account show --output none >/dev/null 2>&1 || die "the Azure CLI is not logged in: run 'az login' first"

  if az group show --name "$group" --output none >/dev/null 2>&1; then
    echo "Resource group $group exists"
  else
    echo "Creating resource group $group in $location..."
    az group create --name "$group" --location "$location" --output none
  fi
  if az redis show --name "$name" --resource-group "$group" --output none >/dev/null 2>&1; then
    echo "Azure Cache for Redis $name exists"
  else
    echo "Creating Azure Cache for Redis $name ($sku $vm_size in $location); this takes several minutes..."
    az redis create --name "$name" --resource-group "$group" --location "$location" \
      --sku "$sku" --vm-size "$vm_size" --output none
  fi
  local host port key
  host=$(az redis show --name "$name" --resource-group "$group" --query hostName --output tsv)
  port=$(az redis show --name "$name" --resource-group "$group" --query sslPort --output tsv)
  key=$(az redis list-keys --name "$name" --resource-group "$group" --query primaryKey --output tsv)
  [ -n "$host" ] && [ -n "$key" ] || die "the Azure CLI did not return the cache's host name and key"
  write_settings "$(printf '{\n  "RedisLeasing": {\n    "ConnectionString": "%s:%s,password=%s,ssl=True,abortConnect=False",\n    "KeyPrefix": "lease:",\n    "Database": 0\n  }\n}' "$host" "${port:-6380}" "$key")"
  echo "Next: leasectl inspect"
}

if [ "$stop" = 1 ]; then
  stop_local
elif [ "$local_mode" = 1 ]; then
  setup_local
else
  setup_azure
fi

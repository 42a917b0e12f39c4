# shellcheck shell=bash
# Azure for scripts/setup-resources.sh: Azure Managed Redis (az redisenterprise), the legacy
# Azure Cache for Redis (az redis), and deleting what the script created. Source it after the
# script has set its options (name, group, location, sku, clustering_policy, access_keys, yes,
# state) and defined die and write_settings; it defines functions only.

# The record of what this script created, one line each: `group G`, `cluster G N`, `cache G N`.
created_file() { echo "$state/azure-created"; }

# record KIND ARGS...: notes a resource the script created (for --delete).
record() {
  mkdir -p "$state"
  echo "$*" >>"$(created_file)"
}

# The Azure CLI is there and signed in.
azure_ready() {
  [ -n "$name" ] || die "pass --name NAME for the Azure resource (or --local for local servers)" 2
  [ -n "$group" ] || die "pass --resource-group GROUP" 2
  command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed; install it, or use --local for local servers"
  az account show --output none >/dev/null 2>&1 || die "the Azure CLI is not logged in: run 'az login' first"
}

ensure_group() {
  if az group show --name "$group" --output none >/dev/null 2>&1; then
    echo "Resource group $group exists"
  else
    echo "Creating resource group $group in $location..."
    az group create --name "$group" --location "$location" --output none
    record group "$group"
  fi
}

# The object id of the signed-in identity: a user's, else (signed in as a service principal)
# the service principal's.
signed_in_object_id() {
  local id app
  id=$(az ad signed-in-user show --query id --output tsv 2>/dev/null) || id=""
  if [ -z "$id" ]; then
    app=$(az account show --query user.name --output tsv 2>/dev/null) || app=""
    [ -n "$app" ] && id=$(az ad sp show --id "$app" --query id --output tsv 2>/dev/null) || true
  fi
  [ -n "$id" ] || die "could not find the signed-in identity's object id (az ad signed-in-user show, az ad sp show)"
  echo "$id"
}

# wait_running WHAT COMMAND...: polls COMMAND (printing `provisioningState<TAB>resourceState`)
# until Succeeded/Running, showing progress; gives up after $SETUP_WAIT_SECONDS (1800).
wait_running() {
  local what=$1 started=$SECONDS states provisioning resource last=""
  shift
  local limit=${SETUP_WAIT_SECONDS:-1800} every=${SETUP_POLL_SECONDS:-15}
  while :; do
    states=$("$@" 2>/dev/null | tr '\n' '\t') || states=""
    provisioning=$(echo "$states" | cut -f1)
    resource=$(echo "$states" | cut -f2)
    if [ "$provisioning" = Succeeded ] && [ "$resource" = Running ]; then
      [ -z "$last" ] || echo "  $what is running ($((SECONDS - started))s)"
      return 0
    fi
    case $provisioning in Failed|Canceled) die "$what: provisioning $provisioning" ;; esac
    [ $((SECONDS - started)) -lt "$limit" ] || die "$what is not running after ${limit}s (provisioning ${provisioning:-?}, resource ${resource:-?})"
    last="${provisioning:-?}/${resource:-?}"
    echo "  $what: $last ($((SECONDS - started))s)..."
    sleep "$every"
  done
}

# Azure Managed Redis: the cluster and its database `default` (TLS on port 10000), Entra ID
# access for the signed-in identity or access keys, and the settings.
setup_managed() {
  azure_ready
  ensure_group
  local keys=Disabled
  [ "$access_keys" = 1 ] && keys=Enabled
  if az redisenterprise show --cluster-name "$name" --resource-group "$group" --output none >/dev/null 2>&1; then
    echo "Azure Managed Redis $name exists"
  else
    echo "Creating Azure Managed Redis $name ($sku, $clustering_policy clustering, in $location); this takes several minutes..."
    az redisenterprise create --cluster-name "$name" --resource-group "$group" --location "$location" \
      --sku "$sku" --clustering-policy "$clustering_policy" --client-protocol Encrypted --port 10000 \
      --access-keys-auth "$keys" --public-network-access Enabled --no-wait --output none
    record cluster "$group" "$name"
  fi
  wait_running "cluster $name" az redisenterprise show --cluster-name "$name" --resource-group "$group" \
    --query "[provisioningState, resourceState]" --output tsv
  wait_running "database default" az redisenterprise database show --cluster-name "$name" \
    --resource-group "$group" --query "[provisioningState, resourceState]" --output tsv
  local host port
  host=$(az redisenterprise show --cluster-name "$name" --resource-group "$group" --query hostName --output tsv)
  port=$(az redisenterprise database show --cluster-name "$name" --resource-group "$group" --query port --output tsv)
  [ -n "$host" ] || die "the Azure CLI did not return the cluster's host name"
  port=${port:-10000}
  if [ "$access_keys" = 1 ]; then
    local enabled key
    enabled=$(az redisenterprise database show --cluster-name "$name" --resource-group "$group" \
      --query accessKeysAuthentication --output tsv)
    if [ "$enabled" != Enabled ]; then
      echo "Enabling access keys on database default..."
      az redisenterprise database update --cluster-name "$name" --resource-group "$group" \
        --access-keys-auth Enabled --output none
    fi
    key=$(az redisenterprise database list-keys --cluster-name "$name" --resource-group "$group" \
      --query primaryKey --output tsv)
    [ -n "$key" ] || die "the Azure CLI did not return the database's access key"
    write_settings "$(printf '{\n  "RedisLeasing": {\n    "ConnectionString": "%s:%s,password=%s,ssl=True,abortConnect=False",\n    "KeyPrefix": "lease:",\n    "Database": 0\n  }\n}' "$host" "$port" "$key")"
  else
    local oid assignment
    oid=$(signed_in_object_id)
    # Assignment names are letters and digits only.
    assignment="leasectl${oid//-/}"
    if az redisenterprise database access-policy-assignment show --cluster-name "$name" \
      --resource-group "$group" --database-name default --access-policy-assignment-name "$assignment" \
      --output none >/dev/null 2>&1; then
      echo "The signed-in identity already has data access (Entra ID)"
    else
      echo "Giving the signed-in identity ($oid) data access (Entra ID)..."
      az redisenterprise database access-policy-assignment create --cluster-name "$name" \
        --resource-group "$group" --database-name default --access-policy-assignment-name "$assignment" \
        --access-policy-name default --object-id "$oid" --output none
    fi
    write_settings "$(printf '{\n  "RedisLeasing": {\n    "Endpoint": "%s:%s",\n    "EntraId": "Default",\n    "UseSsl": true,\n    "KeyPrefix": "lease:",\n    "Database": 0\n  }\n}' "$host" "$port")"
  fi
  echo "Next: leasectl inspect"
}

# --legacy: an Azure Cache for Redis (for existing caches; new ones can no longer be created).
setup_legacy() {
  azure_ready
  ensure_group
  if az redis show --name "$name" --resource-group "$group" --output none >/dev/null 2>&1; then
    echo "Azure Cache for Redis $name exists"
  else
    echo "Creating Azure Cache for Redis $name ($sku $vm_size in $location); this takes several minutes..."
    az redis create --name "$name" --resource-group "$group" --location "$location" \
      --sku "$sku" --vm-size "$vm_size" --output none
    record cache "$group" "$name"
  fi
  local host port key
  host=$(az redis show --name "$name" --resource-group "$group" --query hostName --output tsv)
  port=$(az redis show --name "$name" --resource-group "$group" --query sslPort --output tsv)
  key=$(az redis list-keys --name "$name" --resource-group "$group" --query primaryKey --output tsv)
  [ -n "$host" ] && [ -n "$key" ] || die "the Azure CLI did not return the cache's host name and key"
  write_settings "$(printf '{\n  "RedisLeasing": {\n    "ConnectionString": "%s:%s,password=%s,ssl=True,abortConnect=False",\n    "KeyPrefix": "lease:",\n    "Database": 0\n  }\n}' "$host" "${port:-6380}" "$key")"
  echo "Next: leasectl inspect"
}

# --delete: removes what the record says this script created (newest first), after asking
# unless --yes; anything it did not create is left alone.
delete_azure() {
  local file
  file=$(created_file)
  if [ ! -s "$file" ]; then
    echo "Nothing to delete: this script created no Azure resources (none recorded in $file)."
    return 0
  fi
  echo "This script created:"
  sed 's/^/  /' "$file"
  if [ "$yes" != 1 ]; then
    [ -t 0 ] || die "pass --yes to delete these without a terminal to ask on" 2
    local answer
    read -r -p "Delete them? [y/N] " answer
    case $answer in y|Y|yes|YES) ;; *) echo "Nothing deleted."; return 0 ;; esac
  fi
  command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed"
  local kind g n
  tac "$file" | while read -r kind g n; do
    case $kind in
      cluster) echo "Deleting Azure Managed Redis $n..."
        az redisenterprise delete --cluster-name "$n" --resource-group "$g" --yes --output none ;;
      cache) echo "Deleting Azure Cache for Redis $n..."
        az redis delete --name "$n" --resource-group "$g" --yes --output none ;;
      group) echo "Deleting resource group $g..."
        az group delete --name "$g" --yes --output none ;;
    esac
  done || exit 1
  rm -f "$file"
  rmdir "$state" 2>/dev/null || true
  echo "Deleted what this script created."
}

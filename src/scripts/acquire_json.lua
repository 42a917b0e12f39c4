-- Prepended to acquire.lua for LeaseFormat Json (the .NET DistributedLeasing.Azure.Redis
-- package's value): the lease is one JSON string set with SET NX PX, as the package sets it,
-- and "ours" means the string's leaseId is ours. ARGV[7] is the JSON value up to its fencing
-- token ({"leaseId":…,"metadata":{…},"fencingToken":).

-- The lease id in `key`: nil when there is no key, else its JSON's leaseId, or true (held,
-- whoever wrote it) for any other value.
local function lease_owner(key)
  local value = redis.pcall('GET', key)
  if type(value) ~= 'string' then
    -- false: no key; a table (an error): not a string, so held.
    return value or nil
  end
  local ok, json = pcall(cjson.decode, value)
  if ok and type(json) == 'table' and type(json['leaseId']) == 'string' then
    return json['leaseId']
  end
  return true
end

-- The fencing token of our own lease in `key`, read as text: a Lua number would round a token
-- of more than 14 digits.
local function our_token(key)
  return tonumber(string.match(redis.call('GET', key), '"fencingToken":(%d+)}$'))
end

-- Writes our lease into the free `key` with `token`.
local function write_lease(key, token)
  redis.call('SET', key, ARGV[7] .. token .. '}', 'NX', 'PX', ARGV[2])
end

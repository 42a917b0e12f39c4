-- LeaseFormat Json: extends the lease only while the key's JSON value has our leaseId. The
-- value itself is left as it is, so a .NET compare of it still matches.
-- KEYS[1] lease key, KEYS[2] (quorum mode) the longest TTL in ms the lease was asked for here;
-- ARGV[1] lease id, ARGV[2] ttl in ms
-- Returns 1 when extended, 0 when the key is gone, is not JSON, or holds another lease.
if KEYS[2] and (tonumber(redis.call('GET', KEYS[2]) or 0) or 0) < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
-- pcall: a key of another type answers an error, which is not ours.
local value = redis.pcall('GET', KEYS[1])
if type(value) ~= 'string' then
  return 0
end
local ok, json = pcall(cjson.decode, value)
if ok and type(json) == 'table' and json['leaseId'] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0

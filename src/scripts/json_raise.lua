-- LeaseFormat Json, quorum mode: raise.lua for the JSON value — raises the fencing counter to
-- at least the token a majority agreed on, and writes that token into our value (keeping its
-- TTL) while it is ours here.
-- KEYS[1] lease key, KEYS[2] fencing counter; ARGV[1] token, ARGV[2] lease id
-- Returns the counter's value afterwards.
local token = tonumber(ARGV[1])
local counter = tonumber(redis.call('GET', KEYS[2]) or 0) or 0
if counter < token then
  redis.call('SET', KEYS[2], ARGV[1])
  counter = token
end
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'string' then
  local ok, json = pcall(cjson.decode, value)
  local pttl = redis.call('PTTL', KEYS[1])
  if ok and type(json) == 'table' and json['leaseId'] == ARGV[2] and pttl > 0 then
    local raised = string.gsub(value, '"fencingToken":%d+}$', '"fencingToken":' .. ARGV[1] .. '}')
    redis.call('SET', KEYS[1], raised, 'PX', pttl)
  end
end
return counter

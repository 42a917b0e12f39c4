-- Shared by acquire.lua and inspect.lua (prepended to both when they are loaded).

-- Reads a lease key of any format: a hash (ours, the .NET RedisLeaseSample's), or a string (the .NET package's
-- JSON, or a plain token from redis-py, Redlock and others).
-- Returns {type, pttl, fields}: HGETALL's flat list for a hash, {value} for a string.
local function read_holder(key)
  local kind = redis.call('TYPE', key)['ok']
  local fields = {}
  if kind == 'hash' then
    fields = redis.call('HGETALL', key)
  elseif kind == 'string' then
    fields = {redis.call('GET', key)}
  end
  return {kind, redis.call('PTTL', key), fields}
end

-- The fencing counter's value; 0 when it is missing (or not a number).
local function read_counter(key)
  return tonumber(redis.call('GET', key) or 0) or 0
end


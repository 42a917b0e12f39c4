-- LeaseFormat Json: releases a lease — or a set taken together — wherever the key's JSON
-- value still has our leaseId, and wakes the next waiter of each (as release.lua does). A
-- value that is not JSON, or has another leaseId, is left alone.
-- KEYS, two per lease: [2i-1] lease key, [2i] waiters' queue; ARGV[1] lease id,
-- ARGV[1+i] lease i's release channel ('' to release silently)
-- Returns {how many were released, why a notification was refused ('' when none was)}.
local function holds(key, id)
  local value = redis.pcall('GET', key)
  if type(value) ~= 'string' then
    return false
  end
  local ok, json = pcall(cjson.decode, value)
  return ok and type(json) == 'table' and json['leaseId'] == id
end

local released, refused = 0, ''
for i = 1, #KEYS / 2 do
  local key, queue, channel = KEYS[2 * i - 1], KEYS[2 * i], ARGV[1 + i]
  if holds(key, ARGV[1]) then
    redis.call('DEL', key)
    if channel ~= '' then
      local published = redis.pcall('PUBLISH', channel, redis.call('ZRANGE', queue, 0, 0)[1] or '')
      if type(published) == 'table' and published.err then
        refused = published.err
      end
    end
    released = released + 1
  end
end
return {released, refused}

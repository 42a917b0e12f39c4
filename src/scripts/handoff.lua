-- Releases one lease in single mode (one instance: standalone, Sentinel's primary, a Cluster's
-- primary of its slot) if it is still ours, and hands it straight to the first queued waiter
-- that left a grant request (acquire.lua keeps them beside the queue): the waiter learns from
-- the notification that it holds the lease, and needs no round trip of its own.
-- KEYS[1] lease key, KEYS[2] waiters' queue, KEYS[3] their deadlines, KEYS[4] their grant
-- requests, KEYS[5] fencing counter; ARGV[1] the command that announces a release ('PUBLISH',
-- or 'SPUBLISH' in a Redis 7+ cluster), ARGV[2] lease id, ARGV[3] release channel, ARGV[4]
-- acquiredAt for a grant: the releasing client's clock, RFC 3339 UTC with milliseconds (as an
-- acquiring client sends its own to acquire.lua; formatting it in Lua from TIME cost a grant
-- 2.5 µs more on the server).
-- The notification: '' when no one is queued (every waiter tries); the first waiter's place
-- when it left no grant request (it tries; the payload older clients know); or
-- 'PLACE TOKEN ACQUIREDAT' when the lease was granted to the waiter at PLACE, under its place
-- as lease id, with its own values, the next fencing token (taken as acquire.lua takes it:
-- token.lua) and the TTL it asked for a grant (the client asks for at most its queue grace, so
-- that a waiter that died just before does not block the lease longer than its place would
-- have; the waiter extends it to its own TTL at once).
-- Returns as release.lua: 1 when released, 0 when the key is gone or holds another lease, or
-- {1, why} when the notification was refused (the release and the grant stand).
-- Nothing is queued, the usual case: HGET, DEL, ZRANGE and PUBLISH, as release.lua.

-- `holds(key, id)`: owns.lua, and `take_token`: token.lua, both prepended.

local key, queue = KEYS[1], KEYS[2]
if not holds(key, ARGV[2]) then
  return 0
end
redis.call('DEL', key)
-- '0' as text: a number passed to redis.call is formatted (snprintf) on every call. pcall: a
-- queue of another type (something else wrote it) holds no waiter, and the release stands.
local named = redis.pcall('ZRANGE', queue, '0', '0')[1] or ''
if named ~= '' then
  -- In a pcall, made only when someone waits: should the waiters' other keys be of another
  -- type, the lease is released to no one (and announced so) rather than the release failing
  -- after its DEL.
  local handed, told = pcall(function()
    local deadlines, grants, fence = KEYS[3], KEYS[4], KEYS[5]
    local time = redis.call('TIME')
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    -- Waiters that stopped confirming their place lose it first (as in acquire.lua).
    local gone = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now)
    if #gone > 0 then
      for _, waiter in ipairs(gone) do
        redis.call('ZREM', queue, waiter)
        redis.call('ZREM', deadlines, waiter)
        redis.call('HDEL', grants, waiter)
      end
      named = redis.call('ZRANGE', queue, '0', '0')[1] or ''
    end
    local request = named ~= '' and redis.call('HGET', grants, named)
    local ok, asked = false, nil
    if request then
      ok, asked = pcall(cjson.decode, request)
    end
    -- {'h', ttl, field, value, ...}: a hash with those meta_* fields; {'j', ttl, head, tail}:
    -- the JSON string head .. acquiredAt .. tail .. token .. '}'.
    if ok and type(asked) == 'table' and (asked[1] == 'h' or asked[1] == 'j') then
      -- acquiredAt: with milliseconds in the hash, whole seconds in the JSON (see format.rs).
      local at = ARGV[4]
      if asked[1] == 'j' then
        at = string.sub(at, 1, 19) .. 'Z'
      end
      local floor = time[1] .. string.sub('00000' .. time[2], -6)
      local token = take_token(fence, floor, tonumber(floor))
      if token then
        if asked[1] == 'h' then
          redis.call('HSET', key, 'leaseId', named, 'acquiredAt', at, 'fencingToken', token,
            unpack(asked, 3))
          redis.call('PEXPIRE', key, asked[2])
        else
          redis.call('SET', key, asked[3] .. at .. asked[4] .. token .. '}', 'PX', asked[2])
        end
        redis.call('ZREM', queue, named)
        redis.call('ZREM', deadlines, named)
        redis.call('HDEL', grants, named)
        named = named .. ' ' .. token .. ' ' .. at
      end
    end
    return named
  end)
  named = handed and told or ''
end
local published = redis.pcall(ARGV[1], ARGV[3], named)
if type(published) == 'table' and published.err then
  return {1, published.err}
end
return 1

-- Takes a lease — or a set of leases, all or none — when every key is free and no waiter is
-- ahead in its queue; otherwise answers who holds the first one that is not free (or how many
-- wait for it), in the same round trip.
-- KEYS, per lease: lease key, fencing counter (never expires, never deleted), waiters' queue
-- (zset: waiter -> ticket), waiters' deadlines (zset: waiter -> ms), and in quorum mode only a
-- fifth: the longest TTL in ms the lease was ever asked for here (never expires, like the
-- counter)
-- ARGV[1] lease id, ARGV[2] ttl in ms, ARGV[3] acquiredAt,
-- ARGV[4] waiter id ('' = not queueing; only for a single lease), ARGV[5] how long a waiter
-- keeps its place without trying again (ms), ARGV[6] the least token to hand out ('' = this
-- server's clock in microseconds: single mode), ARGV[7..] the lease's values (the format's:
-- acquire_hash.lua or acquire_json.lua, prepended, says how an owner is read and a grant
-- written)
-- Returns {1, token1, token2, ...} when taken (in quorum mode {3, longest, token1, ...}: the
-- longest TTL the leases were granted with here before; the client knows how long this
-- instance has been up), {0, {type, pttl, fields}, counter, i, longest} when lease i is held,
-- or {2, waiters, counter, i, longest} when lease i is free but promised to the first waiter in
-- its queue.
-- The free path — the usual case — calls EXISTS, (TIME,) SET ... GET and the format's write
-- (HSET and PEXPIRE, or SET NX PX), and in quorum mode one GET of the longest TTL: nothing else.
local id, ttl, waiter = ARGV[1], ARGV[2], ARGV[4]
local quorum = ARGV[6] ~= ''
local stride = quorum and 5 or 4
local leases = #KEYS / stride

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Takes (or keeps) the waiter's place in line, and notes that it is still waiting.
local function join_queue(queue, deadlines, now)
  local grace = tonumber(ARGV[5])
  if not redis.call('ZSCORE', queue, waiter) then
    local last = redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES')
    local ticket = 1
    if last[2] then
      ticket = tonumber(last[2]) + 1
    end
    redis.call('ZADD', queue, ticket, waiter)
  end
  redis.call('ZADD', deadlines, now + grace, waiter)
  redis.call('PEXPIRE', queue, 2 * grace)
  redis.call('PEXPIRE', deadlines, 2 * grace)
end

-- Quorum mode: every instance an acquirer reaches remembers its TTL, whether or not it grants,
-- so that an instance that restarts later is judged young against it by any instance the
-- holder reached (its acquire, or its renewals: see extend.lua). `longest`: the longest TTL
-- the set's leases were asked for here, ours included.
local longest = 0
if quorum then
  local asked = tonumber(ttl)
  for i = 1, leases do
    local key = KEYS[5 * i]
    local remembered = tonumber(redis.call('GET', key) or 0) or 0
    if remembered < asked then
      redis.call('SET', key, ttl)
      remembered = asked
    end
    longest = math.max(longest, remembered)
  end
end

-- First every lease is checked; nothing is written unless all of them can be taken.
-- ours[i]: lease i is ours already (a retry whose first answer was lost with its connection);
-- queued[i]: lease i is free with a queue, which we may be in.
local ours, queued = {}, {}
for i = 1, leases do
  local at = stride * (i - 1)
  local key, fence, queue, deadlines = KEYS[at + 1], KEYS[at + 2], KEYS[at + 3], KEYS[at + 4]
  -- A set's counters are checked before anything is written (a single lease's as it is
  -- taken, in the same call that writes it).
  if leases > 1 and not tonumber(redis.call('GET', fence) or 0) then
    return redis.error_reply('ERR the fencing counter ' .. fence .. ' is not an integer')
  end
  local present = redis.call('EXISTS', key, queue)
  if present > 0 then
    -- Anything but our id (a key of another format answers true or an error) is held.
    local holder = lease_owner(key)
    if holder == id then
      ours[i] = true
    elseif holder or present == 2 or redis.call('EXISTS', key) == 1 then
      if waiter ~= '' then
        join_queue(queue, deadlines, now_ms())
      end
      return {0, read_holder(key), read_counter(fence), i, longest}
    else
      local now = now_ms()
      for _, gone in ipairs(redis.call('ZRANGEBYSCORE', deadlines, '-inf', now)) do
        redis.call('ZREM', queue, gone)
        redis.call('ZREM', deadlines, gone)
      end
      local first = redis.call('ZRANGE', queue, 0, 0)[1]
      if first and first ~= waiter then
        join_queue(queue, deadlines, now)
        return {2, redis.call('ZCARD', queue), read_counter(fence), i, longest}
      end
      queued[i] = true
    end
  end
end

-- The next fencing token: one more than the counter, but never less than a clock in
-- microseconds (`floor`), so that tokens keep increasing even when the counter is lost (a
-- restart with empty memory, a failover to a replica that missed the last writes): a token
-- taken after such a loss is still larger than any taken before it. The clock is this
-- server's in single mode; in quorum mode the client sends its own, so that the instances hand
-- out the same token. One call in the usual case (the clock is ahead of the counter): SET ...
-- GET writes the floor and answers the counter it replaced (before Redis 6.2: GET, then SET).
-- Tokens are kept as strings: a Lua number passed to redis.call would get 14 significant digits.
local function next_token(fence, floor)
  local old = redis.pcall('SET', fence, floor, 'GET')
  if type(old) == 'table' and old.err then
    old = redis.call('GET', fence)
    redis.call('SET', fence, floor)
  end
  local counter = tonumber(old or 0)
  if not counter then
    redis.call('SET', fence, old)
    return nil, redis.error_reply('ERR the fencing counter ' .. fence .. ' is not an integer')
  end
  if counter < tonumber(floor) then
    return floor
  end
  local token = string.format('%d', counter + 1)
  redis.call('SET', fence, token)
  return token
end

local floor = ARGV[6]
if not quorum then
  local time = redis.call('TIME')
  floor = time[1] .. string.format('%06d', tonumber(time[2]))
end
local taken = {1}
if quorum then
  taken = {3, longest}
end
for i = 1, leases do
  local at = stride * (i - 1)
  local key, fence, queue, deadlines = KEYS[at + 1], KEYS[at + 2], KEYS[at + 3], KEYS[at + 4]
  if ours[i] then
    taken[#taken + 1] = our_token(key)
  else
    if queued[i] and waiter ~= '' then
      redis.call('ZREM', queue, waiter)
      redis.call('ZREM', deadlines, waiter)
    end
    local token, corrupt = next_token(fence, floor)
    if corrupt then
      return corrupt
    end
    write_lease(key, token)
    taken[#taken + 1] = tonumber(token)
  end
end
return taken

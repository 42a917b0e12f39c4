-- Takes a lease — or a set of leases, all or none — when every key is free and no waiter is
-- ahead in its queue; otherwise answers who holds the first one that is not free (or how many
-- wait for it), in the same round trip.
-- KEYS, five per lease: [5i-4] lease key, [5i-3] fencing counter (never expires, never
-- deleted), [5i-2] waiters' queue (zset: waiter -> ticket), [5i-1] waiters' deadlines (zset:
-- waiter -> ms), [5i] the longest TTL in ms the lease was ever asked for here (quorum mode;
-- never expires, like the counter)
-- ARGV[1] lease id, ARGV[2] ttl in ms, ARGV[3] acquiredAt,
-- ARGV[4] waiter id ('' = not queueing; only for a single lease), ARGV[5] how long a waiter
-- keeps its place without trying again (ms), ARGV[6] the least token to hand out ('' = this
-- server's clock in microseconds), ARGV[7..] meta_* field/value pairs
-- Returns {1, token1, token2, ...} when taken (in quorum mode {3, uptime, longest, token1, ...}:
-- the seconds since this instance started, -1 when INFO is not allowed, and the longest TTL the
-- leases were granted with here before), {0, {type, pttl, fields}, counter, i, longest} when
-- lease i is held, or {2, waiters, counter, i, longest} when lease i is free but promised to the
-- first waiter in its queue.
local quorum = ARGV[6] ~= ''
local id, waiter, grace = ARGV[1], ARGV[4], tonumber(ARGV[5])
local leases = #KEYS / 5

-- Quorum mode: how long ago this instance started, in whole seconds (-1: unknown). Restarted
-- with empty memory (or from a snapshot that missed the last writes), it may have lost a lease
-- it granted; the client weighs its vote against the others' (see quorum.rs), judging "recently"
-- against the longest TTL any instance remembers for the lease. INFO's uptime is the difference
-- of two whole-second clocks, so it may be a second ahead. Without the right to run INFO, the
-- instance counts as old.
local function uptime()
  local info = redis.pcall('INFO', 'server')
  if type(info) ~= 'string' then
    return -1
  end
  return tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or -1
end

-- The longest TTL (ms) the leases were granted with here, the largest of the set's.
local function longest_ttl()
  local longest = 0
  for i = 1, leases do
    longest = math.max(longest, tonumber(redis.call('GET', KEYS[5 * i]) or 0) or 0)
  end
  return longest
end

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- The next fencing token: one more than the counter, but never less than a clock in
-- microseconds, so that tokens keep increasing even when the counter is lost (a restart with
-- empty memory, a failover to a replica that missed the last writes): a token taken after such
-- a loss is still larger than any taken before it. The clock is this server's in single mode;
-- in quorum mode the client sends its own, so that the instances hand out the same token.
-- Written with %d: a Lua number passed to redis.call would get 14 significant digits.
local function next_token(fence, counter)
  local floor = tonumber(ARGV[6])
  if not floor then
    local time = redis.call('TIME')
    floor = tonumber(time[1]) * 1000000 + tonumber(time[2])
  end
  local token = math.max(counter + 1, floor)
  redis.call('SET', fence, string.format('%d', token))
  return token
end

local function is_ours(key)
  return redis.call('TYPE', key)['ok'] == 'hash' and redis.call('HGET', key, 'leaseId') == id
end

-- Takes (or keeps) the waiter's place in line, and notes that it is still waiting.
local function join_queue(queue, deadlines, now)
  if waiter == '' then
    return
  end
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
-- holder reached (its acquire, or its renewals: see extend.lua).
if quorum then
  for i = 1, leases do
    if (tonumber(redis.call('GET', KEYS[5 * i]) or 0) or 0) < tonumber(ARGV[2]) then
      redis.call('SET', KEYS[5 * i], ARGV[2])
    end
  end
end

-- First every lease is checked; nothing is written unless all of them can be taken.
local ours, counters = {}, {}
for i = 1, leases do
  local key, fence, queue, deadlines = KEYS[5 * i - 4], KEYS[5 * i - 3], KEYS[5 * i - 2], KEYS[5 * i - 1]
  local counter = redis.call('GET', fence)
  counters[i] = tonumber(counter or 0)
  if not counters[i] then
    return redis.error_reply('ERR the fencing counter ' .. fence .. ' is not an integer')
  end
  if redis.call('EXISTS', key, queue) == 0 then
    -- Free, and nobody waits for it: the usual case, one call.
  elseif redis.call('EXISTS', key) == 1 then
    -- Ours already: this is a retry whose first answer was lost with its connection.
    if not is_ours(key) then
      if waiter ~= '' then
        join_queue(queue, deadlines, now_ms())
      end
      return {0, read_holder(key), counters[i], i, longest_ttl()}
    end
    ours[i] = true
  elseif redis.call('EXISTS', queue) == 1 then
    local now = now_ms()
    for _, gone in ipairs(redis.call('ZRANGEBYSCORE', deadlines, '-inf', now)) do
      redis.call('ZREM', queue, gone)
      redis.call('ZREM', deadlines, gone)
    end
    local first = redis.call('ZRANGE', queue, 0, 0)[1]
    if first and first ~= waiter then
      join_queue(queue, deadlines, now)
      return {2, redis.call('ZCARD', queue), counters[i], i, longest_ttl()}
    end
  end
end

local taken, first = {1}, 1
if quorum then
  taken, first = {3, uptime(), longest_ttl()}, 3
end
for i = 1, leases do
  local key, fence, queue, deadlines = KEYS[5 * i - 4], KEYS[5 * i - 3], KEYS[5 * i - 2], KEYS[5 * i - 1]
  if ours[i] then
    taken[i + first] = tonumber(redis.call('HGET', key, 'fencingToken'))
  else
    if waiter ~= '' then
      redis.call('ZREM', queue, waiter)
      redis.call('ZREM', deadlines, waiter)
    end
    local token = next_token(fence, counters[i])
    local fields = {key, 'leaseId', id, 'acquiredAt', ARGV[3], 'fencingToken', string.format('%d', token)}
    for f = 7, #ARGV do
      fields[#fields + 1] = ARGV[f]
    end
    redis.call('HSET', unpack(fields))
    redis.call('PEXPIRE', key, ARGV[2])
    taken[i + first] = token
  end
end
return taken

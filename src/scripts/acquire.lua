-- Takes the lease when its key is free and no waiter is ahead in its queue; otherwise answers
-- who holds it (or how many wait), in the same round trip.
-- KEYS[1] lease key, KEYS[2] fencing counter (never expires, never deleted),
-- KEYS[3] waiters' queue (zset: waiter -> ticket), KEYS[4] waiters' deadlines (zset: waiter -> ms)
-- ARGV[1] lease id, ARGV[2] ttl in ms, ARGV[3] acquiredAt,
-- ARGV[4] waiter id ('' = not queueing), ARGV[5] how long a waiter keeps its place without
-- trying again (ms), ARGV[6..] meta_* field/value pairs
-- Returns {1, fencingToken} when taken, {0, {type, pttl, fields}, counter} when held, or
-- {2, waiters, counter} when free but promised to the first waiter in the queue.
local waiter, grace = ARGV[4], tonumber(ARGV[5])

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Takes (or keeps) the waiter's place in line, and notes that it is still waiting.
local function join_queue(now)
  if waiter == '' then
    return
  end
  if not redis.call('ZSCORE', KEYS[3], waiter) then
    local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
    local ticket = 1
    if last[2] then
      ticket = tonumber(last[2]) + 1
    end
    redis.call('ZADD', KEYS[3], ticket, waiter)
  end
  redis.call('ZADD', KEYS[4], now + grace, waiter)
  redis.call('PEXPIRE', KEYS[3], 2 * grace)
  redis.call('PEXPIRE', KEYS[4], 2 * grace)
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  -- Ours already: this is a retry whose first answer was lost with its connection.
  if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], 'leaseId') == ARGV[1] then
    return {1, tonumber(redis.call('HGET', KEYS[1], 'fencingToken'))}
  end
  if waiter ~= '' then
    join_queue(now_ms())
  end
  return {0, read_holder(KEYS[1]), read_counter(KEYS[2])}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  local now = now_ms()
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
    redis.call('ZREM', KEYS[3], gone)
    redis.call('ZREM', KEYS[4], gone)
  end
  local first = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if first and first ~= waiter then
    join_queue(now)
    return {2, redis.call('ZCARD', KEYS[3]), read_counter(KEYS[2])}
  end
  if first then
    redis.call('ZREM', KEYS[3], waiter)
    redis.call('ZREM', KEYS[4], waiter)
  end
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'leaseId', ARGV[1], 'acquiredAt', ARGV[3], 'fencingToken', token)
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, token}

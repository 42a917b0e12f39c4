-- LeaseFormat Json: acquire.lua for the seed 000 package's value. The same keys, arguments
-- and answers as acquire.lua (the fencing counter, the waiters' queue and the quorum
-- bookkeeping work alike), but the lease is one JSON string set with SET NX PX, as the .NET
-- package sets it, and "ours" means the string's leaseId is ours. Any other value (a hash, a
-- string that is not our JSON) is held, whoever wrote it.
-- KEYS, five per lease: lease key, fencing counter, waiters' queue, waiters' deadlines, the
-- longest TTL asked for here (see acquire.lua)
-- ARGV[1] lease id, ARGV[2] ttl in ms, ARGV[3] acquiredAt (unused: it is in ARGV[7]),
-- ARGV[4] waiter id ('' = not queueing), ARGV[5] how long a waiter keeps its place (ms),
-- ARGV[6] the least token to hand out ('' = this server's clock in microseconds),
-- ARGV[7] the JSON value up to its fencing token ({"leaseId":…,"metadata":{…},"fencingToken":)
-- Returns as acquire.lua does.
local quorum = ARGV[6] ~= ''
local id, waiter, grace = ARGV[1], ARGV[4], tonumber(ARGV[5])
local leases = #KEYS / 5

-- Quorum mode: seconds since this instance started (-1: INFO not allowed); see acquire.lua.
local function uptime()
  local info = redis.pcall('INFO', 'server')
  if type(info) ~= 'string' then
    return -1
  end
  return tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or -1
end

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

-- One more than the counter, never less than a clock in microseconds (see acquire.lua).
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

-- Our JSON value's fencing token; nil when the key holds anything else.
local function our_token(key)
  if redis.call('TYPE', key)['ok'] ~= 'string' then
    return nil
  end
  local value = redis.call('GET', key)
  local ok, json = pcall(cjson.decode, value)
  if ok and type(json) == 'table' and json['leaseId'] == id then
    -- Read as text: a Lua number would round a token of more than 14 digits.
    return tonumber(string.match(value, '"fencingToken":(%d+)}$'))
  end
  return nil
end

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
  counters[i] = tonumber(redis.call('GET', fence) or 0)
  if not counters[i] then
    return redis.error_reply('ERR the fencing counter ' .. fence .. ' is not an integer')
  end
  if redis.call('EXISTS', key, queue) == 0 then
    -- Free, and nobody waits for it.
  elseif redis.call('EXISTS', key) == 1 then
    ours[i] = our_token(key)
    if not ours[i] then
      if waiter ~= '' then
        join_queue(queue, deadlines, now_ms())
      end
      return {0, read_holder(key), counters[i], i, longest_ttl()}
    end
  else
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
    taken[i + first] = ours[i]
  else
    if waiter ~= '' then
      redis.call('ZREM', queue, waiter)
      redis.call('ZREM', deadlines, waiter)
    end
    local token = next_token(fence, counters[i])
    redis.call('SET', key, ARGV[7] .. string.format('%d', token) .. '}', 'NX', 'PX', ARGV[2])
    taken[i + first] = token
  end
end
return taken

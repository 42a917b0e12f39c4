-- Takes a lease — or a set of leases, all or none — when every key is free and no waiter is
-- ahead in its queue; otherwise answers who holds the first one that is not free (or how many
-- wait for it), in the same round trip.
-- KEYS, per lease: lease key, fencing counter (never expires, never deleted), waiters' queue
-- (zset: waiter -> ticket), waiters' deadlines (zset: waiter -> ms), and a fifth in quorum
-- mode, the longest TTL in ms the lease was ever asked for here (never expires, like the
-- counter), or for a queueing caller in single mode, the waiters' grant requests (hash:
-- waiter -> what handoff.lua needs to hand it the lease)
-- ARGV[1] lease id, ARGV[2] ttl in ms, ARGV[3] acquiredAt, ARGV[4] '' when the caller does not
-- queue, else it queues under its lease id (its place; only for a single lease) and this is its
-- grant request (see handoff.lua), or '-' for none, ARGV[5] how long a waiter
-- keeps its place without trying again (ms), ARGV[6] the least token to hand out ('' = this
-- server's clock in microseconds: single mode), ARGV[7..] the lease's values (the format's:
-- acquire_hash.lua or acquire_json.lua, prepended, says how an owner is read and a grant
-- written)
-- Returns the token when one lease is taken and nothing else is to be told; else {1, token1,
-- token2, ...} when taken (in quorum mode {3, longest, token1, ...}; the client knows how long
-- this instance has been up), {0, {type, pttl, fields}, counter, i, longest} when lease i is
-- held, or {2, waiters, counter, i, longest} when lease i is free but promised to the first
-- waiter in its queue. `longest`: the longest TTL in ms the leases were asked for here when
-- that is longer than ours, else 0 (always 0 in single mode).
-- The free path — the usual case — calls EXISTS, (TIME,) SET ... GET and the format's write
-- (HSET and PEXPIRE, or SET NX PX), and in quorum mode one GET of the longest TTL: nothing
-- else. Its Lua costs the server about as much as those commands, so it is kept lean too:
-- no function made for the other paths (each is a closure made on every call), no table
-- answered when a number will do (Redis looks up every special field a table may have),
-- numbers parsed only where needed (tonumber is strtod), none passed to redis.call (each is
-- formatted with snprintf).
local id, ttl, floor = ARGV[1], ARGV[2], ARGV[6]
local quorum = floor ~= ''
local waiter = ARGV[4] ~= '' and id or ''
-- A caller that does not queue (try_acquire, S1, S2) passes no grant requests: no key, no
-- argument more than it needs.
local stride = (quorum or waiter ~= '') and 5 or 4
local leases = #KEYS / stride

-- Quorum mode: every instance an acquirer reaches remembers its TTL, whether or not it grants,
-- so that an instance that restarts later is judged young against it by any instance the
-- holder reached (its acquire, or its renewals: see extend.lua). `longest`: the longest TTL
-- the set's leases were asked for here when that is longer than ours, else 0 (the client
-- judges by ours then).
local longest, asked = 0, nil
if quorum then
  for i = 1, leases do
    local key = KEYS[5 * i]
    local remembered = redis.call('GET', key)
    -- Usually the TTL asked for last time: equal as text, nothing to parse.
    if remembered ~= ttl then
      asked = asked or tonumber(ttl)
      remembered = tonumber(remembered or 0) or 0
      if remembered < asked then
        redis.call('SET', key, ttl)
      elseif remembered > asked and remembered > longest then
        longest = remembered
      end
    end
  end
end

-- First every lease is checked; nothing is written unless all of them can be taken.
-- found[i], made only when a lease is present: 'ours' (lease i is ours already: a retry whose
-- first answer was lost with its connection) or 'queued' (free with a queue, which we may be
-- in).
local found
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
    local function now_ms()
      local time = redis.call('TIME')
      return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    end
    -- Takes (or keeps) the waiter's place in line, and notes that it is still waiting.
    local function join_queue(now)
      local grace = tonumber(ARGV[5])
      if not redis.call('ZSCORE', queue, waiter) then
        local last = redis.call('ZRANGE', queue, '-1', '-1', 'WITHSCORES')
        local ticket = 1
        if last[2] then
          ticket = tonumber(last[2]) + 1
        end
        redis.call('ZADD', queue, ticket, waiter)
      end
      redis.call('ZADD', deadlines, now + grace, waiter)
      redis.call('PEXPIRE', queue, 2 * grace)
      redis.call('PEXPIRE', deadlines, 2 * grace)
      if ARGV[4] ~= '-' then
        redis.call('HSET', KEYS[at + 5], waiter, ARGV[4])
        redis.call('PEXPIRE', KEYS[at + 5], 2 * grace)
      end
    end
    found = found or {}
    -- Anything but our id (a key of another format answers true or an error) is held.
    local holder = lease_owner(key)
    if holder == id then
      found[i] = 'ours'
    elseif holder or present == 2 or redis.call('EXISTS', key) == 1 then
      if waiter ~= '' then
        join_queue(now_ms())
      end
      return {0, read_holder(key), read_counter(fence), i, longest}
    else
      local now = now_ms()
      -- (Queues are kept in single mode only. A caller that does not queue leaves the grant
      -- requests of places run out to the next waiter's or release's sweep, or to the hash's
      -- own expiry: a request is never used without its place.)
      for _, gone in ipairs(redis.call('ZRANGEBYSCORE', deadlines, '-inf', now)) do
        redis.call('ZREM', queue, gone)
        redis.call('ZREM', deadlines, gone)
        if waiter ~= '' then
          redis.call('HDEL', KEYS[at + 5], gone)
        end
      end
      local first = redis.call('ZRANGE', queue, '0', '0')[1]
      if first and first ~= waiter then
        -- (A caller that does not wait takes no place: a place named '' would be first in
        -- line for everyone who does not wait, and never confirmed.)
        if waiter ~= '' then
          join_queue(now)
        end
        return {2, redis.call('ZCARD', queue), read_counter(fence), i, longest}
      end
      found[i] = 'queued'
    end
  end
end

-- Then each is taken, with the next fencing token (token.lua's take_token: one more than the
-- counter, never less than a clock in microseconds). The clock is this server's in single
-- mode; in quorum mode the client sends its own, so that the instances hand out the same token.
if not quorum then
  local time = redis.call('TIME')
  floor = time[1] .. string.sub('00000' .. time[2], -6)
end
local least = tonumber(floor)
-- The usual case, one lease taken (and in quorum mode none asked for longer here before), is
-- answered with its token alone: a table costs the server about as much to answer as a
-- command (Redis looks up each of the special fields a table may have).
local taken
if leases > 1 or longest > 0 then
  taken = quorum and {3, longest} or {1}
end
for i = 1, leases do
  local at = stride * (i - 1)
  local key, fence = KEYS[at + 1], KEYS[at + 2]
  local mark = found and found[i]
  local number
  if mark == 'ours' then
    -- Ours already (a retry whose answer was lost, or a grant handoff.lua made to this
    -- waiter): its TTL starts anew, so that the validity the client counts from this call holds.
    number = our_token(key)
    redis.call('PEXPIRE', key, ttl)
  else
    if mark == 'queued' and waiter ~= '' then
      redis.call('ZREM', KEYS[at + 3], waiter)
      redis.call('ZREM', KEYS[at + 4], waiter)
      redis.call('HDEL', KEYS[at + 5], waiter)
    end
    local token
    token, number = take_token(fence, floor, least)
    if not token then
      return number
    end
    write_lease(key, token)
  end
  if not taken then
    return number
  end
  taken[#taken + 1] = number
end
return taken

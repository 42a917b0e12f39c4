-- Releases a lease — or a set of leases taken together — wherever it is still ours, and wakes
-- the next waiter of each.
-- KEYS, two per lease: [2i-1] lease key, [2i] waiters' queue; ARGV[1] the command that
-- announces a release ('PUBLISH', or 'SPUBLISH' in a Redis 7+ cluster), ARGV[2] lease id,
-- ARGV[2+i] lease i's release channel ('' to release silently: undoing a partial quorum
-- acquire must not wake the waiters, or a waiter that undoes its own grant would wake itself
-- over and over)
-- The notification names the first queued waiter (only it needs to try now), or is empty
-- when no one is queued (then every waiter tries). This script releases sets, quorum
-- instances and undone attempts; one lease in single mode is released by handoff.lua, which
-- hands it to its first waiter.
-- Returns how many were released (0 when every key is gone or holds another lease), or, when a
-- notification was refused, {how many, why}: a refused PUBLISH (an ACL user without it) does
-- not undo the release, which stands; the waiters then notice it by polling.
-- The usual case calls HGET, DEL, ZRANGE and PUBLISH, each once, and answers a number (a table
-- costs the server about as much to answer as a command).

-- `holds(key, id)`: owns.lua, prepended.

local released, refused = 0, ''
for i = 1, #KEYS / 2 do
  local key, queue, channel = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 + i]
  if holds(key, ARGV[2]) then
    redis.call('DEL', key)
    if channel ~= '' then
      -- '0' as text: a number passed to redis.call is formatted (snprintf) on every call.
      -- pcall: a queue of another type (something else wrote it) holds no waiter.
      local first = redis.pcall('ZRANGE', queue, '0', '0')[1] or ''
      local published = redis.pcall(ARGV[1], channel, first)
      if type(published) == 'table' and published.err then
        refused = published.err
      end
    end
    released = released + 1
  end
end
if refused ~= '' then
  return {released, refused}
end
return released

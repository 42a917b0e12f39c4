-- A queued waiter that still waits keeps its place: pushes the place's deadline on (a waiter
-- that died stops doing so, and its place runs out soon). A place already gone stays gone:
-- the waiter takes a new one at its next try — unless it is gone because a release handed the
-- waiter the lease (handoff.lua), which this tells, in case the notification was lost.
-- KEYS[1] waiters' queue, KEYS[2] waiters' deadlines, KEYS[3] their grant requests, KEYS[4]
-- lease key; ARGV[1] waiter id, ARGV[2] how long a waiter keeps its place without confirming
-- it (ms)
-- Returns 1 when the place was kept, 0 when it was gone, 2 when it was gone because the lease
-- is the waiter's (held under its place as lease id).

-- `holds(key, id)`: owns.lua, prepended.

local grace = tonumber(ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if holds(KEYS[4], ARGV[1]) then
    return 2
  end
  return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[2], now + grace, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * grace)
redis.call('PEXPIRE', KEYS[2], 2 * grace)
redis.call('PEXPIRE', KEYS[3], 2 * grace)
return 1

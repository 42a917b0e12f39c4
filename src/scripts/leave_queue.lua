-- A waiter that gives up leaves the queue at once (rather than when its place times out),
-- with its grant request.
-- KEYS[1] waiters' queue, KEYS[2] waiters' deadlines, KEYS[3] their grant requests; ARGV[1]
-- waiter id
-- Returns 1 when the waiter was in the queue, 0 when it was not (its place ran out, or a
-- release handed it the lease: the client then releases the lease held under its place).
local queued = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return queued

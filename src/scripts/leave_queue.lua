-- A waiter that gives up leaves the queue at once (rather than when its place times out).
-- KEYS[1] waiters' queue, KEYS[2] waiters' deadlines; ARGV[1] waiter id
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1

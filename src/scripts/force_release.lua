-- Deletes a lease key whoever holds it (an operator's action), and wakes the next waiter.
-- KEYS[1] lease key, KEYS[2] waiters' queue; ARGV[1] release channel
-- Returns the number of keys deleted (0 or 1).
local deleted = redis.call('DEL', KEYS[1])
if deleted == 1 then
  redis.call('PUBLISH', ARGV[1], redis.call('ZRANGE', KEYS[2], 0, 0)[1] or '')
end
return deleted

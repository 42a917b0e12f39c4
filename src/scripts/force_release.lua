-- Deletes a lease key whoever holds it (an operator's action), and wakes the waiters.
-- KEYS[1] lease key; ARGV[1] release channel
-- Returns the number of keys deleted (0 or 1).
local deleted = redis.call('DEL', KEYS[1])
if deleted == 1 then
  redis.call('PUBLISH', ARGV[1], '')
end
return deleted

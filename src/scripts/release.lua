-- Releases the lease only while it is ours, and wakes the waiters.
-- KEYS[1] lease key; ARGV[1] lease id, ARGV[2] release channel
-- Returns 1 when released, 0 when the key is gone or holds another lease.
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], 'leaseId') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[1])
  return 1
end
return 0

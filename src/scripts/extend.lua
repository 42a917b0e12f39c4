-- Extends the lease only while it is still ours.
-- KEYS[1] lease key; ARGV[1] lease id, ARGV[2] ttl in ms
-- Returns 1 when extended, 0 when the key is gone or holds another lease.
-- pcall: a key of another type answers an error, which is not our id.
if redis.pcall('HGET', KEYS[1], 'leaseId') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0

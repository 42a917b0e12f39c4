-- Takes the lease when its key is free; otherwise answers who holds it, in the same round trip.
-- KEYS[1] lease key, KEYS[2] fencing counter (never expires, never deleted)
-- ARGV[1] lease id, ARGV[2] ttl in ms, ARGV[3] acquiredAt, ARGV[4..] meta_* field/value pairs
-- Returns {1, fencingToken} when taken, or {0, {type, pttl, fields}, counter} when held.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, read_holder(KEYS[1]), read_counter(KEYS[2])}
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'leaseId', ARGV[1], 'acquiredAt', ARGV[3], 'fencingToken', token)
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, token}

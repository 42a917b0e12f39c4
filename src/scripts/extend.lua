-- Extends the lease only while it is still ours.
-- KEYS[1] lease key, KEYS[2] (quorum mode) the longest TTL in ms the lease was asked for here;
-- ARGV[1] lease id, ARGV[2] ttl in ms
-- Returns 1 when extended, 0 when the key is gone or holds another lease.
-- Quorum mode: the TTL is remembered here even when the lease is not ours here (see acquire.lua),
-- so that an instance that missed the acquire still learns it from the renewals.
if KEYS[2] and (tonumber(redis.call('GET', KEYS[2]) or 0) or 0) < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
-- pcall: a key of another type answers an error, which is not our id.
if redis.pcall('HGET', KEYS[1], 'leaseId') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0

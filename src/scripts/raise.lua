-- Quorum mode: raises the fencing counter to at least the token a majority agreed on, so that
-- no other majority (nor an instance that restarted empty) can hand out a smaller one later;
-- and records the token in the lease while it is ours.
-- KEYS[1] lease key, KEYS[2] fencing counter; ARGV[1] token, ARGV[2] lease id
-- Returns the counter's value afterwards.
local token = tonumber(ARGV[1])
local counter = tonumber(redis.call('GET', KEYS[2]) or 0) or 0
if counter < token then
  redis.call('SET', KEYS[2], token)
  counter = token
end
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], 'leaseId') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'fencingToken', token)
end
return counter

-- Releases the lease only while it is ours, and wakes the next waiter.
-- KEYS[1] lease key, KEYS[2] waiters' queue; ARGV[1] lease id, ARGV[2] release channel
-- ('' to release silently: undoing a partial quorum acquire must not wake the waiters, or a
-- waiter that undoes its own grant would wake itself over and over)
-- The notification names the first queued waiter (only it needs to try now), or is empty
-- when no one is queued (then every waiter tries).
-- Returns 1 when released, 0 when the key is gone or holds another lease.
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], 'leaseId') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] ~= '' then
    redis.call('PUBLISH', ARGV[2], redis.call('ZRANGE', KEYS[2], 0, 0)[1] or '')
  end
  return 1
end
return 0

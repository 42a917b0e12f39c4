-- Deletes a lease key whoever holds it (an operator's action), and wakes the next waiter.
-- KEYS[1] lease key, KEYS[2] waiters' queue; ARGV[1] release channel
-- Returns {the number of keys deleted (0 or 1), why the notification was refused ('' when it
-- was not)}: as in release.lua, a refused PUBLISH does not undo the deletion.
local deleted, refused = redis.call('DEL', KEYS[1]), ''
if deleted == 1 then
  local published = redis.pcall('PUBLISH', ARGV[1], redis.call('ZRANGE', KEYS[2], 0, 0)[1] or '')
  if type(published) == 'table' and published.err then
    refused = published.err
  end
end
return {deleted, refused}

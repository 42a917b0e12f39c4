-- Deletes a lease key whoever holds it (an operator's action), and wakes the next waiter —
-- when told what the operator was shown, only if the key still holds exactly that.
-- KEYS[1] lease key, KEYS[2] waiters' queue; ARGV[1] the command that announces it ('PUBLISH',
-- or 'SPUBLISH' in a Redis 7+ cluster), ARGV[2] release channel; optional ARGV[3] the
-- Redis type shown ('hash', 'string', ...), then ARGV[4...] what was shown of it: a hash's
-- every field and value (flat), or a string's value (nothing for another type).
-- Returns {the number of keys deleted (0 when the key is gone or holds something else), why
-- the notification was refused ('' when it was not)}: as in release.lua, a refused PUBLISH
-- does not undo the deletion.
if ARGV[3] then
  local kind = redis.call('TYPE', KEYS[1])['ok']
  if kind ~= ARGV[3] then
    return {0, ''}
  end
  if kind == 'hash' then
    local now = redis.call('HGETALL', KEYS[1])
    if #now ~= #ARGV - 3 then
      return {0, ''}
    end
    local shown = {}
    for i = 4, #ARGV, 2 do
      shown[ARGV[i]] = ARGV[i + 1]
    end
    for i = 1, #now, 2 do
      if shown[now[i]] ~= now[i + 1] then
        return {0, ''}
      end
    end
  elseif kind == 'string' and redis.call('GET', KEYS[1]) ~= ARGV[4] then
    return {0, ''}
  end
end
local deleted, refused = redis.call('DEL', KEYS[1]), ''
if deleted == 1 then
  local published = redis.pcall(ARGV[1], ARGV[2], redis.pcall('ZRANGE', KEYS[2], '0', '0')[1] or '')
  if type(published) == 'table' and published.err then
    refused = published.err
  end
end
return {deleted, refused}

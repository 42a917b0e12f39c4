-- The grant branch of handoff.lua, continued after token.lua (see handoff.lua): a waiter that left a
-- grant request is handed the lease.
    -- acquiredAt: with milliseconds in the hash, whole seconds in the JSON (see format.rs).
    local at = ARGV[4]
    if asked[1] == 'j' then
      at = string.sub(at, 1, 19) .. 'Z'
    end
    local floor = time[1] .. string.sub('00000' .. time[2], -6)
    local token = take_token(fence, floor, tonumber(floor))
    if token then
      if asked[1] == 'h' then
        redis.call('HSET', key, 'leaseId', named, 'acquiredAt', at, 'fencingToken', token,
          unpack(asked, 3))
        redis.call('PEXPIRE', key, asked[2])
      else
        redis.call('SET', key, asked[3] .. at .. asked[4] .. token .. '}', 'PX', asked[2])
      end
      redis.call('ZREM', queue, named)
      redis.call('ZREM', deadlines, named)
      redis.call('HDEL', grants, named)
      named = named .. ' ' .. token .. ' ' .. at
    end
  end
end
local published = redis.pcall(ARGV[1], ARGV[3], named)
if type(published) == 'table' and published.err then
  return {1, published.err}
end
return 1

-- The protected resource's side of fencing: writes a value only when the writer's fencing
-- token is not older than the newest token a write to this key has carried, so a holder that
-- was paused past its TTL cannot overwrite the work of the holder after it.
-- KEYS[1] the protected key, KEYS[2] the newest token seen for it; ARGV[1] value, ARGV[2] token
-- Returns {1, token} when written, {0, newest} when refused.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'string' then
  return redis.error_reply('WRONGTYPE the protected key holds a ' .. kind .. ', not a string value')
end
local token = tonumber(ARGV[2])
local newest = tonumber(redis.call('GET', KEYS[2]) or -1) or -1
if token < newest then
  return {0, newest}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return {1, token}

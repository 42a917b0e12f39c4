-- Shared by acquire.lua and handoff.lua (prepended to each): how a lease's fencing token is
-- taken.
-- In single mode `floor` is this server's clock: TIME's seconds .. its microseconds padded to six
-- digits.

-- Takes the next token of the fencing counter `fence`: one more than the counter, but never
-- less than a clock in microseconds (`floor`, as text; `least`, the same as a number), so that
-- tokens keep increasing even when the counter is lost (a restart with empty memory, a failover
-- to a replica that missed the last writes): a token taken after such a loss is still larger
-- than any taken before it. One call in the usual case (the clock is ahead of the counter):
-- SET ... GET writes the floor and answers the counter it replaced (before Redis 6.2: GET, then
-- SET). Tokens are written as text (Lua's own number-to-text, as `..` uses, keeps 14 significant
-- digits) and answered as numbers (exact: they are below 2^53).
-- Returns the token as text and as a number; or nil and an error reply when the counter is not
-- an integer (it is left as it was).
local function take_token(fence, floor, least)
  local old = redis.pcall('SET', fence, floor, 'GET')
  if type(old) == 'table' and old.err then
    old = redis.call('GET', fence)
    redis.call('SET', fence, floor)
  end
  if old then
    local counter = tonumber(old)
    if not counter then
      redis.call('SET', fence, old)
      return nil, redis.error_reply('ERR the fencing counter ' .. fence .. ' is not an integer')
    end
    if counter >= least then
      local number = counter + 1
      local token = string.format('%d', number)
      redis.call('SET', fence, token)
      return token, number
    end
  end
  return floor, least
end

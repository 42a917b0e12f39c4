-- Shared by acquire.lua, handoff.lua and keep_place.lua (prepended to each): this server's
-- clock, TIME's answer ({seconds, microseconds}, as text), read at most once per script run,
-- so that the calls coalesced into one run (coalesced.lua) read it once between them.
local clock_read
local function clock()
  clock_read = clock_read or redis.call('TIME')
  return clock_read
end

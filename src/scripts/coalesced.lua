-- Runs several calls of one script in one EVALSHA: the calls that the tasks of one client
-- made to one instance while earlier ones were still unanswered (see coalesce.rs). EVALSHA's
-- own cost (its arguments made into Lua tables, the script looked up and set up) is then paid
-- once for them all. Each call runs as it would alone, one after another, in the order sent.
-- KEYS: every call's keys, one call after another; ARGV[1] the number of calls n, ARGV[2..n+1]
-- how many keys each call has, ARGV[n+2..2n+1] how many arguments, then every call's
-- arguments, one call after another.
-- Returns {answers, errors}: one answer per call, what the script returned (false for nothing,
-- or when it failed), and for each call that failed, its number and its error's text (errors
-- are not answered inside the array: a client would take one for the whole reply's).
-- (the script's helpers: made once for every call)
local function run(KEYS, ARGV)
-- (the script's text)
end

local calls = tonumber(ARGV[1])
local answers, errors, k, a = {}, {}, 0, 2 * calls + 1
for i = 1, calls do
  local keys, args = tonumber(ARGV[1 + i]), tonumber(ARGV[1 + calls + i])
  local ok, answer = pcall(run, {unpack(KEYS, k + 1, k + keys)}, {unpack(ARGV, a + 1, a + args)})
  k, a = k + keys, a + args
  -- A failed redis.call raises its error reply, a table with `err`, as a script returns one;
  -- a Lua error is text.
  local failed
  if type(answer) == 'table' and answer.err then
    failed = answer.err
  elseif not ok then
    failed = tostring(answer)
  end
  if failed then
    errors[#errors + 1] = i
    errors[#errors + 1] = failed
    answer = false
  elseif answer == nil then
    answer = false
  end
  answers[i] = answer
end
return {answers, errors}

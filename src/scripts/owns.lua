-- Shared by release.lua, handoff.lua and keep_place.lua (prepended to each when it is loaded).

-- Whether `key` holds lease `id`, in any format inspect reads: our hash's `leaseId`, the .NET
-- package's JSON string's `leaseId`, or a plain token string that is the id itself.
local function holds(key, id)
  -- pcall: a key of another type answers an error, which is not our id.
  local field = redis.pcall('HGET', key, 'leaseId')
  if field == id then
    return true
  end
  if type(field) ~= 'table' or redis.call('TYPE', key)['ok'] ~= 'string' then
    return false
  end
  local value = redis.call('GET', key)
  if value == id then
    return true
  end
  local ok, json = pcall(cjson.decode, value)
  return ok and type(json) == 'table' and json['leaseId'] == id
end

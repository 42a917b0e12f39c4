-- Prepended to acquire.lua for LeaseFormat Hash (seed 002's hash): how a lease names its
-- owner, and how a grant is written. ARGV[7..] are the meta_* field/value pairs.

-- The lease id in `key`: nil when it holds none, a table (an error) when it is no hash.
local function lease_owner(key)
  return redis.pcall('HGET', key, 'leaseId')
end

-- The fencing token of our own lease in `key`.
local function our_token(key)
  return tonumber(redis.call('HGET', key, 'fencingToken'))
end

-- Writes our lease into the free `key` with `token`.
local function write_lease(key, token)
  redis.call('HSET', key, 'leaseId', ARGV[1], 'acquiredAt', ARGV[3], 'fencingToken', token, unpack(ARGV, 7))
  redis.call('PEXPIRE', key, ARGV[2])
end

-- Creates a session record (one hash, one key) unless it exists.
-- KEYS[1] session key
-- ARGV: grant json, sid_created_at, sid_expiry, oauth client id, refresh hash, refresh expiry, ttl seconds
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1],
  'g', ARGV[1], 'ca', ARGV[2], 'ex', ARGV[3], 'rc', '0', 'st', 'active',
  'cl', ARGV[4], 'rt', ARGV[5], 'rx', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1

-- Ends an active session when the presented refresh token (current or retired) is one of its own and the
-- revoking client owns the session (RFC 7009).
-- KEYS[1] session key; ARGV[1] presented hash, ARGV[2] client id, ARGV[3] the invalidation channel
-- Every change is published on the invalidation channel (the session key as the message), in the same step,
-- so the instances' local session caches drop it (src/store/cache.rs).
local f = redis.call('HMGET', KEYS[1], 'st', 'cl', 'rt')
if f[1] ~= 'active' or f[2] ~= ARGV[2] then
  return 0
end
if f[3] ~= ARGV[1] and redis.call('HEXISTS', KEYS[1], 'u:' .. ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'st', 'revoked')
redis.call('HDEL', KEYS[1], 'pt', 'pu', 'pb')
redis.call('PUBLISH', ARGV[3], KEYS[1])
return 1

-- Adds a session to its user's index. Called before the session is stored, so every stored session is in
-- its user's index (an id whose session was never stored, or has expired, is skipped when listing).
-- KEYS[1] the user's index (sorted set: session id -> when its record expires)
-- ARGV: session id, record expiry (Unix seconds), now
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ttl = tonumber(ARGV[2]) - tonumber(ARGV[3])
if redis.call('TTL', KEYS[1]) < ttl then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return 1

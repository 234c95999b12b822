-- Ends the session a replayed authorization code issued, whether or not it has been created yet: an active
-- session is revoked (as end_session.lua does); an id with no record yet is reserved as revoked for the replay
-- window, so that create_session.lua (which refuses an existing key) can never create it afterwards.
-- KEYS[1] session key; ARGV[1] seconds to keep the reservation, ARGV[2] the invalidation channel
-- Every change is published on the invalidation channel (the session key as the message), in the same step,
-- so the instances' local session caches drop it (src/store/cache.rs).
local st = redis.call('HGET', KEYS[1], 'st')
if not st then
  redis.call('HSET', KEYS[1], 'st', 'revoked')
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return 1
end
if st ~= 'active' then
  return 0
end
redis.call('HSET', KEYS[1], 'st', 'revoked')
redis.call('HDEL', KEYS[1], 'pt', 'pu', 'pb')
redis.call('PUBLISH', ARGV[2], KEYS[1])
return 1

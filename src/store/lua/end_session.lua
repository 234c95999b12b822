-- Ends an active session: every token of it stops working, and no grace-window repeat is served.
-- KEYS[1] session key; ARGV[1] the new state (revoked | upstream_rejected), ARGV[2] the invalidation channel
-- Every change is published on the invalidation channel (the session key as the message), in the same step,
-- so the instances' local session caches drop it (src/store/cache.rs).
if redis.call('HGET', KEYS[1], 'st') ~= 'active' then
  return 0
end
redis.call('HSET', KEYS[1], 'st', ARGV[1])
redis.call('HDEL', KEYS[1], 'pt', 'pu', 'pb')
redis.call('PUBLISH', ARGV[2], KEYS[1])
return 1

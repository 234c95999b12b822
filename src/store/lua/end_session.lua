-- Ends an active session: every token of it stops working, and no grace-window repeat is served.
-- KEYS[1] session key; ARGV[1] the new state (revoked | upstream_rejected)
if redis.call('HGET', KEYS[1], 'st') ~= 'active' then
  return 0
end
redis.call('HSET', KEYS[1], 'st', ARGV[1])
redis.call('HDEL', KEYS[1], 'pt', 'pu', 'pb')
return 1

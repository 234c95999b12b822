-- Adds an instance's requests to a session's counter in one rate-limit window (the approximate backend's
-- sync) and answers the deployment's count. The same key as get_session_metered.lua counts in (exact backend).
-- KEYS[1] window counter key; ARGV[1] requests to add (may be 0: only read), ARGV[2] window seconds
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return n

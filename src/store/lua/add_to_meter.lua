-- Adds an instance's requests to sessions' counters in one rate-limit window (the approximate backend's sync)
-- and answers the deployment's counts, one per key. The same keys get_session_metered.lua counts in (exact
-- backend). One key per call on Redis Cluster (each session's counter has its own slot); many elsewhere.
-- KEYS[i] window counter key; ARGV[i] requests to add to it (may be 0: only read); ARGV[#KEYS + 1] window seconds
local seconds = ARGV[#KEYS + 1]
local counts = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCRBY', key, ARGV[i])
  if redis.call('TTL', key) < 0 then
    redis.call('EXPIRE', key, seconds)
  end
  counts[i] = n
end
return counts

-- Reads a session and counts one request against it in the current rate-limit window, atomically and in
-- one round trip. Both keys carry the session's hash tag (one Cluster slot).
-- KEYS[1] session key, KEYS[2] window counter key; ARGV[1] window seconds
local s = redis.call('HMGET', KEYS[1], 'g', 'ca', 'ex', 'rc', 'lr', 'st')
if not s[1] then
  return {'0'}
end
local n = redis.call('INCR', KEYS[2])
if n == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
for i = 1, 6 do if not s[i] then s[i] = '' end end
return {tostring(n), s[1], s[2], s[3], s[4], s[5], s[6]}

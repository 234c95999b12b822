-- Spends an authorization code exactly once. A fresh code is stored as "F:" .. grant; a spent one as
-- "S:" .. the session it issued, kept for the replay window so a replay can revoke that session.
-- KEYS[1] code key; ARGV[1] session id being issued, ARGV[2] replay window seconds
local v = redis.call('GET', KEYS[1])
if not v then
  return {'unknown', ''}
end
local tag, body = string.sub(v, 1, 2), string.sub(v, 3)
if tag == 'S:' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {'replayed', body}
end
redis.call('SET', KEYS[1], 'S:' .. ARGV[1], 'EX', ARGV[2])
return {'redeemed', body}

-- Rotates a refresh token atomically. The same decision as `rotate` in src/store/memory.rs, and the refresh
-- condition of `rules::refresh_status` (state, then sid_expiry, then the refresh limit): this is its Redis twin.
-- The rule is stated once, as a table of cases both twins run: `REFRESH_RULE` in tests/store_conformance.rs.
-- KEYS[1] session key
-- ARGV: presented hash, successor hash, sealed successor, client id, now, max refresh count,
--       grace seconds, refresh ttl, the invalidation channel
-- Every change is published on the invalidation channel (the session key as the message), in the same step,
-- so the instances' local session caches drop it (src/store/cache.rs).
local k = KEYS[1]
local f = redis.call('HMGET', k, 'cl', 'st', 'ex', 'rc', 'rt', 'rx', 'pt', 'pu', 'pb')
if not f[1] or f[1] ~= ARGV[4] then
  return {'invalid'}
end
local now = tonumber(ARGV[5])
local state, expiry, count = f[2], tonumber(f[3]), tonumber(f[4])

local function ended()
  if state ~= 'active' then return state end
  if now >= expiry then return 'expired' end
  return nil
end

local function snapshot(outcome, extra)
  local s = redis.call('HMGET', k, 'g', 'ca', 'ex', 'rc', 'lr', 'st')
  for i = 1, 6 do if not s[i] then s[i] = '' end end
  return {outcome, extra, s[1], s[2], s[3], s[4], s[5], s[6]}
end

if ARGV[1] == f[5] then
  local why = ended()
  if why then return {'refused', why} end
  if count >= tonumber(ARGV[6]) then return {'refused', 'refresh_limit_exceeded'} end
  if now >= tonumber(f[6]) then return {'invalid'} end
  local refresh_expiry = math.min(now + tonumber(ARGV[8]), expiry)
  redis.call('HSET', k,
    'u:' .. ARGV[1], '1',
    'pt', ARGV[1], 'pu', string.format('%d', now + tonumber(ARGV[7])), 'pb', ARGV[3],
    'rt', ARGV[2], 'rx', string.format('%d', refresh_expiry),
    'rc', string.format('%d', count + 1), 'lr', ARGV[5])
  redis.call('PUBLISH', ARGV[9], k)
  return snapshot('rotated', '')
end

if f[7] and ARGV[1] == f[7] and now < tonumber(f[8]) then
  local why = ended()
  if why then return {'refused', why} end
  return snapshot('repeated', f[9])
end

if redis.call('HEXISTS', k, 'u:' .. ARGV[1]) == 1 then
  redis.call('HSET', k, 'st', 'revoked')
  redis.call('HDEL', k, 'pt', 'pu', 'pb')
  redis.call('PUBLISH', ARGV[9], k)
  return {'reuse'}
end
return {'invalid'}

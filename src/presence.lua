-- Presence, the per-user cap and revocation (presence.ts; the structures are in
-- docs/OPERATIONS.md, Presence). One script, run with EVALSHA, ARGV[1] naming the
-- operation, so that each batch is one command and one round trip. Key names are
-- built here from the namespace: the script is not for Redis Cluster as it stands
-- (a cluster would need one call per slot).
--
--   <ns>:gateways                 ZSET  gateway -> last heartbeat, ms (Redis clock)
--   <ns>:presence:{user:<id>}     HASH  gateway -> connections of the user there
--   <ns>:subscribers:{<topic>}    HASH  gateway -> connections holding the topic there
--   <ns>:gateway:<gw>             HASH  c:<user> / s:<topic> -> what gw wrote (for reaping)
--   <ns>:revoked:{user:<id>}      STRING unix s: the user's tokens issued before are refused

local op = ARGV[1]
local ns = ARGV[2]
local GATEWAYS = ns .. ':gateways'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function user_key(user) return ns .. ':presence:{user:' .. user .. '}' end
local function topic_key(topic) return ns .. ':subscribers:{' .. topic .. '}' end
local function revoked_key(user) return ns .. ':revoked:{user:' .. user .. '}' end
local function gateway_key(gw) return ns .. ':gateway:' .. gw end

-- `c:<user>` or `s:<topic>` -> the hash it names.
local function key_of(field)
  if string.sub(field, 1, 2) == 'c:' then return user_key(string.sub(field, 3)) end
  return topic_key(string.sub(field, 3))
end

-- The connections a hash counts on live gateways, `except` left out.
local function live_sum(key, oldest, except)
  local h = redis.call('HGETALL', key)
  local sum = 0
  for i = 1, #h, 2 do
    if h[i] ~= except then
      local beat = redis.call('ZSCORE', GATEWAYS, h[i])
      if beat and tonumber(beat) >= oldest then sum = sum + tonumber(h[i + 1]) end
    end
  end
  return sum
end

-- Gateway gw's entry `field` is now n (0 removes it).
local function put(gw, field, n)
  local key = key_of(field)
  if n > 0 then
    redis.call('HSET', key, gw, n)
    redis.call('HSET', gateway_key(gw), field, n)
  else
    redis.call('HDEL', key, gw)
    redis.call('HDEL', gateway_key(gw), field)
  end
end

-- Removes up to `budget` of a dead gateway's entries; forgets the gateway once none is left.
local function reap(gw, budget)
  local gkey = gateway_key(gw)
  local fields = redis.call('HRANDFIELD', gkey, budget)
  for _, field in ipairs(fields) do
    redis.call('HDEL', key_of(field), gw)
    redis.call('HDEL', gkey, field)
  end
  if redis.call('HLEN', gkey) == 0 then
    redis.call('ZREM', GATEWAYS, gw)
    return 1
  end
  return 0
end

if op == 'flush' then
  -- ARGV: flush ns gw ttl_ms beat n (field count)* stream maxlen events (k args...)*
  -- beat = 0 (HERALD_PRESENCE off): only the events are written.
  local gw, ttl, beat = ARGV[3], tonumber(ARGV[4]), ARGV[5]
  local n = tonumber(ARGV[6])
  local i = 7
  for _ = 1, n do
    put(gw, ARGV[i], tonumber(ARGV[i + 1]))
    i = i + 2
  end
  local stream, maxlen, events = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  for _ = 1, events do
    local k = tonumber(ARGV[i])
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 1, i + k))
    i = i + k + 1
  end
  if beat == '0' then return { 0, 0, 0 } end
  local now = now_ms()
  -- 1: this gateway was not listed (first beat, or it was taken for dead and reaped).
  local added = redis.call('ZADD', GATEWAYS, now, gw)
  local reaped = 0
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', GATEWAYS, '-inf', '(' .. (now - ttl), 'LIMIT', 0, 4)) do
    reaped = reaped + reap(dead, 5000)
  end
  return { added, reaped, redis.call('ZCOUNT', GATEWAYS, now - ttl, '+inf') }
end

if op == 'admit' then
  -- ARGV: admit ns gw ttl_ms cap (user issued_at base)*. Per upgrade, in order: refused
  -- as revoked, refused over the cap, or admitted, which writes this gateway's count
  -- for the user at once (so that gateways admitting the same user together see each
  -- other). `base` is what this gateway held for the user when the batch left. cap -1
  -- (HERALD_PRESENCE off): the revocation check alone, nothing written.
  local gw, ttl, cap = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local oldest = now_ms() - ttl
  local added = {}
  local out = {}
  for i = 6, #ARGV, 3 do
    local user, issued, base = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local revoked = tonumber(redis.call('GET', revoked_key(user)) or '0')
    local verdict = 0
    if issued < revoked then
      verdict = 1
    elseif cap >= 0 then
      local mine = base + (added[user] or 0) + 1
      if cap > 0 and live_sum(user_key(user), oldest, gw) + mine > cap then
        verdict = 2
      else
        added[user] = (added[user] or 0) + 1
        put(gw, 'c:' .. user, mine)
      end
    end
    out[#out + 1] = verdict
    out[#out + 1] = revoked
  end
  return out
end

if op == 'read' then
  -- ARGV: read ns ttl_ms n_users users... topics... -> counts in the same order.
  local oldest = now_ms() - tonumber(ARGV[3])
  local users = tonumber(ARGV[4])
  local out = {}
  for i = 5, #ARGV do
    local key = (i < 5 + users) and user_key(ARGV[i]) or topic_key(ARGV[i])
    out[#out + 1] = live_sum(key, oldest, nil)
  end
  return out
end

if op == 'revoke' then
  -- ARGV: revoke ns user ttl_s channel. Tokens issued before now (Redis's clock, one for
  -- every gateway) are refused; the time only moves forward, and what is published is
  -- what is stored.
  local key = revoked_key(ARGV[3])
  local before = math.floor(now_ms() / 1000)
  local current = tonumber(redis.call('GET', key) or '0')
  if before > current then
    redis.call('SET', key, before, 'EX', ARGV[4])
  else
    before = current
  end
  local message = '{"action":"revoke","before":' .. string.format('%d', before) .. '}'
  return { redis.call('PUBLISH', ARGV[5], message), before }
end

if op == 'leave' then
  -- ARGV: leave ns gw: a gateway shutting down removes its entries (a chunk per call).
  return reap(ARGV[3], 5000)
end

return redis.error_reply('herald presence: unknown operation ' .. tostring(op))

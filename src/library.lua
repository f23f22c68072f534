-- Herald history (docs/DELIVERY.md): the deployment's Redis function library, loaded
-- by the gateways (src/history.ts). src/library.ts puts before this file the shebang
-- naming the library after HERALD_NAMESPACE, the marker line with its settings, and
-- these locals: NS (the namespace), SIZE (HERALD_HISTORY_SIZE), TTL_MS
-- (HERALD_HISTORY_TTL_S in ms), SEEN_MS (how long a recorded payload is recognised),
-- RECORDERS (HERALD_RECORDERS) and LEASE_TTL_MS (a recorder's lease). Functions are
-- named <NS>_publish, <NS>_record, <NS>_epoch, <NS>_lease and <NS>_release.
-- Change LIBRARY_VERSION in src/library.ts with every change here: a newer library is
-- never replaced by an older one.

-- A topic's keys and channel share the hash tag {topic} (one Redis Cluster slot).
local function history_key(topic) return NS .. ':history:{' .. topic .. '}' end
local function seen_key(topic) return NS .. ':seen:{' .. topic .. '}' end
local function notify_channel(topic) return NS .. ':notify:{' .. topic .. '}' end

local function epoch()
  local e = redis.call('GET', NS .. ':epoch')
  if e then return e end
  local t = redis.call('TIME')
  e = string.format('%x%06x', tonumber(t[1]), tonumber(t[2]))
  redis.call('SET', NS .. ':epoch', e)
  return e
end

-- The payload's own id (a string, 1-128 bytes, on an object payload), as the gateway
-- reads it. Only payloads mentioning "id" are decoded.
local function payload_id(payload)
  if not string.find(payload, '"id"', 1, true) then return nil end
  local ok, doc = pcall(cjson.decode, payload)
  if ok and type(doc) == 'table' and type(doc.id) == 'string' and #doc.id > 0 and #doc.id <= 128 then return doc.id end
  return nil
end

-- Appends an entry; returns 'offset id'. kind says what the payload is, as the gateway
-- that checked it found: 'j' JSON, 't' text, '?' unchecked (field k), so that replays
-- need not parse it. The stream's expiry is set once per call per topic (touched), not
-- per entry: a Lua redis.call costs a microsecond or two, and that is most of what
-- recording costs. Age is enforced when history is read.
local function append(topic, payload, kind, id, touched)
  local key = history_key(topic)
  local offset = redis.call('XADD', key, 'MAXLEN', SIZE, '*', 'd', payload, 'i', id or '', 'k', kind)
  touched[key] = true
  if not id then id = offset .. '@' .. string.sub(redis.sha1hex(topic), 1, 8) end
  return offset .. ' ' .. id
end

local function expire(touched)
  for key in pairs(touched) do redis.call('PEXPIRE', key, TTL_MS) end
end

-- Recording once, however many recorders call; returns 'offset id', and true when
-- this call recorded it.
--
-- A payload with its own id is the same notification as any payload with that id on
-- the topic within the seen window: key <ns>:seen:{<topic>}#<id> holds its entry.
--
-- Without an id, a payload's n-th publish (on one topic, within the seen window) is
-- the same message for every recorder: each counts the copies of the payload it
-- receives (field <caller> of <ns>:seen:{<topic>}:<sha1>), and its n-th copy maps to
-- the n-th entry recorded for that payload (field <n>), recorded by whichever caller
-- gets there first. An entry recorded before the caller's pattern subscription began
-- (since, Redis time in ms) belongs to a publish it never received, so its copy is a
-- new publish. So a payload published twice is two notifications, recorded once
-- each. caller nil (<ns>_publish) is always a new publish, and since is then unused.
local function record(caller, topic, payload, kind, since, touched)
  local id = payload_id(payload)
  if id then
    local key = seen_key(topic) .. '#' .. id
    local value = redis.call('GET', key)
    if value then return value, false end
    value = append(topic, payload, kind, id, touched)
    redis.call('SET', key, value, 'PX', SEEN_MS)
    return value, true
  end
  local seen = seen_key(topic) .. ':' .. redis.sha1hex(payload)
  local n
  if caller then
    n = redis.call('HINCRBY', seen, caller, 1)
    local value = redis.call('HGET', seen, n)
    if value then
      -- The <ms> part of the entry's offset: when it was recorded.
      if tonumber(string.match(value, '^(%d+)')) >= since then return value, false end
      n = nil
    end
  end
  if not n then
    n = tonumber(redis.call('HGET', seen, '#') or '0') + 1
    if caller then redis.call('HSET', seen, caller, n) end
  end
  local value = append(topic, payload, kind, nil, touched)
  redis.call('HSET', seen, n, value, '#', n)
  redis.call('PEXPIRE', seen, SEEN_MS)
  return value, true
end

-- A newly recorded notification goes to the gateways holding its topic, on the topic's
-- channel: '<offset> <epoch> <kind> <id length in bytes> <id><payload>'
-- (decodeAnnouncement in src/library.ts). Returns how many gateways Redis sent it to.
local function announce(topic, value, e, kind, payload)
  local sp = string.find(value, ' ', 1, true)
  local id = string.sub(value, sp + 1)
  return redis.call('PUBLISH', notify_channel(topic), string.sub(value, 1, sp - 1) .. ' ' .. e .. ' ' .. kind .. ' ' .. #id .. ' ' .. id .. payload)
end

local function kind_of(k)
  if k == 'j' or k == 't' then return k end
  return '?'
end

-- FCALL <ns>_publish 1 <topic> <payload> [j|t]: record and announce in one step;
-- returns {offset, id, epoch}. The optional kind says the payload is JSON (j) or text
-- (t); without it gateways check. An id already recorded on the topic returns its
-- entry and is not announced again (it was when it was recorded).
redis.register_function(NS .. '_publish', function(keys, args)
  local topic, payload, kind = keys[1], args[1], kind_of(args[2])
  local e = epoch()
  local touched = {}
  local value, new = record(nil, topic, payload, kind, nil, touched)
  expire(touched)
  if new then announce(topic, value, e, kind, payload) end
  local sp = string.find(value, ' ', 1, true)
  return { string.sub(value, 1, sp - 1), string.sub(value, sp + 1), e }
end)

-- FCALL <ns>_record 0 <caller> <since> <topic> <kind> <payload> [...]: what a
-- recorder calls for the plain PUBLISHes its pattern subscription brought (since: when
-- that subscription began, Redis time in ms; kind: j or t, as the recorder found the
-- payload); each message is recorded and announced once, whichever recorder gets
-- there first. Returns {epoch, how many this call recorded, how many gateway
-- subscriptions its announcements reached}.
redis.register_function(NS .. '_record', function(keys, args)
  local e = epoch()
  local caller, since, touched, recorded, reached = args[1], tonumber(args[2]), {}, 0, 0
  for i = 3, #args, 3 do
    local topic, kind, payload = args[i], kind_of(args[i + 1]), args[i + 2]
    local value, new = record(caller, topic, payload, kind, since, touched)
    if new then
      reached = reached + announce(topic, value, e, kind, payload)
      recorded = recorded + 1
    end
  end
  expire(touched)
  return { e, recorded, reached }
end)

-- FCALL <ns>_epoch 0: the dataset's epoch (created on first use).
redis.register_function(NS .. '_epoch', function() return epoch() end)

-- FCALL <ns>_lease 0 <caller>: renews the caller's recorder slot, or takes a free one;
-- returns the slot (0-based), or -1 when all RECORDERS are held by others.
redis.register_function(NS .. '_lease', function(keys, args)
  local caller = args[1]
  for i = 0, RECORDERS - 1 do
    local key = NS .. ':recorder:' .. i
    if redis.call('GET', key) == caller then
      redis.call('PEXPIRE', key, LEASE_TTL_MS)
      return i
    end
  end
  for i = 0, RECORDERS - 1 do
    if redis.call('SET', NS .. ':recorder:' .. i, caller, 'NX', 'PX', LEASE_TTL_MS) then return i end
  end
  return -1
end)

-- FCALL <ns>_release 0 <caller>: gives the caller's slot up (a clean shutdown), so
-- another gateway takes it at its next lease call rather than after the lease lapses.
redis.register_function(NS .. '_release', function(keys, args)
  for i = 0, RECORDERS - 1 do
    local key = NS .. ':recorder:' .. i
    if redis.call('GET', key) == args[1] then redis.call('DEL', key) end
  end
  return 0
end)

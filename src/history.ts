// Notification history (docs/DELIVERY.md): a capped Redis Stream per topic,
// `herald:history:<topic>`, written by a Redis function library that Herald loads at
// start and after every reconnect (a Redis that lost its data lost the library too).
// Two ways in, one recording rule: `herald_publish` (backends, POST /publish) records
// and PUBLISHes in one step; for a plain PUBLISH every gateway calls `herald_record`,
// and the first call for a payload records it while the others get its position back,
// so each message is recorded once however many gateways see it. The `epoch` names
// the Redis dataset: it changes when Redis loses its data, and positions from another
// epoch cannot be resumed.
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

export interface HistoryConfig {
  /** Entries kept per topic (XADD MAXLEN =). */
  size: number;
  /** Entries older than this are trimmed, and a quiet topic's stream expires after it. */
  ttlMs: number;
  /** How long a recorded payload is recognised when other gateways record it again. */
  seenWindowMs: number;
  /** Most entries one resume may replay per topic. */
  recoveryMax: number;
}

/** Where a notification sits in its topic's history. */
export interface Position {
  id: string;
  /** The stream entry id: `<ms>-<seq>`, increasing within the topic. */
  offset: string;
  epoch: string;
  /** The entry's time (ms), the ms part of the offset. */
  ts: number;
}

export interface HistoryEntry {
  id: string;
  offset: string;
  ts: number;
  /** The payload as published. */
  payload: string;
}

/** Where a client (or the gateway) resumes a topic from. */
export type ResumePoint = { offset: string } | { since: number };

export type Recovery =
  | { recovered: true; entries: HistoryEntry[] }
  | { recovered: false; why: 'epoch_changed' | 'trimmed' | 'too_many' };

export const HISTORY_PREFIX = 'herald:history:';
export const EPOCH_KEY = 'herald:epoch';

/** The library, with this deployment's settings baked in (every gateway loads the same). */
export function functionLibrary(channelPrefix: string, cfg: HistoryConfig): string {
  return `#!lua name=herald
-- Herald history (see docs/DELIVERY.md). Loaded by every gateway at start.
local PREFIX = ${luaString(channelPrefix)}
local SIZE = ${cfg.size}
local TTL_MS = ${cfg.ttlMs}
local SEEN_MS = ${cfg.seenWindowMs}

local function epoch()
  local e = redis.call('GET', '${EPOCH_KEY}')
  if e then return e end
  local t = redis.call('TIME')
  e = string.format('%x%06x', tonumber(t[1]), tonumber(t[2]))
  redis.call('SET', '${EPOCH_KEY}', e)
  return e
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The payload's own id (a string, 1-128 bytes, on an object payload), as the gateway
-- reads it. Only payloads mentioning "id" are decoded.
local function payload_id(payload)
  if not string.find(payload, '"id"', 1, true) then return nil end
  local ok, doc = pcall(cjson.decode, payload)
  if ok and type(doc) == 'table' and type(doc.id) == 'string' and #doc.id > 0 and #doc.id <= 128 then return doc.id end
  return nil
end

-- Appends an entry; returns 'offset id'. The stream's expiry is set once per call per
-- topic (touched), not per entry: a Lua redis.call costs about a microsecond or two,
-- and that is most of what recording costs. Age is enforced when history is read.
local function append(topic, payload, id, touched)
  local key = '${HISTORY_PREFIX}' .. topic
  local offset = redis.call('XADD', key, 'MAXLEN', SIZE, '*', 'd', payload, 'i', id or '')
  touched[key] = true
  if not id then id = offset .. '@' .. string.sub(redis.sha1hex(topic), 1, 8) end
  return offset .. ' ' .. id
end

local function expire(touched)
  for key in pairs(touched) do redis.call('PEXPIRE', key, TTL_MS) end
end

-- Recording once, however many gateways call; returns 'offset id'.
--
-- A payload with its own id is the same notification as any payload with that id on
-- the topic within the seen window (the gateways' dedup drops the repeat too): key
-- herald:seen:<topic>#<id> holds its entry ('#' never occurs in a topic). One GET for
-- every caller that finds it recorded.
--
-- Without an id, a payload's n-th publish (on one topic, within the seen window) is
-- the same message for every caller: each gateway counts the copies of the payload it
-- receives (field <caller> of herald:seen:<topic>:<sha1>), and its n-th copy maps to
-- the n-th entry recorded for that payload (field <n>), recorded by whichever caller
-- gets there first. So a payload is recorded once per publish, not once per gateway,
-- and a payload published twice is two notifications. A caller's count never passes
-- the entries recorded, so a missing field <n> means "not recorded yet". caller nil
-- (herald_publish) is always a new publish, and now is then unused.
local function record(caller, topic, payload, now, touched)
  local id = payload_id(payload)
  if id then
    local key = 'herald:seen:' .. topic .. '#' .. id
    local value = redis.call('GET', key)
    if value then return value end
    value = append(topic, payload, id, touched)
    redis.call('SET', key, value, 'PX', SEEN_MS)
    return value
  end
  local seen_key = 'herald:seen:' .. topic .. ':' .. redis.sha1hex(payload)
  local n
  if caller then
    n = redis.call('HINCRBY', seen_key, caller, 1)
    local value = redis.call('HGET', seen_key, n)
    if value then
      -- Copies of one publish reach every gateway within milliseconds: an entry more
      -- than 10 s old is an earlier publish this caller missed, so this is a new one.
      if tonumber(string.match(value, '^(%d+)')) > now - 10000 then return value end
      n = nil
    end
  end
  if not n then
    n = tonumber(redis.call('HGET', seen_key, '#') or '0') + 1
    if caller then redis.call('HSET', seen_key, caller, n) end
  end
  local value = append(topic, payload, nil, touched)
  redis.call('HSET', seen_key, n, value, '#', n)
  redis.call('PEXPIRE', seen_key, SEEN_MS)
  return value
end

-- FCALL herald_publish 1 <topic> <payload>: record, then PUBLISH; returns
-- {offset, id, epoch}. The same rules as the gateways' recording: an id already
-- recorded on the topic returns its entry. Gateways receive the PUBLISH and find it.
redis.register_function('herald_publish', function(keys, args)
  local topic, payload = keys[1], args[1]
  local e = epoch()
  local touched = {}
  local value = record(nil, topic, payload, nil, touched)
  expire(touched)
  redis.call('PUBLISH', PREFIX .. ':' .. topic, payload)
  local sp = string.find(value, ' ', 1, true)
  return { string.sub(value, 1, sp - 1), string.sub(value, sp + 1), e }
end)

-- FCALL herald_epoch 0: the dataset's epoch (created on first use).
redis.register_function('herald_epoch', function() return epoch() end)

-- FCALL herald_record 0 <caller> <topic> <payload> [<topic> <payload> ...]: what a
-- gateway (caller: its unique name) calls for each message a plain PUBLISH brought;
-- returns {epoch, 'offset id', ...}.
redis.register_function('herald_record', function(keys, args)
  local out = { epoch() }
  local caller, now, touched = args[1], now_ms(), {}
  for i = 2, #args, 2 do out[#out + 1] = record(caller, args[i], args[i + 1], now, touched) end
  expire(touched)
  return out
end)
`;
}

function luaString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** 'offset id' -> Position. */
function position(value: string, epoch: string): Position {
  const sp = value.indexOf(' ');
  const offset = value.slice(0, sp);
  return { offset, id: value.slice(sp + 1), epoch, ts: Number(offset.slice(0, offset.indexOf('-'))) };
}

/** Stream ids compared as (ms, seq). */
export function compareOffsets(a: string, b: string): number {
  const ai = a.indexOf('-');
  const bi = b.indexOf('-');
  const ms = Number(a.slice(0, ai)) - Number(b.slice(0, bi));
  return ms !== 0 ? ms : Number(a.slice(ai + 1)) - Number(b.slice(bi + 1));
}

const OFFSET_RE = /^\d{1,15}-\d{1,15}$/;
export const isOffset = (s: string): boolean => OFFSET_RE.test(s);

export interface History {
  readonly config: HistoryConfig;
  /** The last epoch seen (undefined until the first Redis answer). */
  readonly epoch: string | undefined;
  /** Loads (or replaces) the function library: call on every publisher (re)connect. */
  load(): Promise<void>;
  /** herald_record for a batch of plain-PUBLISH messages, in order. */
  record(batch: readonly { topic: string; payload: string | Buffer }[]): Promise<Position[]>;
  /** herald_publish for each item, in order (one pipeline). */
  publish(items: readonly { topic: string; payload: string }[]): Promise<Position[]>;
  /** What a client (or this gateway) missed on each topic since its point. */
  since(epoch: string, points: ReadonlyMap<string, ResumePoint>, nowMs: number): Promise<Map<string, Recovery>>;
}

export function createHistory(redis: Redis, channelPrefix: string, cfg: HistoryConfig): History {
  const library = functionLibrary(channelPrefix, cfg);
  /** This gateway's name in the seen keys: unique per process start. */
  const caller = `${process.pid}-${randomBytes(4).toString('hex')}`;
  let epoch: string | undefined;

  return {
    config: cfg,
    get epoch() {
      return epoch;
    },

    async load() {
      await redis.call('FUNCTION', 'LOAD', 'REPLACE', library);
      epoch = (await redis.call('FCALL', 'herald_epoch', '0')) as string;
    },

    async record(batch) {
      const args: Array<string | Buffer> = [caller];
      for (const { topic, payload } of batch) args.push(topic, payload);
      const out = (await redis.call('FCALL', 'herald_record', '0', ...args)) as string[];
      const e = out[0] as string;
      epoch = e;
      return out.slice(1).map((v) => position(v, e));
    },

    async publish(items) {
      const p = redis.pipeline();
      for (const { topic, payload } of items) p.call('FCALL', 'herald_publish', '1', topic, payload);
      const results = await p.exec();
      if (results === null) throw new Error('pipeline aborted');
      return results.map(([err, value]) => {
        if (err !== null) throw err;
        const [offset, id, e] = value as [string, string, string];
        epoch = e;
        return { offset, id, epoch: e, ts: Number(offset.slice(0, offset.indexOf('-'))) };
      });
    },

    async since(clientEpoch, points, nowMs) {
      const topics = [...points.keys()];
      const p = redis.pipeline();
      p.get(EPOCH_KEY);
      for (const topic of topics) {
        const key = HISTORY_PREFIX + topic;
        const point = points.get(topic) as ResumePoint;
        // Trimming removes the oldest entries. From an offset: if that entry is still
        // there, nothing after it was trimmed (so the range starts at it, inclusive).
        // From a time: complete if nothing was ever trimmed, or the oldest entry left
        // is older than the time (XINFO STREAM, O(1)).
        if ('offset' in point) p.exists(key);
        else p.call('XINFO', 'STREAM', key);
        // One XRANGE per topic, bounded: one entry more than may be replayed says "too many".
        const start = 'offset' in point ? point.offset : String(point.since);
        p.xrange(key, start, '+', 'COUNT', cfg.recoveryMax + 2);
      }
      const results = await p.exec();
      if (results === null) throw new Error('pipeline aborted');
      const [epochErr, current] = results[0] as [Error | null, string | null];
      if (epochErr !== null) throw epochErr;
      if (typeof current === 'string') epoch = current;
      const out = new Map<string, Recovery>();
      topics.forEach((topic, i) => {
        const point = points.get(topic) as ResumePoint;
        if (current !== clientEpoch) {
          out.set(topic, { recovered: false, why: 'epoch_changed' });
          return;
        }
        const [infoErr, info] = results[1 + 2 * i] as [Error | null, unknown];
        const [rangeErr, range] = results[2 + 2 * i] as [Error | null, Array<[string, string[]]> | null];
        if (rangeErr !== null) throw rangeErr;
        let entries = (range ?? []).map(([offset, fields]) => entry(topic, offset, fields));
        const startMs = 'offset' in point ? Number(point.offset.slice(0, point.offset.indexOf('-'))) : point.since;
        const exists = 'offset' in point ? info === 1 : infoErr === null && Array.isArray(info);
        if (!exists) {
          // No stream: nothing was published within the TTL. Complete only if the
          // point itself is within the TTL (anything newer would still be there).
          out.set(topic, startMs > nowMs - cfg.ttlMs ? { recovered: true, entries: [] } : { recovered: false, why: 'trimmed' });
          return;
        }
        if ('offset' in point) {
          const first = entries[0];
          if (first !== undefined && first.offset !== point.offset) {
            out.set(topic, { recovered: false, why: 'trimmed' });
            return;
          }
          entries = entries.slice(1);
        } else {
          const stream = info as unknown[];
          const trimmed = Number(infoField(stream, 'entries-added')) > Number(infoField(stream, 'length'));
          const oldest = (infoField(stream, 'first-entry') as [string] | null)?.[0];
          if (trimmed && (oldest === undefined || compareOffsets(oldest, `${point.since}-0`) >= 0)) {
            out.set(topic, { recovered: false, why: 'trimmed' });
            return;
          }
        }
        // Entries past the age bound count as trimmed (the stream is only trimmed by
        // count as it is written: cheaper than an XTRIM per entry).
        if (entries[0] !== undefined && entries[0].ts <= nowMs - cfg.ttlMs) out.set(topic, { recovered: false, why: 'trimmed' });
        else if (entries.length > cfg.recoveryMax) out.set(topic, { recovered: false, why: 'too_many' });
        else out.set(topic, { recovered: true, entries });
      });
      return out;
    },
  };
}

function infoField(info: unknown[], name: string): unknown {
  for (let i = 0; i + 1 < info.length; i += 2) if (info[i] === name) return info[i + 1];
  return undefined;
}

function entry(topic: string, offset: string, fields: string[]): HistoryEntry {
  let payload = '';
  let id = '';
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'd') payload = fields[i + 1] as string;
    else if (fields[i] === 'i') id = fields[i + 1] as string;
  }
  // The same derivation as the library's, for entries whose payload had no id.
  if (id === '') id = `${offset}@${sha1Prefix(topic)}`;
  return { id, offset, ts: Number(offset.slice(0, offset.indexOf('-'))), payload };
}

function sha1Prefix(s: string): string {
  return createHash('sha1').update(s).digest('hex').slice(0, 8);
}

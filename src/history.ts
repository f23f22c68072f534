// Notification history (docs/DELIVERY.md): a capped Redis Stream per topic, written
// by the deployment's function library (library.ts), which this module loads at start
// and after every reconnect (a Redis that lost its data lost the library too). Here:
// loading it, herald_publish for POST /publish, and reading a topic's history for
// resumes and gap fills. Recording plain PUBLISHes is the recorders' (recorder.ts).
// The `epoch` names the Redis dataset: it changes when Redis loses its data, and
// positions from another epoch cannot be resumed.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Names } from './keys.js';
import { functionLibrary, isJsonKind, type LibrarySettings, type LoadedLibrary, planLibrary } from './library.js';
import type { UnrecoveredReason } from './metrics.js';
import { compareOffsets, firstOffsetAt, isAtOrAfter, offsetMs } from './offsets.js';

export interface HistoryConfig {
  /** Entries kept per topic (XADD MAXLEN =). */
  size: number;
  /** Entries older than this are trimmed, and a quiet topic's stream expires after it. */
  ttlMs: number;
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
  /** Whether the payload is JSON, as checked when it was recorded; undefined = check it. */
  json?: boolean | undefined;
}

export interface HistoryEntry {
  id: string;
  offset: string;
  ts: number;
  /** The payload as published. */
  payload: string;
  /** As Position.json. */
  json: boolean | undefined;
}

/** Where a client (or the gateway) resumes a topic from. */
export type ResumePoint = { offset: string } | { since: number };

/** `why` is the label of herald_resumes_total{result="unrecovered"}. */
export type Recovery = { recovered: true; entries: HistoryEntry[] } | { recovered: false; why: UnrecoveredReason };

/** A `history` request's range: `limit` entries, the newest, or just before `before` or after `after` (exclusive). */
export interface PageRequest {
  limit: number;
  before?: string | undefined;
  after?: string | undefined;
}

/** A page of a topic's history, oldest first, and the dataset it belongs to. */
export interface HistoryPage {
  epoch: string;
  entries: HistoryEntry[];
}

/** Redis holds another deployment's library (or ours with other settings). */
export class LibraryConflict extends Error {
  override name = 'LibraryConflict';
}

export interface History {
  /** The last epoch seen (undefined until the first Redis answer). */
  readonly epoch: string | undefined;
  /** An epoch heard elsewhere (an announcement, a recorder's reply). */
  noteEpoch(epoch: string): void;
  /**
   * Loads the function library unless Redis holds it already: call on every (re)connect
   * of the command connection (bridge.ts's `commands`). Rejects with LibraryConflict when
   * Redis holds another deployment's library with our prefix, or ours with other
   * settings (and then changes nothing).
   */
  load(): Promise<void>;
  /** herald_publish for each item, in order (one pipeline); `json`: the payload is JSON (checked by the caller). */
  publish(items: readonly { topic: string; payload: string; json?: boolean }[]): Promise<Position[]>;
  /** What a client (or this gateway) missed on each topic since its point. */
  since(epoch: string, points: ReadonlyMap<string, ResumePoint>, nowMs: number): Promise<Map<string, Recovery>>;
  /**
   * A page of `topic`'s history for a `history` request, oldest first. Entries past
   * the age bound (HERALD_HISTORY_TTL_S) are left out, as a resume leaves them out.
   * One pipeline: the epoch and at most one range read of at most `limit` entries.
   */
  page(topic: string, request: PageRequest, nowMs: number): Promise<HistoryPage>;
}

export function createHistory(redis: Redis, names: Names, settings: LibrarySettings, cfg: HistoryConfig): History {
  const library = functionLibrary(settings);
  const publishFn = `${names.library}_publish`;
  const epochFn = `${names.library}_epoch`;
  let epoch: string | undefined;

  async function loaded(): Promise<LoadedLibrary[]> {
    const reply = (await redis.call('FUNCTION', 'LIST', 'WITHCODE')) as unknown[][];
    return reply.map((lib) => ({ name: String(field(lib, 'library_name')), code: String(field(lib, 'library_code')) }));
  }

  return {
    get epoch() {
      return epoch;
    },
    noteEpoch(e) {
      epoch = e;
    },

    async load() {
      for (let attempt = 0; ; attempt++) {
        const plan = planLibrary(settings, await loaded());
        if (plan.action === 'refuse') throw new LibraryConflict(plan.problems.join('; '));
        if (plan.action === 'load') {
          try {
            await redis.call('FUNCTION', 'LOAD', ...(plan.replace ? ['REPLACE'] : []), library);
          } catch (err) {
            // Another gateway loaded one between our LIST and LOAD: look again, once.
            if (attempt === 0 && /already exists/i.test((err as Error).message)) continue;
            throw err;
          }
        }
        break;
      }
      epoch = (await redis.call('FCALL', epochFn, '0')) as string;
    },

    async publish(items) {
      const p = redis.pipeline();
      for (const { topic, payload, json } of items) {
        if (json === undefined) p.call('FCALL', publishFn, '1', topic, payload);
        else p.call('FCALL', publishFn, '1', topic, payload, json ? 'j' : 't');
      }
      const results = await p.exec();
      if (results === null) throw new Error('pipeline aborted');
      return results.map(([err, value]) => {
        if (err !== null) throw err;
        const [offset, id, e] = value as [string, string, string];
        epoch = e;
        return { offset, id, epoch: e, ts: offsetMs(offset) };
      });
    },

    async since(clientEpoch, points, nowMs) {
      const topics = [...points.keys()];
      const p = redis.pipeline();
      p.get(names.epoch);
      for (const topic of topics) {
        const key = names.history(topic);
        const point = points.get(topic) as ResumePoint;
        // Trimming removes the oldest entries. From an offset: if that entry is still
        // there, nothing after it was trimmed (so the range starts at it, inclusive).
        // From a time: complete if nothing was ever trimmed, or the oldest entry left
        // is older than the time (XINFO STREAM, O(1)).
        if ('offset' in point) p.exists(key);
        else p.call('XINFO', 'STREAM', key);
        // One XRANGE per topic, bounded: one entry more than may be replayed says "too many".
        const start = 'offset' in point ? point.offset : firstOffsetAt(point.since);
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
        const startMs = 'offset' in point ? offsetMs(point.offset) : point.since;
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
          const trimmed = Number(field(stream, 'entries-added')) > Number(field(stream, 'length'));
          const oldest = (field(stream, 'first-entry') as [string] | null)?.[0];
          if (trimmed && (oldest === undefined || isAtOrAfter(oldest, point.since))) {
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

    async page(topic, { limit, before, after }, nowMs) {
      const key = names.history(topic);
      // The first entry young enough to be replayed (since() counts one at or before
      // nowMs - ttlMs as trimmed): no read starts before it.
      const floor = firstOffsetAt(nowMs - cfg.ttlMs + 1);
      const p = redis.pipeline();
      // The epoch through the library, not a GET: a dataset without one yet gets it here.
      p.call('FCALL', epochFn, '0');
      let backwards = false;
      if (after !== undefined) {
        p.xrange(key, compareOffsets(after, floor) >= 0 ? `(${after}` : floor, '+', 'COUNT', limit);
      } else if (before === undefined || compareOffsets(before, floor) > 0) {
        // The newest first, so COUNT keeps the ones nearest the end; turned round below.
        p.xrevrange(key, before === undefined ? '+' : `(${before}`, floor, 'COUNT', limit);
        backwards = true;
      } // else nothing young enough is before `before` (and `(0-0` would be a Redis error): no read.
      const results = await p.exec();
      if (results === null) throw new Error('pipeline aborted');
      const [epochErr, current] = results[0] as [Error | null, string];
      if (epochErr !== null) throw epochErr;
      epoch = current;
      const [rangeErr, range] = (results[1] ?? [null, []]) as [Error | null, Array<[string, string[]]> | null];
      if (rangeErr !== null) throw rangeErr;
      const entries = (range ?? []).map(([offset, fields]) => entry(topic, offset, fields));
      if (backwards) entries.reverse();
      return { epoch: current, entries };
    },
  };
}

/** A field of a flat [name, value, ...] reply (XINFO STREAM, FUNCTION LIST). */
function field(info: unknown[], name: string): unknown {
  for (let i = 0; i + 1 < info.length; i += 2) if (info[i] === name) return info[i + 1];
  return undefined;
}

function entry(topic: string, offset: string, fields: string[]): HistoryEntry {
  let payload = '';
  let id = '';
  let kind: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'd') payload = fields[i + 1] as string;
    else if (fields[i] === 'i') id = fields[i + 1] as string;
    else if (fields[i] === 'k') kind = fields[i + 1];
  }
  // The same derivation as the library's, for entries whose payload had no id.
  if (id === '') id = `${offset}@${sha1Prefix(topic)}`;
  return { id, offset, ts: offsetMs(offset), payload, json: isJsonKind(kind) };
}

function sha1Prefix(s: string): string {
  return createHash('sha1').update(s).digest('hex').slice(0, 8);
}

// Fuzzing client frames over real connections (the hardening issue): more than
// 100,000 generated and mutated frames (valid, near-valid, wrong types, duplicate
// keys, deep nesting, huge numbers, control characters, lone surrogates, invalid
// UTF-8, non-objects, fragmented, binary, oversized) against one gateway in embedded
// mode. An oracle written from docs/PROTOCOL.md, not from src/, predicts each frame's
// outcome: the reply (type, code, echoed id, fields), no reply, or the close code.
//
// - Frames that keep the connection open are pipelined, up to 2,100 on one connection,
//   followed by a ping barrier. Embedded mode answers every frame synchronously and uWS
//   keeps order, so the replies must be exactly the predicted sequence, in order.
// - Frames that close the connection (binary, not JSON, too big, invalid UTF-8) go on
//   a fresh connection, after up to 3 ordinary frames whose replies must come first.
// - `auth` frames (re-authentication) are answered once the token is verified, so
//   possibly after later frames: each gets its own connection, then a ping.
// - `resume` frames are in the pipelined batches too: embedded mode has no history,
//   so a valid one is answered at once, every topic `recovered: false`. A second
//   gateway in Redis mode (history on, a private redis-server, a few notifications
//   recorded) gets resume frames alone on a connection, then a ping: replays, if any,
//   are for topics answered `recovered: true`, and only held topics of the current
//   epoch can be.
// The rate limit is raised to 1,000 frames per connection per hour, so the schema and
// dispatch, not the limit, get most frames; one batch in ten is long enough to be
// rate limited and closed with 1008, which the oracle predicts too.

import fc from 'fast-check';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { isAfter } from '../../dist/offsets.js';
import {
  checkAlive,
  checkNoLeak,
  codePoints,
  deathOf,
  type FailureGate,
  fuzzCheck,
  fuzzSeed,
  hostileString,
  INVALID_UTF8,
  isValidUtf8,
  type J,
  jsonPad,
  lanes,
  maybe,
  memoryReport,
  mutateBytes,
  mutateText,
  nested,
  numberLiteral,
  Obj,
  Raw,
  render,
  textMutation,
} from '../support/fuzz.js';
import { baseEnv, startGateway } from '../support/gateway.js';
import { INSPECTOR_ENV, type Memory, memoryAfterGc } from '../support/inspector.js';
import { waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const SEED = fuzzSeed(20_261_123);
const MAX_PAYLOAD = 65_536; // so that 10,000 nested arrays (20 KB) reach the parser
const HARD_CAP = Math.max(4 * MAX_PAYLOAD, 64 * 1024); // README: uWS hard frame cap
const RATE = 1000;
const WINDOW_S = 3600; // longer than the file: a window never resets mid-batch
const MAX_TOPICS = 8;
const MIN_FRAMES = 100_000;

const gw = await startGateway(
  baseEnv({
    ...INSPECTOR_ENV, // memory is measured after a forced GC (support/inspector.ts)
    HERALD_LOG_LEVEL: 'info',
    HERALD_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD),
    HERALD_RATE_LIMIT_MESSAGES: String(RATE),
    HERALD_RATE_LIMIT_WINDOW_S: String(WINDOW_S),
    HERALD_MAX_TOPICS_PER_CONNECTION: String(MAX_TOPICS),
  }),
);
t.teardown(() => gw.stop());

// The Redis-mode gateway for `resume` (history on, the defaults otherwise).
const redis = await startRedis();
t.teardown(() => redis.close());
const PUBLISH_KEY = 'fuzz-frames-publish-key-0123456789';
const rgw = await startGateway(
  baseEnv({
    HERALD_LOG_LEVEL: 'info',
    HERALD_REDIS_URL: redis.url,
    HERALD_PUBLISH_KEY: PUBLISH_KEY,
    HERALD_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD),
  }),
);
t.teardown(() => rgw.stop());

const SUB = 'fuzzer';
const ROLES = ['ops', 'team.a'];
const GRANTS = ['org:rio', 'feed:*', 'a*'];
const TOKEN = await token({ sub: SUB, roles: ROLES, topics: GRANTS });
const OTHER_TOKEN = await token({ sub: 'someone-else' });
const SAME_USER_TOKEN = await token({ sub: SUB, roles: ['ops'] });
const EXPIRED_TOKEN = await token({ sub: SUB }, { expiresIn: -60 });

// ---------------------------------------------------------------------------------
// The oracle (docs/PROTOCOL.md: Frames, Client → server, Request ids, Limits and closes)

/** What goes on the wire: one message, possibly split into fragments, and how it classifies. */
interface Wire {
  readonly bytes: Buffer;
  readonly binary: boolean;
  readonly fragments: number;
  /** The close it causes before the frame logic, if any (closeOf). */
  readonly close: { code: number; reason: string } | undefined;
  /** The parsed JSON, when it does not close. */
  readonly value: unknown;
}

function wire(bytes: Buffer, binary: boolean, fragments = 1): Wire {
  const close = closeOf(bytes, binary);
  if (close !== undefined) return { bytes, binary, fragments, close, value: undefined };
  try {
    return { bytes, binary, fragments, close, value: JSON.parse(bytes.toString('utf8')) as unknown };
  } catch {
    return { bytes, binary, fragments, close: { code: 1003, reason: 'invalid_json' }, value: undefined };
  }
}

type RequestId = string | number;

/** An expected reply: exact fields, plus fields whose value is checked for shape only. */
interface Want {
  fields: Record<string, unknown>;
  ts?: true;
  message?: true;
  retryAfterMs?: true;
}

type Outcome =
  | { kind: 'reply'; want: Want }
  | { kind: 'none' }
  | { kind: 'close'; code: number; reason: string }
  /** A valid `auth` frame: its answer depends on the token (authMismatch). */
  | { kind: 'auth'; token: string; id: RequestId | undefined };

/** Properties each frame type requires besides `type` (`id` is optional on all). */
const FRAME_PROPS: ReadonlyMap<string, readonly string[]> = new Map([
  ['ping', []],
  ['subscribe', ['topic']],
  ['unsubscribe', ['topic']],
  ['ack', ['notificationId']],
  ['mark_read', ['notificationId']],
  ['auth', ['token']],
  ['resume', ['epoch', 'topics']],
]);
const OFFSET_RE = /^[0-9]{1,15}-[0-9]{1,15}$/;
const MAX_RESUME_TOPICS = 256;
const TOPIC_RE = /^[A-Za-z0-9:_.@-]{1,128}$/;
const BASE_TOPICS = [`user:${SUB}`, ...ROLES.map((r) => `role:${r}`), 'system'];

const own = (o: Record<string, unknown>, k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined);
const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The close a message causes before it reaches the frame logic, in the documented
 * order: invalid UTF-8 in a text frame (uWS, before anything: 1006), above the uWS hard
 * cap (1006), above HERALD_MAX_PAYLOAD_BYTES (1009), binary (1003); then wire() parses:
 * not JSON closes with 1003 too.
 */
function closeOf(bytes: Buffer, binary: boolean): { code: number; reason: string } | undefined {
  if (!binary && !isValidUtf8(bytes)) return { code: 1006, reason: '' };
  if (bytes.length > HARD_CAP) return { code: 1006, reason: '' };
  if (bytes.length > MAX_PAYLOAD) return { code: 1009, reason: 'message_too_big' };
  if (binary) return { code: 1003, reason: 'binary_not_supported' };
  return undefined;
}

/** An `auth` frame (see the file comment): kept off the pipelined connections. */
const isAuthFrame = (w: Wire): boolean => isPlainObject(w.value) && own(w.value, 'type') === 'auth';

const keepsOpen = (w: Wire): boolean => w.close === undefined && !isAuthFrame(w);

/** "a string of 1-64 characters or an integer 0 to 2^53−1"; characters are code points, as JSON Schema counts them. */
function usableId(o: Record<string, unknown>): RequestId | undefined {
  const id = own(o, 'id');
  if (typeof id === 'string') return codePoints(id) >= 1 && codePoints(id) <= 64 ? id : undefined;
  if (typeof id === 'number') return Number.isSafeInteger(id) && id >= 0 ? id : undefined;
  return undefined;
}

const withId = (id: RequestId | undefined): Record<string, unknown> => (id === undefined ? {} : { id });

function error(code: string, id: RequestId | undefined, rateLimited = false): Outcome {
  return {
    kind: 'reply',
    want: { fields: { type: 'error', code, ...withId(id) }, message: true, ...(rateLimited ? { retryAfterMs: true as const } : {}) },
  };
}

/** Whether `o` is a valid frame of a known type: exactly the listed properties, each valid. */
function isValidFrame(o: Record<string, unknown>, props: readonly string[]): boolean {
  for (const k of Object.keys(o)) if (k !== 'type' && k !== 'id' && !props.includes(k)) return false;
  for (const p of props) if (!Object.hasOwn(o, p)) return false;
  if (Object.hasOwn(o, 'id') && usableId(o) === undefined) return false;
  for (const p of props) {
    const v = o[p];
    if (p === 'topics') {
      if (!isResumeTopics(v)) return false;
      continue;
    }
    if (typeof v !== 'string') return false;
    if (p === 'epoch' && (codePoints(v) < 1 || codePoints(v) > 64)) return false;
    if (p === 'topic' && !TOPIC_RE.test(v)) return false;
    if (p === 'notificationId' && (codePoints(v) < 1 || codePoints(v) > 128)) return false;
    if (p === 'token' && (codePoints(v) < 1 || codePoints(v) > 65_536)) return false;
  }
  return true;
}

/**
 * `resume` topics (PROTOCOL.md § Client → server frames): an object of at most 256
 * entries, each key a topic and each value exactly `{"offset": "<digits>-<digits>"}`
 * (1-15 digits each side) or `{"since": <integer 0 to 2^53−1>}`.
 */
function isResumeTopics(v: unknown): boolean {
  if (!isPlainObject(v)) return false;
  const keys = Object.keys(v);
  if (keys.length > MAX_RESUME_TOPICS) return false;
  return keys.every((k) => {
    const point = v[k];
    if (!TOPIC_RE.test(k) || !isPlainObject(point)) return false;
    const [only, ...more] = Object.keys(point);
    if (more.length > 0) return false;
    if (only === 'offset') return typeof point['offset'] === 'string' && OFFSET_RE.test(point['offset']);
    if (only === 'since') {
      const since = point['since'];
      return typeof since === 'number' && Number.isInteger(since) && since >= 0 && since <= Number.MAX_SAFE_INTEGER;
    }
    return false;
  });
}

/** The `topics` of a `resumed` answer in which no topic was recovered (history off). */
function noneRecovered(topics: Record<string, unknown>): Record<string, unknown> {
  const out = Object.create(null) as Record<string, unknown>;
  for (const k of Object.keys(topics)) out[k] = { recovered: false };
  return out;
}

/** One connection's state as the protocol describes it: its frame count and its topics. */
class ConnectionOracle {
  private frames = 0;
  private readonly held = new Set(BASE_TOPICS);
  private added = 0;

  step(w: Wire): Outcome {
    if (w.close !== undefined) return { kind: 'close', ...w.close };
    const v = w.value;
    // Every frame from the rate limit on counts, valid or not.
    this.frames++;
    if (this.frames > 2 * RATE) return { kind: 'close', code: 1008, reason: 'rate_limited' };
    const id = isPlainObject(v) ? usableId(v) : undefined;
    if (this.frames > RATE) return error('rate_limited', id, true);
    if (!isPlainObject(v)) return error('invalid_message', undefined);
    const type = own(v, 'type');
    if (typeof type !== 'string') return error('invalid_message', id);
    const props = FRAME_PROPS.get(type);
    if (props === undefined) return error('unknown_type', id);
    if (!isValidFrame(v, props)) return error('invalid_message', id);
    switch (type) {
      case 'ping':
        return { kind: 'reply', want: { fields: { type: 'pong', ...withId(id) }, ts: true } };
      case 'subscribe':
        return this.subscribe(v['topic'] as string, id);
      case 'unsubscribe': {
        const topic = v['topic'] as string;
        if (this.held.delete(topic) && !BASE_TOPICS.includes(topic)) this.added--;
        return { kind: 'reply', want: { fields: { type: 'unsubscribed', topic, ...withId(id) } } };
      }
      case 'auth':
        return { kind: 'auth', token: v['token'] as string, id };
      case 'resume':
        // Embedded mode: history off, every topic unrecovered, answered at once.
        return {
          kind: 'reply',
          want: { fields: { type: 'resumed', topics: noneRecovered(v['topics'] as Record<string, unknown>), ...withId(id) } },
        };
      default: {
        // ack / mark_read, embedded mode: acknowledged (when they carry an id) and discarded.
        if (id === undefined) return { kind: 'none' };
        const reply = type === 'ack' ? 'acked' : 'marked_read';
        return { kind: 'reply', want: { fields: { type: reply, notificationId: v['notificationId'], id } } };
      }
    }
  }

  private subscribe(topic: string, id: RequestId | undefined): Outcome {
    const base = BASE_TOPICS.includes(topic);
    if (!base) {
      const granted = GRANTS.some((g) => (g.endsWith('*') ? topic.startsWith(g.slice(0, -1)) : topic === g));
      if (!granted) return error('forbidden', id);
      if (!this.held.has(topic)) {
        if (this.added >= MAX_TOPICS) return error('too_many_topics', id);
        this.added++;
      }
    }
    this.held.add(topic);
    return { kind: 'reply', want: { fields: { type: 'subscribed', topic, ...withId(id) } } };
  }
}

/** JSON text with every object's keys sorted. */
function canonical(v: unknown): string | undefined {
  if (!isPlainObject(v)) return Array.isArray(v) ? `[${v.map((x) => canonical(x) ?? 'null').join(',')}]` : JSON.stringify(v);
  return `{${Object.keys(v)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
    .join(',')}}`;
}

/** Why `got` is not `want`, or undefined when it is. */
function mismatch(want: Want, got: Record<string, unknown>, since: number): string | undefined {
  const keys = [
    ...Object.keys(want.fields),
    ...(want.ts ? ['ts'] : []),
    ...(want.message ? ['message'] : []),
    ...(want.retryAfterMs ? ['retryAfterMs'] : []),
  ];
  const gotKeys = Object.keys(got);
  if (gotKeys.length !== keys.length || !keys.every((k) => Object.hasOwn(got, k))) {
    return `properties ${JSON.stringify(gotKeys)}, expected ${JSON.stringify(keys)}`;
  }
  for (const [k, v] of Object.entries(want.fields)) {
    // Compared as JSON: the reply is JSON, so -0 arrives as 0 and 1.0 as 1. Key order
    // within an object (resumed's topics) carries no meaning.
    if (canonical(v) !== canonical(got[k]))
      return `${k} is ${JSON.stringify(got[k])?.slice(0, 200)}, expected ${JSON.stringify(v)?.slice(0, 200)}`;
  }
  const ts = got['ts'];
  if (want.ts && !(Number.isInteger(ts) && (ts as number) >= since - 1000 && (ts as number) <= Date.now() + 1000))
    return `ts ${String(ts)} is not the server time in ms`;
  const message = got['message'];
  if (want.message && !(typeof message === 'string' && message.length >= 1 && message.length <= 400))
    return `message ${JSON.stringify(message)?.slice(0, 200)} is not 1-400 characters`;
  const retry = got['retryAfterMs'];
  if (want.retryAfterMs && !(Number.isInteger(retry) && (retry as number) >= 1 && (retry as number) <= WINDOW_S * 1000))
    return `retryAfterMs ${String(retry)} is not within the window`;
  return undefined;
}

// ---------------------------------------------------------------------------------
// Generators

/** Values of the wrong type for any field, huge numbers and deep nesting included. */
const oddValue: fc.Arbitrary<J> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }).map((v) => v as J),
  numberLiteral,
  hostileString({ maxLength: 20 }),
  fc.constantFrom<J>(null, true, false, [], new Obj([]), '', ' ', [1, 2], new Obj([['a', 1]])),
  fc.integer({ min: 1, max: 3000 }).map((d) => new Raw(nested(d, 'array'))),
);

const idValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 3, arbitrary: hostileString({ minLength: 1, maxLength: 64 }) },
  { weight: 1, arbitrary: hostileString({ minLength: 1, maxLength: 64, long: true }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 63, maxLength: 66 }) },
  { weight: 1, arbitrary: fc.constantFrom('\u{1F600}'.repeat(64), '\u{1F600}'.repeat(65), 'é'.repeat(64), '') },
  { weight: 3, arbitrary: fc.maxSafeNat() },
  { weight: 1, arbitrary: fc.constantFrom(0, Number.MAX_SAFE_INTEGER, -1, 1.5, Number.MAX_SAFE_INTEGER + 1) },
  { weight: 2, arbitrary: numberLiteral },
  { weight: 2, arbitrary: oddValue },
);

const topicValue: fc.Arbitrary<J> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      ...BASE_TOPICS,
      'org:rio',
      'feed:x',
      'feed:',
      'a',
      'org:other',
      'user:other',
      'role:admin',
      'feed',
      'b',
      '*',
      'feed:*',
      'x'.repeat(128),
      'a'.repeat(128),
      'a'.repeat(129),
      '',
      ' ',
      'a b',
      'usér',
      'a\u0000',
      'a\n',
      'org:rio ',
      ' org:rio',
    ),
  },
  // Granted by `a*` and `feed:*`: enough distinct ones to pass HERALD_MAX_TOPICS_PER_CONNECTION.
  { weight: 3, arbitrary: fc.stringMatching(/^(a|feed:)[A-Za-z0-9:_.@-]{0,12}$/) },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9:_.@-]{1,128}$/) },
  { weight: 1, arbitrary: hostileString({ maxLength: 10 }) },
  { weight: 1, arbitrary: oddValue },
);

const notificationIdValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 3, arbitrary: hostileString({ minLength: 1, maxLength: 128 }) },
  { weight: 1, arbitrary: hostileString({ minLength: 1, maxLength: 128, long: true }) },
  { weight: 1, arbitrary: fc.constantFrom('', 'n'.repeat(128), 'n'.repeat(129), '\u{1F600}'.repeat(128), '\u{1F600}'.repeat(129)) },
  { weight: 1, arbitrary: oddValue },
);

const typeValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom('ping', 'subscribe', 'unsubscribe', 'ack', 'mark_read') },
  { weight: 8, arbitrary: fc.constant('resume') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'PING',
      'Ping',
      ' ping',
      'ping ',
      'ping\u0000',
      'notification',
      'connected',
      'pong',
      'error',
      'subscribed',
      'constructor',
      '__proto__',
      'toString',
      'hasOwnProperty',
      'valueOf',
      '',
      'p'.repeat(10_000),
    ),
  },
  { weight: 1, arbitrary: hostileString({ maxLength: 40 }) },
  { weight: 1, arbitrary: oddValue },
);

const extraKey = fc.oneof(
  fc.constantFrom('extra', '__proto__', 'constructor', 'prototype', 'ID', 'Type', 'token', 'id ', ''),
  hostileString({ maxLength: 10 }),
);

const epochValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[0-9a-f]{1,16}$/) },
  { weight: 2, arbitrary: hostileString({ minLength: 1, maxLength: 64 }) },
  { weight: 1, arbitrary: fc.constantFrom('', 'e'.repeat(64), 'e'.repeat(65), '\u{1F600}'.repeat(64), '\u{1F600}'.repeat(65)) },
  { weight: 1, arbitrary: oddValue },
);

const offsetValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.stringMatching(/^[0-9]{1,15}$/), fc.stringMatching(/^[0-9]{1,15}$/)).map(([a, b]) => `${a}-${b}`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '0-0',
      '999999999999999-999999999999999',
      '1000000000000000-0',
      '0-1000000000000000',
      '1-',
      '-1',
      '1',
      '1-0 ',
      ' 1-0',
      '1-0\n',
      '1_0',
      '1--0',
      '1-0-0',
      '\u0661-\u0660',
      '0x1-0',
      '+1-0',
      '1e3-0',
      '',
    ),
  },
  { weight: 1, arbitrary: hostileString({ maxLength: 20 }) },
  { weight: 1, arbitrary: oddValue },
);

const sinceValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 3, arbitrary: fc.maxSafeNat() },
  {
    weight: 1,
    arbitrary: fc.constantFrom<J>(0, Date.now(), Date.now() + 3_600_000, -1, 1.5, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1),
  },
  { weight: 2, arbitrary: numberLiteral },
  { weight: 1, arbitrary: oddValue },
);

/** A resume point: mostly `{offset}` or `{since}`; near-valid by having both, neither, an extra key or the wrong type. */
const pointValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 4, arbitrary: offsetValue.map((o) => new Obj([['offset', o]])) },
  { weight: 4, arbitrary: sinceValue.map((v) => new Obj([['since', v]])) },
  {
    weight: 1,
    arbitrary: fc.tuple(offsetValue, sinceValue).map(
      ([o, v]) =>
        new Obj([
          ['offset', o],
          ['since', v],
        ]),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom('offset', 'since'), oddValue, extraKey, oddValue).map(
      ([k, v, x, y]) =>
        new Obj([
          [k, v],
          [x, y],
        ]),
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom<J>(new Obj([]), null, [], 'offset', 1, new Obj([['Offset', '1-0']])) },
  { weight: 1, arbitrary: oddValue },
);

const resumeKey: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...BASE_TOPICS, 'org:rio', 'user:other', 'feed:x') },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9:_.@-]{1,128}$/) },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'toString', '0', '1', '4294967295', '', 'a b', 'x'.repeat(129)) },
  { weight: 1, arbitrary: hostileString({ maxLength: 10 }) },
);

/** `resume` topics: a few entries (a key may repeat: JSON.parse keeps the last), or around the 256 limit, or not an object. */
const topicsValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 8, arbitrary: fc.array(fc.tuple(resumeKey, pointValue), { maxLength: 8 }).map((e) => new Obj(e)) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 255, max: 258 })
      .map((n) => new Obj(Array.from({ length: n }, (_, i): [string, J] => [`t${i}`, new Obj([['since', i]])]))),
  },
  { weight: 1, arbitrary: oddValue },
);

/**
 * A frame object, mostly valid; near-valid by a missing, stray, extra, repeated or
 * mistyped property. Only the properties it will hold are generated (generation is
 * most of this test's own CPU time).
 */
const frameObject: fc.Arbitrary<J> = fc.tuple(typeValue, fc.nat(99)).chain(([type, dice]) => {
  const required = typeof type === 'string' ? (FRAME_PROPS.get(type) ?? []) : [];
  // dice below 4 leaves the required property out; 5 and 6 add a stray one.
  const topic = required.includes('topic') ? dice >= 4 : dice === 5;
  const notificationId = required.includes('notificationId') ? dice >= 4 : dice === 6;
  const epoch = required.includes('epoch') ? dice >= 4 : dice === 7;
  const topics = required.includes('topics') ? dice >= 4 : dice === 8;
  return fc
    .record({
      id: maybe(idValue, 0.7),
      topic: topic ? topicValue : fc.constant(undefined),
      notificationId: notificationId ? notificationIdValue : fc.constant(undefined),
      epoch: epoch ? epochValue : fc.constant(undefined),
      topics: topics ? topicsValue : fc.constant(undefined),
      extra: maybe(fc.tuple(extraKey, oddValue), 0.04),
      repeat: maybe(fc.tuple(fc.constantFrom('type', 'id', 'topic', 'notificationId', 'epoch', 'topics'), oddValue), 0.02),
      rotate: fc.nat(5),
    })
    .map((r) => {
      const entries: Array<[string, J]> = [['type', type]];
      if (r.id !== undefined) entries.push(['id', r.id]);
      if (r.topic !== undefined) entries.push(['topic', r.topic]);
      if (r.notificationId !== undefined) entries.push(['notificationId', r.notificationId]);
      if (r.epoch !== undefined) entries.push(['epoch', r.epoch]);
      if (r.topics !== undefined) entries.push(['topics', r.topics]);
      if (r.extra !== undefined) entries.push(r.extra);
      const k = r.rotate % entries.length;
      const rotated = [...entries.slice(k), ...entries.slice(0, k)];
      if (r.repeat !== undefined) rotated.push(r.repeat);
      return new Obj(rotated);
    });
});

/** Valid JSON that is not an object: arrays, numbers, strings, null, booleans. */
const nonObject: fc.Arbitrary<J> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => v as J),
  numberLiteral,
  hostileString({ maxLength: 30 }),
  fc.constantFrom<J>(null, true, false, [], [new Obj([['type', 'ping']])], 'ping', '{"type":"ping"}'),
);

/** 1-100 or 1,000-30,000 levels of nesting, alone or as a field of a frame; always within the payload cap. */
const deepFrame: fc.Arbitrary<J> = fc
  .record({
    kind: fc.constantFrom('array' as const, 'object' as const, 'mixed' as const),
    depth: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1000, max: 30_000 })),
    where: fc.constantFrom('top', 'type', 'id', 'topic', 'extra'),
  })
  .map(({ kind, depth, where }) => {
    const perLevel = kind === 'array' ? 2 : kind === 'object' ? 6 : 7;
    const text = nested(Math.min(depth, Math.floor((MAX_PAYLOAD - 100) / perLevel)), kind);
    const deep = new Raw(text);
    switch (where) {
      case 'top':
        return deep;
      case 'type':
        return new Obj([
          ['type', deep],
          ['id', 'deep'],
        ]);
      case 'id':
        return new Obj([
          ['type', 'ping'],
          ['id', deep],
        ]);
      case 'topic':
        return new Obj([
          ['type', 'subscribe'],
          ['topic', deep],
          ['id', 7],
        ]);
      default:
        return new Obj([
          ['type', 'ping'],
          ['id', 'deep'],
          ['x', deep],
        ]);
    }
  });

const fragments = fc.oneof({ weight: 9, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 4 }) });

const textWire = (j: fc.Arbitrary<J>): fc.Arbitrary<Wire> =>
  fc.tuple(j, jsonPad, fragments).map(([v, pad, n]) => wire(Buffer.from(render(v, pad)), false, n));

/** A valid ping padded with JSON whitespace to exactly `size` bytes. */
function pingOfSize(size: number, id: string): Buffer {
  const head = `{"type":"ping","id":"${id}"`;
  return Buffer.from(`${head}${' '.repeat(Math.max(0, size - head.length - 1))}}`);
}

const mutatedText: fc.Arbitrary<Wire> = fc
  .tuple(fc.oneof(frameObject, nonObject), jsonPad, fc.array(textMutation, { minLength: 1, maxLength: 3 }), fragments)
  .map(([v, pad, muts, n]) => wire(Buffer.from(mutateText(render(v, pad), muts)), false, n));

/** Frames that leave the connection open. */
const openWire: fc.Arbitrary<Wire> = fc
  .oneof(
    { weight: 160, arbitrary: textWire(frameObject) },
    { weight: 10, arbitrary: textWire(nonObject) },
    { weight: 1, arbitrary: textWire(deepFrame) },
    { weight: 16, arbitrary: mutatedText },
    { weight: 1, arbitrary: fc.integer({ min: MAX_PAYLOAD - 64, max: MAX_PAYLOAD }).map((n) => wire(pingOfSize(n, 'near-cap'), false)) },
  )
  .filter(keepsOpen);

/** Frames that close the connection (checked by the oracle, so none slips into a batch). */
const closingWire: fc.Arbitrary<Wire> = fc
  .oneof(
    { weight: 6, arbitrary: mutatedText },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(
          '',
          ' ',
          '{',
          '}',
          'ping',
          '{"type":"ping"',
          'NaN',
          'undefined',
          "{'type':'ping'}",
          '{"type":"ping",}',
          '[1,]',
          '01',
          '"\u0000"',
          '\ufeff{"type":"ping"}',
          '{"type":"ping"} trailing',
          '{"type":"ping"}{"type":"ping"}',
        )
        .map((s) => wire(Buffer.from(s), false)),
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(
          fc.oneof(
            fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
            textWire(frameObject).map((w) => w.bytes),
          ),
          fragments,
        )
        .map(([bytes, n]) => wire(bytes, true, n)),
    },
    {
      weight: 4,
      arbitrary: fc
        .tuple(
          textWire(fc.oneof(frameObject, nonObject)),
          fc.array(fc.record({ at: fc.nat(), bytes: fc.constantFrom(...INVALID_UTF8) }), { minLength: 1, maxLength: 3 }),
        )
        .map(([w, muts]) => wire(mutateBytes(w.bytes, muts), false, w.fragments)),
    },
    {
      weight: 3,
      arbitrary: fc
        .record({
          size: fc.oneof(
            fc.integer({ min: MAX_PAYLOAD + 1, max: MAX_PAYLOAD + 16 }),
            fc.integer({ min: MAX_PAYLOAD + 1, max: HARD_CAP }),
            fc.integer({ min: HARD_CAP - 8, max: HARD_CAP + 8 }),
            fc.integer({ min: HARD_CAP + 1, max: HARD_CAP + 200_000 }),
          ),
          kind: fc.constantFrom('json', 'garbage', 'binary', 'invalid-utf8'),
          n: fragments,
        })
        .map(({ size, kind, n }) => {
          const bytes = kind === 'json' ? pingOfSize(size, 'big') : Buffer.alloc(size, kind === 'binary' ? 0 : 0x78);
          if (kind === 'invalid-utf8') bytes[Math.floor(size / 2)] = 0xff;
          return wire(bytes, kind === 'binary', n);
        }),
    },
  )
  .filter((w) => w.close !== undefined);

/**
 * What an `auth` frame's token leads to (PROTOCOL.md § authenticated, auth_failed):
 * the same user's token renews (its grants replace the old: a role it lacks is
 * revoked), another user's is subject_mismatch, and the upgrade's refusal reasons
 * apply otherwise. Tokens not listed are malformed, or too large past
 * HERALD_MAX_TOKEN_BYTES (8192).
 */
const AUTH_FATES: ReadonlyMap<string, { reason: string } | { topics: string[]; revoked: string[] }> = new Map([
  [TOKEN, { topics: BASE_TOPICS, revoked: [] }],
  [SAME_USER_TOKEN, { topics: [`user:${SUB}`, 'role:ops', 'system'], revoked: ['role:team.a'] }],
  [OTHER_TOKEN, { reason: 'subject_mismatch' }],
  [EXPIRED_TOKEN, { reason: 'token_expired' }],
  // A signature one character longer or shorter still decodes: it just does not verify.
  [`${TOKEN}x`, { reason: 'invalid_signature' }],
  [TOKEN.slice(0, -1), { reason: 'invalid_signature' }],
]);

const tokenValue: fc.Arbitrary<J> = fc.oneof(
  fc.constantFrom<J>(
    TOKEN,
    SAME_USER_TOKEN,
    OTHER_TOKEN,
    EXPIRED_TOKEN,
    '',
    'x',
    `${TOKEN}x`,
    TOKEN.slice(0, -1),
    'a.b.c',
    'x'.repeat(9000),
  ),
  hostileString({ maxLength: 40 }),
  oddValue,
);

/** `auth` frames, valid or not. */
const authWire: fc.Arbitrary<Wire> = textWire(
  fc.record({ id: maybe(idValue, 0.7), token: maybe(tokenValue, 0.9), extra: maybe(fc.tuple(extraKey, oddValue), 0.1) }).map((r) => {
    const entries: Array<[string, J]> = [['type', 'auth']];
    if (r.id !== undefined) entries.push(['id', r.id]);
    if (r.token !== undefined) entries.push(['token', r.token]);
    if (r.extra !== undefined) entries.push(r.extra);
    return new Obj(entries);
  }),
).filter((w) => w.close === undefined);

// ---------------------------------------------------------------------------------
// Connections

interface Conn {
  ws: WebSocket;
  /** Text of every frame after `connected`, in arrival order. */
  got: string[];
  closed: Promise<{ code: number; reason: string }>;
  opened: number;
  /** How the socket ended, for failure messages ('' while open). */
  ending(): string;
  /** Resolves when `got` holds at least n frames, or the socket closed. */
  until(n: number, ms: number): Promise<void>;
}

/**
 * A connection past its `connected` frame. This uWS build sometimes closes a socket it
 * has just upgraded after an await (uNetworking/uWebSockets#1928): a 1006 before or
 * within a moment of `connected`. Such a drop is retried, twice at most, and counted.
 */
async function open(url: string = gw.ws): Promise<Conn> {
  for (let attempt = 1; ; attempt++) {
    const c = await openOnce(url);
    if (typeof c !== 'string') return c;
    if (attempt === 3) throw new Error(c);
    counts.dropped++;
  }
}

async function openOnce(url: string): Promise<Conn | string> {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${TOKEN}` } });
  const got: string[] = [];
  const conn = { error: '', ending: '' };
  let opened = Date.now();
  ws.on('error', (err) => {
    conn.error = err.message; // a dropped socket (1006) may surface as ECONNRESET; 'close' follows
  });
  let isClosed = false;
  let wake: (() => void) | undefined;
  let onWelcome: ((text: string) => void) | undefined;
  const welcome = new Promise<string>((resolve, reject) => {
    onWelcome = resolve;
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
    ws.once('close', (code) =>
      code === 1006 ? onWelcome?.('dropped') : reject(new Error(`closed with ${code} before the connected frame`)),
    );
  });
  ws.on('message', (data: Buffer, isBinary) => {
    const text = isBinary ? `<binary ${data.length} bytes>` : data.toString();
    if (onWelcome !== undefined) {
      onWelcome(text);
      onWelcome = undefined;
      return;
    }
    got.push(text);
    wake?.();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => {
      isClosed = true;
      conn.ending = `closed ${code} ${JSON.stringify(reason.toString())} after ${Date.now() - opened} ms${conn.error === '' ? '' : ` (${conn.error})`}`;
      wake?.();
      resolve({ code, reason: reason.toString() });
    }),
  );
  const first = await within(welcome, 10_000, 'the connected frame');
  if (first === 'dropped') return 'closed with 1006 before the connected frame';
  // The drop follows the upgrade at once: a socket still open a moment later is past it.
  await orUndefined(closed, 5);
  if (isClosed && got.length === 0 && conn.ending.startsWith('closed 1006')) return `${conn.ending} (right after connected)`;
  if ((JSON.parse(first) as { type?: unknown }).type !== 'connected')
    throw new Error(`the first frame is not connected: ${first.slice(0, 200)}`);
  opened = Date.now();
  return {
    ws,
    got,
    closed,
    opened,
    ending: () => conn.ending,
    async until(n, ms) {
      const deadline = Date.now() + ms;
      while (got.length < n && !isClosed && Date.now() < deadline) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    },
  };
}

/** `p`, or undefined after `ms`. */
function orUndefined<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** `p`, or a rejection naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function send(ws: WebSocket, w: Wire): void {
  if (w.fragments <= 1) {
    ws.send(w.bytes, { binary: w.binary });
    return;
  }
  const size = Math.ceil(w.bytes.length / w.fragments);
  for (let i = 0; i < w.fragments; i++) {
    ws.send(w.bytes.subarray(i * size, (i + 1) * size), { binary: w.binary, fin: i === w.fragments - 1 });
  }
}

const show = (w: Wire): string => {
  const s = w.binary ? `<binary> ${w.bytes.subarray(0, 120).toString('hex')}` : JSON.stringify(w.bytes.subarray(0, 300).toString('utf8'));
  return `${s}${w.bytes.length > 300 ? ` … (${w.bytes.length} bytes)` : ''}${w.fragments > 1 ? ` in ${w.fragments} fragments` : ''}`;
};

async function closeAndWait(c: Conn): Promise<void> {
  if (c.ws.readyState === WebSocket.OPEN) c.ws.close(1000);
  await orUndefined(c.closed, 5000);
  c.ws.terminate();
}

const counts = {
  frames: 0,
  batches: 0,
  rateLimited: 0,
  closed1008: 0,
  closers: new Map<string, number>(),
  auth: 0,
  authReplies: new Map<string, number>(),
  /** `resumed` answers in the embedded-mode batches. */
  resumed: 0,
  /** Fresh sockets uWS dropped right after the upgrade (see open), retried. */
  dropped: 0,
  /** Redis-mode resume frames by outcome: invalid, or the `recovered` values of their topics; and notifications replayed. */
  redisResumes: new Map<string, number>(),
  replayed: 0,
};
const bump = (m: Map<string, number>, k: string): void => {
  m.set(k, (m.get(k) ?? 0) + 1);
};
const BARRIER: Wire = wire(Buffer.from('{"type":"ping","id":"barrier"}'), false);

/**
 * Sends `frames` and a barrier ping on one connection; the replies must be exactly the
 * oracle's, in order, then nothing else (or the predicted 1008 close, then nothing).
 */
async function pipelined(frames: readonly Wire[]): Promise<void> {
  const c = await open();
  try {
    const oracle = new ConnectionOracle();
    const wants: Array<{ want: Want; wire: Wire }> = [];
    let close: { code: number; reason: string } | undefined;
    for (const w of [...frames, BARRIER]) {
      const o = oracle.step(w);
      send(c.ws, w);
      counts.frames++;
      if (o.kind === 'close') {
        close = o;
        break;
      }
      if (o.kind === 'auth') throw new Error(`generator bug: ${show(w)} is an auth frame`);
      if (o.kind === 'reply') wants.push({ want: o.want, wire: w });
    }
    await c.until(wants.length, 15_000);
    if (close !== undefined) {
      const got = await orUndefined(c.closed, 10_000);
      if (got?.code !== close.code || got.reason !== close.reason)
        throw new Error(`expected close ${close.code} ${close.reason}, got ${JSON.stringify(got)}`);
      counts.closed1008++;
    }
    for (let i = 0; i < Math.max(wants.length, c.got.length); i++) {
      const w = wants[i];
      const text = c.got[i];
      if (w === undefined) throw new Error(`unexpected reply #${i}: ${text?.slice(0, 300)}`);
      if (text === undefined)
        throw new Error(
          `no reply #${i} (of ${wants.length}) to ${show(w.wire)}; expected ${JSON.stringify(w.want.fields).slice(0, 300)}; socket ${c.ending() || 'open'}`,
        );
      const why = mismatch(w.want, JSON.parse(text) as Record<string, unknown>, c.opened);
      if (why !== undefined) throw new Error(`reply #${i} to ${show(w.wire)}: ${why}\n  got ${text.slice(0, 400)}`);
      if (w.want.retryAfterMs) counts.rateLimited++;
      if (w.want.fields['type'] === 'resumed') counts.resumed++;
    }
  } finally {
    await closeAndWait(c);
  }
  counts.batches++;
}

/** `prefix` then a frame that closes: the prefix's replies, then exactly the predicted close. */
async function closing(prefix: readonly Wire[], closer: Wire): Promise<void> {
  const c = await open();
  try {
    const oracle = new ConnectionOracle();
    const wants: Array<{ want: Want; wire: Wire }> = [];
    for (const w of prefix) {
      const o = oracle.step(w);
      send(c.ws, w);
      counts.frames++;
      if (o.kind === 'reply') wants.push({ want: o.want, wire: w });
    }
    const o = oracle.step(closer);
    if (o.kind !== 'close') throw new Error(`generator bug: ${show(closer)} does not close`);
    send(c.ws, closer);
    counts.frames++;
    const got = await orUndefined(c.closed, 15_000);
    if (got?.code !== o.code || got.reason !== o.reason) {
      throw new Error(
        `${show(closer)}: expected close ${o.code} ${JSON.stringify(o.reason)}, got ${JSON.stringify(got)}; replies ${JSON.stringify(c.got).slice(0, 300)}`,
      );
    }
    // uWS drops the TCP connection for 1006, so replies still queued may be lost with it:
    // those may arrive in part (in order); Herald's own closes come after every reply.
    if (c.got.length > wants.length || (o.code !== 1006 && c.got.length !== wants.length)) {
      throw new Error(
        `before the close of ${show(closer)}: ${c.got.length} replies, expected ${wants.length}: ${JSON.stringify(c.got).slice(0, 300)}`,
      );
    }
    c.got.forEach((text, i) => {
      const w = wants[i] as { want: Want; wire: Wire };
      const why = mismatch(w.want, JSON.parse(text) as Record<string, unknown>, c.opened);
      if (why !== undefined) throw new Error(`reply #${i} to ${show(w.wire)}: ${why}`);
    });
    const key = `${o.code} ${o.reason}`;
    counts.closers.set(key, (counts.closers.get(key) ?? 0) + 1);
  } finally {
    await closeAndWait(c);
  }
}

/** Why `got` is not the answer to a valid `auth` frame carrying `token`, or undefined when it is. */
function authMismatch(token: string, id: RequestId | undefined, got: Record<string, unknown>, since: number): string | undefined {
  const fate = AUTH_FATES.get(token) ?? { reason: token.length > 8192 ? 'token_too_large' : 'malformed_token' };
  if ('reason' in fate) {
    return mismatch({ fields: { type: 'error', code: 'auth_failed', reason: fate.reason, ...withId(id) }, message: true }, got, since);
  }
  const keys = Object.keys(got).sort().join(',');
  const want = ['expiresAt', 'revoked', 'topics', 'type', ...(id !== undefined ? ['id'] : [])].sort().join(',');
  if (keys !== want) return `properties ${keys}, expected ${want}`;
  if (got['type'] !== 'authenticated') return `type ${String(got['type'])}, expected authenticated`;
  if (JSON.stringify(got['id']) !== JSON.stringify(id)) return `id ${JSON.stringify(got['id'])}, expected ${JSON.stringify(id)}`;
  const exp = got['expiresAt'];
  if (!(Number.isInteger(exp) && (exp as number) > Date.now() && (exp as number) < Date.now() + 2 * 3600_000))
    return `expiresAt ${String(exp)} is not the token's exp in ms`;
  const sameSet = (a: unknown, b: string[]): boolean => Array.isArray(a) && a.length === b.length && b.every((x) => a.includes(x));
  if (!sameSet(got['topics'], fate.topics)) return `topics ${JSON.stringify(got['topics'])}, expected ${JSON.stringify(fate.topics)}`;
  if (!sameSet(got['revoked'], fate.revoked)) return `revoked ${JSON.stringify(got['revoked'])}, expected ${JSON.stringify(fate.revoked)}`;
  return undefined;
}

/**
 * An `auth` frame, alone on a connection: the predicted reply (invalid_message and
 * the like for a malformed frame; authenticated or auth_failed with its reason for a
 * valid one), then a ping is still answered, and nothing else arrives.
 */
async function auth(w: Wire): Promise<void> {
  const c = await open();
  try {
    const o = new ConnectionOracle().step(w);
    send(c.ws, w);
    counts.frames++;
    await c.until(1, 10_000);
    const text = c.got[0];
    if (text === undefined) throw new Error(`no reply to ${show(w)}; socket ${c.ending() || 'open'}`);
    const reply = JSON.parse(text) as Record<string, unknown>;
    const why =
      o.kind === 'auth'
        ? authMismatch(o.token, o.id, reply, c.opened)
        : o.kind === 'reply'
          ? mismatch(o.want, reply, c.opened)
          : `generator bug: ${o.kind}`;
    if (why !== undefined) throw new Error(`reply to ${show(w)}: ${why}\n  got ${text.slice(0, 400)}`);
    send(c.ws, BARRIER);
    counts.frames++;
    await c.until(2, 10_000);
    const pong = JSON.parse(c.got[1] ?? '{}') as Record<string, unknown>;
    if (pong['type'] !== 'pong' || pong['id'] !== 'barrier' || c.got.length !== 2)
      throw new Error(`after ${show(w)}: ${JSON.stringify(c.got.slice(1)).slice(0, 300)}`);
    const key = reply['type'] === 'error' ? `${String(reply['code'])} ${String(reply['reason'] ?? '')}`.trim() : String(reply['type']);
    counts.authReplies.set(key, (counts.authReplies.get(key) ?? 0) + 1);
    counts.auth++;
  } finally {
    await closeAndWait(c);
  }
}

// ---------------------------------------------------------------------------------
// `resume` against history (the Redis-mode gateway)

// Readiness includes the history's function library; then a few notifications are
// recorded on two of the fuzzer's topics, and a client learns the epoch and offsets.
await waitFor('the Redis-mode gateway to be ready', async () => (await fetch(`${rgw.http}/readyz`)).status === 200, 10_000);
const recorder = await open(rgw.ws);
const RECORDED_OFFSETS: string[] = [];
for (const [i, topic] of [`user:${SUB}`, `user:${SUB}`, `user:${SUB}`, 'system', 'system'].entries()) {
  const res = await fetch(`${rgw.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ topic, data: { id: `h-${i}`, n: i } }),
  });
  if (res.status !== 202) throw new Error(`/publish answered ${res.status}`);
}
await recorder.until(5, 10_000);
const recorded = recorder.got.map((text) => JSON.parse(text) as Record<string, unknown>);
const EPOCH = recorded[0]?.['epoch'];
for (const n of recorded) RECORDED_OFFSETS.push(String(n['offset']));
if (typeof EPOCH !== 'string' || recorded.length !== 5)
  throw new Error(`no epoch from the recorded notifications: ${JSON.stringify(recorded).slice(0, 300)}`);
await closeAndWait(recorder);

/** Resume frames aimed at the history: mostly the real epoch, held topics, real offsets and times around now. */
const redisResumeWire: fc.Arbitrary<Wire> = textWire(
  fc
    .record({
      id: maybe(idValue, 0.7),
      epoch: maybe(fc.oneof({ weight: 6, arbitrary: fc.constant<J>(EPOCH) }, { weight: 2, arbitrary: epochValue }), 0.97),
      topics: maybe(
        fc.oneof(
          {
            weight: 6,
            arbitrary: fc
              .array(
                fc.tuple(
                  fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...BASE_TOPICS) }, { weight: 2, arbitrary: resumeKey }),
                  fc.oneof(
                    { weight: 3, arbitrary: fc.constantFrom(...RECORDED_OFFSETS, '0-0', '1-0').map((o) => new Obj([['offset', o]])) },
                    {
                      weight: 3,
                      arbitrary: fc.constantFrom(0, Date.now() - 60_000, Date.now() + 60_000).map((v) => new Obj([['since', v]])),
                    },
                    { weight: 2, arbitrary: pointValue },
                  ),
                ),
                { maxLength: 6 },
              )
              .map((e) => new Obj(e)),
          },
          { weight: 1, arbitrary: topicsValue },
        ),
        0.97,
      ),
      extra: maybe(fc.tuple(extraKey, oddValue), 0.05),
    })
    .map((r) => {
      const entries: Array<[string, J]> = [['type', 'resume']];
      if (r.id !== undefined) entries.push(['id', r.id]);
      if (r.epoch !== undefined) entries.push(['epoch', r.epoch]);
      if (r.topics !== undefined) entries.push(['topics', r.topics]);
      if (r.extra !== undefined) entries.push(r.extra);
      return new Obj(entries);
    }),
).filter(keepsOpen);

/**
 * A `resume` frame alone on a Redis-mode connection, then a ping. An invalid frame
 * gets the same error as in embedded mode. A valid one gets replayed notifications
 * (replayed, this epoch, an offset, a topic answered recovered: true), then
 * `resumed` with every requested topic (in any order); only held topics of the current
 * epoch may be recovered. The ping's pong may come before `resumed` (which waits for
 * Redis), never anything else.
 */
async function resumeInRedis(w: Wire): Promise<void> {
  const c = await open(rgw.ws);
  try {
    const o = new ConnectionOracle().step(w);
    if (o.kind !== 'reply') throw new Error(`generator bug: ${show(w)} is not answered with a reply`);
    send(c.ws, w);
    send(c.ws, BARRIER);
    counts.frames += 2;
    const parsed = (): Array<Record<string, unknown>> => c.got.map((text) => JSON.parse(text) as Record<string, unknown>);
    const answered = (): boolean =>
      parsed().some((f) => f['type'] === 'pong') && parsed().some((f) => f['type'] === 'resumed' || f['type'] === 'error');
    const deadline = Date.now() + 10_000;
    while (!answered() && Date.now() < deadline) await c.until(c.got.length + 1, deadline - Date.now());
    const frames = parsed();
    const pongs = frames.filter((f) => f['type'] === 'pong');
    if (pongs.length !== 1 || pongs[0]?.['id'] !== 'barrier')
      throw new Error(`${show(w)}: expected one barrier pong, got ${JSON.stringify(frames).slice(0, 400)}; socket ${c.ending() || 'open'}`);
    const rest = frames.filter((f) => f['type'] !== 'pong');
    if (o.want.fields['type'] !== 'resumed') {
      const why = rest.length === 1 ? mismatch(o.want, rest[0] as Record<string, unknown>, c.opened) : `${rest.length} answers`;
      if (why !== undefined) throw new Error(`${show(w)}: ${why}; got ${JSON.stringify(rest).slice(0, 400)}`);
      bump(counts.redisResumes, 'invalid');
      return;
    }
    const request = JSON.parse(w.bytes.toString()) as { epoch: string; topics: Record<string, unknown>; id?: unknown };
    const resumed = rest[rest.length - 1];
    if (resumed?.['type'] !== 'resumed')
      throw new Error(`${show(w)}: the last answer is not resumed: ${JSON.stringify(rest).slice(0, 400)}`);
    if (JSON.stringify(resumed['id']) !== JSON.stringify(o.want.fields['id']))
      throw new Error(`${show(w)}: resumed id ${JSON.stringify(resumed['id'])}`);
    const answers = resumed['topics'] as Record<string, { recovered?: unknown }>;
    const keys = Object.keys(request.topics);
    if (canonical(Object.keys(answers).sort()) !== canonical([...keys].sort()))
      throw new Error(`${show(w)}: resumed topics ${JSON.stringify(Object.keys(answers))}, expected ${JSON.stringify(keys)}`);
    for (const k of keys) {
      const a = answers[k];
      if (a === undefined || Object.keys(a).length !== 1 || typeof a.recovered !== 'boolean')
        throw new Error(`${show(w)}: answer for ${k} is ${JSON.stringify(a)}`);
      if (a.recovered && (request.epoch !== EPOCH || !BASE_TOPICS.includes(k)))
        throw new Error(
          `${show(w)}: ${k} recovered though ${request.epoch !== EPOCH ? 'the epoch is not the current one' : 'it is not held'}`,
        );
      bump(counts.redisResumes, a.recovered ? 'recovered' : 'unrecovered');
    }
    for (const n of rest.slice(0, -1)) {
      const topic = String(n['topic']);
      const ok =
        n['type'] === 'notification' &&
        n['replayed'] === true &&
        n['epoch'] === EPOCH &&
        OFFSET_RE.test(String(n['offset'])) &&
        answers[topic]?.recovered === true;
      if (!ok) throw new Error(`${show(w)}: not a replay of a recovered topic: ${JSON.stringify(n).slice(0, 300)}`);
      // Only what was recorded, and only after the point asked for.
      const offset = String(n['offset']);
      if (!RECORDED_OFFSETS.includes(offset)) throw new Error(`${show(w)}: replayed ${offset}, which was never recorded`);
      const from = (request.topics[topic] as { offset?: unknown } | undefined)?.offset;
      if (typeof from === 'string' && OFFSET_RE.test(from) && !isAfter(offset, from))
        throw new Error(`${show(w)}: replayed ${offset}, not after the point ${from}`);
      counts.replayed++;
    }
  } finally {
    await closeAndWait(c);
  }
}

const batch = fc.oneof(
  { weight: 9, arbitrary: fc.array(openWire, { minLength: 1, maxLength: 1000, size: 'max' }) },
  // Often long enough to cross the rate limit (1,000), sometimes its close (2,001st frame).
  { weight: 1, arbitrary: fc.array(openWire, { minLength: 1, maxLength: 2100, size: 'max' }) },
);
const closer = fc.tuple(fc.array(openWire, { maxLength: 3 }), closingWire);

const showBatch = (frames: readonly Wire[]): string =>
  `${frames.length} frames: ${frames.slice(0, 20).map(show).join(', ')}${frames.length > 20 ? ', …' : ''}`;

/**
 * Pipelined batches (4 lanes, in rounds of 10 batches each until `frames` frames were
 * sent), closing frames (3 lanes) and auth frames (2 lanes), all at once. Each lane is
 * its own fast-check run from its own seed, derived from `seed`; a failure is reported
 * with the seed and path that replay it.
 */
async function phase(t: Test, target: { frames: number; closers: number; auth: number; resume: number }, seed: number): Promise<void> {
  const gate: FailureGate = { owner: undefined };
  const failures: string[] = [];
  const report = (r: string | undefined): void => {
    if (r !== undefined) failures.push(r);
  };
  const startFrames = counts.frames;
  const bulk = async (): Promise<void> => {
    for (let round = 0; counts.frames - startFrames < target.frames && gate.owner === undefined; round++) {
      await lanes(4, (i) =>
        fuzzCheck(gate, `pipelined round ${round} lane ${i}`, batch, pipelined, seed + 100 * round + i, 10, showBatch).then(report),
      );
    }
  };
  await Promise.all([
    bulk(),
    lanes(3, (i) =>
      fuzzCheck(
        gate,
        `closing lane ${i}`,
        closer,
        ([p, w]) => closing(p, w),
        seed + 10 + i,
        Math.ceil(target.closers / 3),
        ([p, w]) => `${showBatch(p)}, then ${show(w)}`,
      ).then(report),
    ),
    lanes(2, (i) => fuzzCheck(gate, `auth lane ${i}`, authWire, auth, seed + 20 + i, Math.ceil(target.auth / 2), show).then(report)),
    lanes(2, (i) =>
      fuzzCheck(gate, `redis resume lane ${i}`, redisResumeWire, resumeInRedis, seed + 30 + i, Math.ceil(target.resume / 2), show).then(
        report,
      ),
    ),
  ]);
  for (const g of [gw, rgw]) {
    const death = deathOf(g);
    if (death !== undefined) failures.unshift(death);
  }
  t.same(failures, [], 'every frame got the documented reply or close code');
}

t.comment(`fuzz seed ${SEED} (replay or vary with HERALD_FUZZ_SEED=<n>)`);
let before: Memory | undefined;

t.test('warm-up: the same mix of frames, so the measured run starts from a warmed heap', async (t) => {
  await phase(t, { frames: 30_000, closers: 90, auth: 20, resume: 20 }, SEED + 1_000_000);
  before = await memoryAfterGc(gw);
  t.comment(`after warm-up: ${await memoryReport(gw)}`);
});

t.test(`at least ${MIN_FRAMES} generated frames each get the documented reply or close code`, async (t) => {
  const started = Date.now();
  counts.frames = 0;
  counts.batches = 0;
  counts.closers.clear();
  counts.authReplies.clear();
  counts.resumed = 0;
  counts.redisResumes.clear();
  counts.replayed = 0;
  await phase(t, { frames: MIN_FRAMES, closers: 900, auth: 200, resume: 300 }, SEED);
  t.comment(
    `${counts.frames} frames in ${((Date.now() - started) / 1000).toFixed(1)} s: ${counts.batches} pipelined batches ` +
      `(${counts.rateLimited} rate_limited replies, ${counts.closed1008} closed with 1008), closes ${JSON.stringify([...counts.closers])}, ` +
      `auth replies ${JSON.stringify([...counts.authReplies])}, ${counts.resumed} resumed in batches, ` +
      `Redis-mode resumes ${JSON.stringify([...counts.redisResumes])} with ${counts.replayed} replayed notifications; ` +
      `${counts.dropped} fresh sockets dropped by uWS and retried`,
  );
  t.ok(counts.frames >= MIN_FRAMES, `${counts.frames} frames sent (at least ${MIN_FRAMES})`);
  t.ok(counts.rateLimited > 0 && counts.closed1008 > 0, 'the rate limit was reached and its close too');
  for (const close of ['1003 binary_not_supported', '1003 invalid_json', '1009 message_too_big', '1006 ']) {
    t.ok((counts.closers.get(close) ?? 0) > 0, `some frames closed with ${close}`);
  }
  for (const reply of [
    'authenticated',
    'auth_failed subject_mismatch',
    'auth_failed token_expired',
    'auth_failed malformed_token',
    'invalid_message',
  ]) {
    t.ok((counts.authReplies.get(reply) ?? 0) > 0, `some auth frames were answered ${reply}`);
  }
  t.ok(counts.resumed > 0, 'some resume frames in the batches were valid and answered resumed');
  for (const outcome of ['invalid', 'recovered', 'unrecovered']) {
    t.ok((counts.redisResumes.get(outcome) ?? 0) > 0, `in Redis mode, some resume frames (or their topics) were ${outcome}`);
  }
  t.ok(counts.replayed > 0, 'and some notifications were replayed from history');
});

t.test('afterwards the Redis-mode gateway is alive', async (t) => {
  await checkAlive(t, rgw);
});

t.test('afterwards the gateway is alive and, after a forced GC, its heap and RSS are within 10% of before', async (t) => {
  await checkAlive(t, gw);
  if (before === undefined) throw new Error('the warm-up did not measure memory');
  await checkNoLeak(t, gw, before);
});

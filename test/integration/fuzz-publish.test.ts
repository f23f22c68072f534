// Fuzzing POST /publish (the hardening issue): thousands of generated requests against
// a gateway in Redis mode: valid bodies, near-valid ones (missing, extra, repeated or
// mistyped properties, bad topics, empty and oversized batches), invalid JSON, deep
// nesting, huge numbers, control characters, lone surrogates, invalid UTF-8, bodies
// just over each size limit, chunked bodies, odd Content-Types, wrong and oddly
// written keys, other methods and paths. An oracle written from docs/PROTOCOL.md
// (§ POST /publish, § Notifications) predicts the status, the exact body (the 400
// message only by the item it names) and headers, and, for a 202, the notifications
// a subscriber receives: their order, ids, positions, de-duplication and data, byte for
// byte, with history on (the default in Redis mode; docs/DELIVERY.md).
//
// Each fast-check run is 1-4 requests with its own subscriber on its own topics
// (generated as WATCH…, renamed per run), so runs are independent: the dedup memory
// a run relies on is its own, and a failure shrinks to the requests that cause it.
//
// Requests go over raw sockets, so every byte is ours. A request the gateway may answer
// from its headers alone (401, 404, 405, 413 by Content-Length) sends its headers and
// waits for that answer before any body, like a careful client: the answer is then
// never lost to a reset caused by unread body bytes.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import {
  checkAlive,
  checkNoLeak,
  deathOf,
  type FailureGate,
  fuzzCheck,
  fuzzSeed,
  hostileString,
  INVALID_UTF8,
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
  type RawExchange,
  rawExchange,
  render,
  textMutation,
} from '../support/fuzz.js';
import { baseEnv, startGateway } from '../support/gateway.js';
import { INSPECTOR_ENV, type Memory, memoryAfterGc } from '../support/inspector.js';
import { waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const SEED = fuzzSeed(20_261_124);
const KEY = 'fuzz-publish-key-0123456789abcdef';
const MAX_BODY = 65_536;
const MAX_BATCH = 20;
const MAX_NOTIFICATION = 4096;
const LANES = 2;
const MIN_BODIES = 4000;

const redis = await startRedis();
t.teardown(() => redis.close());
const gw = await startGateway(
  baseEnv({
    ...INSPECTOR_ENV, // memory is measured after a forced GC (support/inspector.ts)
    HERALD_LOG_LEVEL: 'info',
    HERALD_REDIS_URL: redis.url,
    HERALD_PUBLISH_KEY: KEY,
    HERALD_PUBLISH_MAX_BODY_BYTES: String(MAX_BODY),
    HERALD_PUBLISH_MAX_BATCH: String(MAX_BATCH),
    HERALD_MAX_NOTIFICATION_BYTES: String(MAX_NOTIFICATION),
    // Longer than the file: the oracle's dedup memory never expires mid-run.
    HERALD_DEDUP_WINDOW_S: '3600',
    // The keepers below subscribe thousands of topics.
    HERALD_RATE_LIMIT_MESSAGES: '0',
    HERALD_MAX_TOPICS_PER_CONNECTION: '10000',
  }),
);
t.teardown(() => gw.stop());
await waitFor('/readyz 200 (both Redis connections up)', async () => (await fetch(`${gw.http}/readyz`)).status === 200, 10_000);

// ---------------------------------------------------------------------------------
// Watchers: one subscriber per run, on topics nobody else uses, so a run knows exactly
// which notifications must arrive, in which order (Redis and uWS keep it).

/** Generated topics say WATCH; each run renames it to a 5-character namespace of its own. */
const MARK = 'WATCH';
const watchedTopics = (ns: string): string[] => [`user:${ns}`, `${ns}.a`, `${ns}:b.c`, `${ns}@x`];
/** Run n's namespace. */
const runNamespace = (n: number): string => `w${(n % 36 ** 4).toString(36).padStart(4, '0')}`;

/**
 * Keepers: connections that hold every run's topics from the start, so that a run's
 * watcher finds its topics routed here already and never waits for the gateway's
 * paced SUBSCRIBEs (interest.ts): thousands of runs, one after the other, would
 * otherwise spend minutes waiting. They read and drop what they receive.
 */
const KEPT_RUNS = 3000;
async function keeper(from: number, to: number): Promise<WebSocket> {
  const ws = new WebSocket(gw.ws, { headers: { authorization: `Bearer ${await token({ sub: `keeper-${from}`, topics: ['*'] })}` } });
  ws.on('error', () => undefined);
  let answered = 0;
  const want = (to - from) * watchedTopics('x').length;
  const done = new Promise<void>((resolve) =>
    ws.on('message', (d: Buffer) => {
      if (d.toString().startsWith('{"type":"subscribed"') && ++answered === want) resolve();
    }),
  );
  await new Promise((resolve) => ws.once('open', resolve));
  for (let r = from; r < to; r++) for (const topic of watchedTopics(runNamespace(r))) ws.send(JSON.stringify({ type: 'subscribe', topic }));
  await done;
  return ws;
}
const keepers = [await keeper(0, KEPT_RUNS / 2), await keeper(KEPT_RUNS / 2, KEPT_RUNS)];
t.teardown(async () => {
  await Promise.all(keepers.map((k) => k.terminate()));
});

interface Watcher {
  ns: string;
  /** Notification frames, as text, in arrival order; `seen` of them already checked. */
  frames: string[];
  seen: number;
  /** Notifications already delivered, by identity: the gateway drops repeats (dedup window). */
  delivered: Set<string>;
  /** The last offset seen per topic, as [ms, seq]. */
  offsets: Map<string, readonly [number, number]>;
  until(n: number, ms: number): Promise<void>;
  ws: WebSocket;
}

async function watcher(ns: string): Promise<Watcher> {
  const ws = new WebSocket(gw.ws, { headers: { authorization: `Bearer ${await token({ sub: ns, topics: ['*'] })}` } });
  ws.on('error', () => undefined);
  const frames: string[] = [];
  let ready: (() => void) | undefined;
  let wake: (() => void) | undefined;
  ws.on('message', (d: Buffer) => {
    const text = d.toString();
    const type = (JSON.parse(text) as { type: string }).type;
    if (type === 'pong') ready?.();
    else if (type === 'notification') frames.push(text);
    else if (type !== 'connected' && type !== 'subscribed' && type !== 'unsubscribed') frames.push(`unexpected ${text}`);
    wake?.();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`watcher refused with ${res.statusCode}`)));
  });
  // Leave `system` (every connection starts with it), so that no run sees another's items.
  ws.send(JSON.stringify({ type: 'unsubscribe', topic: 'system' }));
  for (const topic of watchedTopics(ns).slice(1)) ws.send(JSON.stringify({ type: 'subscribe', topic }));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`watcher ${ns}: no pong within 10 s`)), 10_000);
    ready = () => {
      clearTimeout(timer);
      resolve();
    };
    ws.send(JSON.stringify({ type: 'ping', id: 'ready' }));
  });
  // Until the unsubscribe took effect (the pong follows it), `system` notifications of
  // other runs may have arrived: they are not this run's.
  frames.length = 0;
  return {
    ns,
    frames,
    seen: 0,
    delivered: new Set(),
    offsets: new Map(),
    ws,
    async until(n, ms) {
      const deadline = Date.now() + ms;
      while (frames.length < n && Date.now() < deadline) {
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

// ---------------------------------------------------------------------------------
// The oracle

interface PublishRequest {
  method: string;
  path: string;
  /** undefined: no Authorization header. */
  authorization: string | undefined;
  contentType: string | undefined;
  body: Buffer;
  /** Chunk sizes for Transfer-Encoding: chunked (the rest goes in one last chunk); undefined: Content-Length. */
  chunks: number[] | undefined;
}

interface Expected {
  status: number;
  /** The exact body, or for a 400 its fields but `message`. */
  body: Record<string, unknown>;
  /** For a 400 invalid_body / notification_too_large: the item the message names (`body:` or `[i]:`). */
  names?: string;
  headers: Record<string, string>;
  /** Notifications the run's watcher must receive, in order. */
  notifications: Array<{ topic: string; data: string; id: string | undefined }>;
  /** A 202's `notifications`, item by item: the topic and the own id (else a derived one). */
  accepted?: Array<{ topic: string; own: string | undefined }>;
  /** The gateway answers from the headers alone; the body is held back. */
  early: boolean;
  /** The gateway closes the connection after answering. */
  closes: boolean;
}

const TOPIC_RE = /^[A-Za-z0-9:_.@-]{1,128}$/;
const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' };

function badRequest(reason: string, names?: string): Expected {
  return {
    status: 400,
    body: { error: 'bad_request', reason },
    ...(names !== undefined ? { names } : {}),
    headers: JSON_HEADERS,
    notifications: [],
    early: false,
    closes: false,
  };
}

/**
 * A recorded notification's own id (docs/DELIVERY.md § Identity): a payload object's
 * string `id` of 1-128 bytes of UTF-8 (history on, the default in Redis mode). A string
 * with a lone surrogate has no UTF-8 form and is not an id (measured; see the report).
 */
function ownId(data: unknown): string | undefined {
  if (!isPlainObject(data) || !Object.hasOwn(data, 'id')) return undefined;
  const id = data['id'];
  // Well-formed: it survives a round trip through UTF-8 (lone surrogates become U+FFFD).
  const wellFormed = typeof id === 'string' && Buffer.from(id).toString() === id;
  return wellFormed && Buffer.byteLength(id) >= 1 && Buffer.byteLength(id) <= 128 ? id : undefined;
}

function expect(req: PublishRequest, w: Watcher): Expected {
  const path = req.path.split('?')[0];
  if (path !== '/publish')
    return { status: 404, body: { error: 'not_found' }, headers: JSON_HEADERS, notifications: [], early: true, closes: false };
  if (req.method !== 'POST') {
    return {
      status: 405,
      body: { error: 'method_not_allowed' },
      headers: { ...JSON_HEADERS, allow: 'POST' },
      notifications: [],
      early: true,
      closes: false,
    };
  }
  // HTTP strips the optional whitespace around a header value.
  const m = /^Bearer[ \t]+(\S+)$/i.exec((req.authorization ?? '').replace(/^[ \t]+|[ \t]+$/g, ''));
  if (m?.[1] !== KEY) {
    return {
      status: 401,
      body: { error: 'unauthorized', reason: 'invalid_publish_key' },
      headers: { ...JSON_HEADERS, 'www-authenticate': 'Bearer', connection: 'close' },
      notifications: [],
      early: true,
      closes: true,
    };
  }
  if (req.body.length > MAX_BODY) {
    return {
      status: 413,
      body: { error: 'payload_too_large', reason: 'body_too_large', limit: MAX_BODY },
      headers: { ...JSON_HEADERS, connection: 'close' },
      notifications: [],
      early: req.chunks === undefined,
      closes: true,
    };
  }
  let body: unknown;
  try {
    // Invalid UTF-8 becomes U+FFFD, as Node decodes it (the protocol does not say; see the report).
    body = JSON.parse(req.body.toString('utf8'));
  } catch {
    return badRequest('invalid_json');
  }
  const list: unknown[] = Array.isArray(body) ? body : [body];
  if (list.length === 0) return badRequest('invalid_body');
  if (list.length > MAX_BATCH) return badRequest('too_many_items');
  const items: Array<{ topic: string; data: string; own: string | undefined }> = [];
  for (let i = 0; i < list.length; i++) {
    const item = list[i];
    const where = Array.isArray(body) ? `[${i}]` : 'body';
    const keys = isPlainObject(item) ? Object.keys(item) : [];
    if (!isPlainObject(item) || keys.length !== 2 || !Object.hasOwn(item, 'topic') || !Object.hasOwn(item, 'data'))
      return badRequest('invalid_body', where);
    const topic = item['topic'];
    if (typeof topic !== 'string' || !TOPIC_RE.test(topic)) return badRequest('invalid_body', where);
    let data: string;
    try {
      data = JSON.stringify(item['data']);
    } catch {
      return badRequest('invalid_body', where); // nested too deeply to serialise
    }
    if (Buffer.byteLength(data) > MAX_NOTIFICATION) return badRequest('notification_too_large', where);
    items.push({ topic, data, own: ownId(item['data']) });
  }
  const notifications: Expected['notifications'] = [];
  const watched = watchedTopics(w.ns);
  for (const { topic, data, own } of items) {
    if (!watched.includes(topic)) continue;
    // One notification per (topic, own id) within the dedup window; a payload without
    // one is a new notification every time it is published (docs/DELIVERY.md, Identity).
    if (own !== undefined) {
      const key = `${topic}\n${own}`;
      if (w.delivered.has(key)) continue;
      w.delivered.add(key);
    }
    notifications.push({ topic, data, id: own });
  }
  const accepted = items.map(({ topic, own }) => ({ topic, own }));
  return { status: 202, body: { accepted: list.length }, accepted, headers: JSON_HEADERS, notifications, early: false, closes: false };
}

// ---------------------------------------------------------------------------------
// Generators

const oddValue: fc.Arbitrary<J> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }).map((v) => v as J),
  numberLiteral,
  hostileString({ maxLength: 20 }),
  fc.constantFrom<J>(null, true, false, [], new Obj([]), '', [1]),
);

const topicValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...watchedTopics(MARK)) },
  // Valid topics nobody watches.
  { weight: 2, arbitrary: fc.stringMatching(TOPIC_RE) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'system',
      'x'.repeat(128),
      '',
      ' ',
      'a b',
      'x'.repeat(129),
      'usér',
      'a\u0000',
      `${MARK}.a `,
      `${MARK}.a\n`,
      '*',
    ),
  },
  { weight: 1, arbitrary: oddValue },
);

const idLike: fc.Arbitrary<J> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'dup-1',
      'dup-2',
      'dup-3',
      '',
      'x'.repeat(128),
      'x'.repeat(129),
      '\u{1F600}'.repeat(64),
      '\u{1F600}'.repeat(65),
      '\ud800',
    ),
  },
  { weight: 3, arbitrary: hostileString({ maxLength: 130 }) },
  { weight: 1, arbitrary: hostileString({ minLength: 100, maxLength: 130, long: true }) },
  { weight: 1, arbitrary: oddValue },
);

const dataValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => v as J) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        idLike,
        fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'id')), fc.jsonValue({ maxDepth: 1 }), {
          maxKeys: 3,
        }),
        fc.boolean(),
      )
      .map(
        ([id, rest, first]) =>
          new Obj(
            first
              ? [['id', id], ...Object.entries(rest).map(([k, v]) => [k, v as J] as const)]
              : [...Object.entries(rest).map(([k, v]) => [k, v as J] as const), ['id', id]],
          ),
      ),
  },
  { weight: 1, arbitrary: numberLiteral },
  { weight: 2, arbitrary: hostileString({ maxLength: 40 }) },
  // Nesting JSON.stringify handles, or far too deep for it (its limit lies in between, and depends on the stack).
  {
    weight: 1,
    arbitrary: fc
      .oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 20_000, max: 30_000 }))
      .map((d) => new Raw(nested(d, 'array'))),
  },
  // Around HERALD_MAX_NOTIFICATION_BYTES, serialised.
  { weight: 1, arbitrary: fc.integer({ min: MAX_NOTIFICATION - 8, max: MAX_NOTIFICATION + 8 }).map((n) => 'x'.repeat(n - 2)) },
  { weight: 1, arbitrary: fc.integer({ min: MAX_NOTIFICATION / 4 - 4, max: MAX_NOTIFICATION / 4 + 4 }).map((n) => '\u{1F600}'.repeat(n)) },
);

const item: fc.Arbitrary<J> = fc
  .record({
    topic: topicValue,
    data: dataValue,
    dice: fc.nat(99),
    extra: maybe(fc.tuple(fc.oneof(fc.constantFrom('id', 'Topic', '__proto__', 'extra'), hostileString({ maxLength: 8 })), oddValue), 0.04),
    repeat: maybe(fc.tuple(fc.constantFrom('topic', 'data'), fc.oneof(topicValue, dataValue)), 0.03),
    swap: fc.boolean(),
  })
  .map((r) => {
    // dice below 3 leaves out topic, 3-5 leaves out data.
    const entries: Array<readonly [string, J]> = [];
    if (r.dice >= 3) entries.push(['topic', r.topic]);
    if (r.dice < 3 || r.dice >= 6) entries.push(['data', r.data]);
    if (r.swap) entries.reverse();
    if (r.extra !== undefined) entries.push(r.extra);
    if (r.repeat !== undefined) entries.push(r.repeat);
    return new Obj(entries);
  });

const bodyValue: fc.Arbitrary<J> = fc.oneof(
  { weight: 5, arbitrary: item },
  { weight: 4, arbitrary: fc.array(item, { maxLength: MAX_BATCH }) },
  { weight: 1, arbitrary: fc.array(item, { minLength: MAX_BATCH - 1, maxLength: MAX_BATCH + 2, size: 'max' }) },
  { weight: 1, arbitrary: oddValue },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 30_000 }).map((d) => new Raw(nested(d, 'array'))) },
);

/** A body just over HERALD_PUBLISH_MAX_BODY_BYTES (or exactly at it), otherwise valid. */
const oversized: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 70_000 })),
    fc.constantFrom(...watchedTopics(MARK)),
  )
  .map(([over, topic]) => {
    const head = `{"topic":${JSON.stringify(topic)},"data":"`;
    return Buffer.from(`${head}${'x'.repeat(MAX_BODY + over - head.length - 2)}"}`);
  });

const bodyBytes: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 12, arbitrary: fc.tuple(bodyValue, jsonPad).map(([v, pad]) => Buffer.from(render(v, pad))) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(bodyValue, fc.array(textMutation, { minLength: 1, maxLength: 3 }))
      .map(([v, m]) => Buffer.from(mutateText(render(v), m))),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(bodyValue, fc.array(fc.record({ at: fc.nat(), bytes: fc.constantFrom(...INVALID_UTF8) }), { minLength: 1, maxLength: 2 }))
      .map(([v, m]) => mutateBytes(Buffer.from(render(v)), m)),
  },
  { weight: 1, arbitrary: oversized },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('', ' ', 'null', '{}', '[]', '[[]]', '\ufeff{"topic":"system","data":1}', '{"topic":"system","data":1}{}')
      .map((s) => Buffer.from(s)),
  },
);

/** Printable ASCII: what a header value may hold without uWS ignoring the request. */
const headerText = (maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength });

const authorization: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 20, arbitrary: fc.constant(`Bearer ${KEY}`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      `bearer ${KEY}`,
      `BEARER ${KEY}`,
      `Bearer\t${KEY}`,
      `Bearer   ${KEY}`,
      `  Bearer ${KEY}  `,
      `Bearer ${KEY}\t`,
    ),
  },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      undefined,
      '',
      'Bearer',
      'Bearer ',
      `Bearer ${KEY}x`,
      `Bearer ${KEY.slice(1)}`,
      `Bearer ${KEY.toUpperCase()}`,
      `Basic ${KEY}`,
      `Bearer ${KEY} ${KEY}`,
      `Bearer${KEY}`,
      KEY,
      `Bearer "${KEY}"`,
      `Bearer ${'k'.repeat(5000)}`,
    ),
  },
  { weight: 1, arbitrary: headerText(80) },
);

const request: fc.Arbitrary<PublishRequest> = fc.record({
  method: fc.oneof(
    { weight: 30, arbitrary: fc.constant('POST') },
    { weight: 1, arbitrary: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS') },
  ),
  path: fc.oneof(
    { weight: 30, arbitrary: fc.constant('/publish') },
    {
      weight: 1,
      arbitrary: fc.constantFrom('/publish?x=1', '/publish?', '/publish/', '/PUBLISH', '/publish%20', '//publish', '/publish/x'),
    },
  ),
  authorization,
  contentType: fc.oneof(
    fc.constantFrom(
      undefined,
      'application/json',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/json; charset=latin1',
      '',
    ),
    headerText(40),
  ),
  body: bodyBytes,
  chunks: maybe(fc.array(fc.integer({ min: 1, max: 20_000 }), { minLength: 1, maxLength: 4 }), 0.25),
});

// ---------------------------------------------------------------------------------
// One request

function head(req: PublishRequest): Buffer {
  const lines = [`${req.method} ${req.path} HTTP/1.1`, 'Host: 127.0.0.1'];
  if (req.authorization !== undefined) lines.push(`Authorization: ${req.authorization}`);
  if (req.contentType !== undefined) lines.push(`Content-Type: ${req.contentType}`);
  lines.push(req.chunks === undefined ? `Content-Length: ${req.body.length}` : 'Transfer-Encoding: chunked');
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

function bodyParts(req: PublishRequest): Buffer[] {
  if (req.chunks === undefined) return req.body.length === 0 ? [] : [req.body];
  const parts: Buffer[] = [];
  let at = 0;
  for (const size of [...req.chunks, Infinity]) {
    const chunk = req.body.subarray(at, at + size);
    at += chunk.length;
    if (chunk.length > 0) parts.push(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
    if (at >= req.body.length) break;
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return parts;
}

const show = (req: PublishRequest): string => {
  const body = req.body.subarray(0, 300).toString('latin1');
  return (
    `${req.method} ${req.path} auth=${JSON.stringify(req.authorization)?.slice(0, 60)} type=${JSON.stringify(req.contentType)} ` +
    `${req.chunks === undefined ? 'length' : `chunked ${JSON.stringify(req.chunks)}`} body(${req.body.length})=${JSON.stringify(body)}`
  );
};

const counts = { requests: 0, byStatus: new Map<string, number>(), notifications: 0, resets: 0, dropped: 0 };

async function exchange(w: Watcher, generated: PublishRequest): Promise<void> {
  // Lengths are unchanged (the namespace is as long as WATCH): size limits stay exact.
  const req = { ...generated, body: Buffer.from(generated.body.toString('latin1').replaceAll(MARK, w.ns), 'latin1') };
  const want = expect(req, w);
  const r: RawExchange = await rawExchange({
    port: gw.port,
    head: head(req),
    body: bodyParts(req),
    ...(want.early ? { waitBeforeBody: 10_000 } : {}),
    deadlineMs: 10_000,
    // PROTOCOL.md: `Connection: close` with a 401 or a 413.
    awaitClose: (res) => res.status === 401 || res.status === 413,
  });
  counts.requests++;
  const res = r.response;
  const key = `${want.status} ${String(want.body['reason'] ?? want.body['error'] ?? '')}`;
  counts.byStatus.set(key, (counts.byStatus.get(key) ?? 0) + 1);
  if (res === undefined) {
    // A chunked body over the limit is answered 413 while the rest of it is still
    // arriving; closing a socket with unread bytes makes the kernel send a reset, which
    // can reach the client before it reads the 413. Only there is a reset accepted.
    if (want.status === 413 && !want.early && r.received === 0 && (r.end === 'ECONNRESET' || r.end === 'EPIPE')) {
      counts.resets++;
      return;
    }
    // A header block over 4 KB split across reads is dropped by uWS unanswered (see
    // fuzz-upgrade.test.ts); here only the 5 KB Authorization values are that big.
    if (r.received === 0 && ['closed', 'ECONNRESET', 'EPIPE'].includes(r.end) && head(req).length > 4000) {
      counts.dropped++;
      return;
    }
    throw new Error(`no response (${r.end}, ${r.received} bytes) to ${show(req)}; expected ${want.status}`);
  }
  const body = JSON.parse(res.body.toString() || 'null') as Record<string, unknown> | null;
  const problems: string[] = [];
  if (res.status !== want.status) problems.push(`status ${res.status}, expected ${want.status}`);
  if (want.status === 400) {
    const { message, ...rest } = body ?? {};
    if (JSON.stringify(rest) !== JSON.stringify(want.body))
      problems.push(`body ${JSON.stringify(body)?.slice(0, 300)}, expected ${JSON.stringify(want.body)} and a message`);
    if (typeof message !== 'string' || message === '') problems.push(`message ${JSON.stringify(message)}`);
    else if (want.names !== undefined && !message.startsWith(`${want.names}: `))
      problems.push(`message ${JSON.stringify(message)} does not name ${want.names}`);
  } else if (want.accepted !== undefined) {
    const { notifications, ...rest } = body ?? {};
    if (JSON.stringify(rest) !== JSON.stringify(want.body))
      problems.push(`body ${JSON.stringify(body)?.slice(0, 300)}, expected ${JSON.stringify(want.body)} and notifications`);
    const why = acceptedMismatch(want.accepted, notifications);
    if (why !== undefined) problems.push(`notifications: ${why}`);
  } else if (JSON.stringify(body) !== JSON.stringify(want.body)) {
    problems.push(`body ${JSON.stringify(body)?.slice(0, 300)}, expected ${JSON.stringify(want.body)}`);
  }
  for (const [h, v] of Object.entries(want.headers))
    if (res.headers[h] !== v) problems.push(`header ${h}: ${JSON.stringify(res.headers[h])}, expected ${JSON.stringify(v)}`);
  if (want.closes && !['closed', 'ECONNRESET', 'EPIPE'].includes(r.end))
    problems.push(`the connection was not closed after the ${res.status} (${r.end})`);
  if (problems.length > 0) throw new Error(`${show(req)}\n  ${problems.join('\n  ')}`);

  await w.until(w.seen + want.notifications.length, 10_000);
  const arrived = w.frames.slice(w.seen, w.seen + want.notifications.length);
  w.seen += arrived.length;
  want.notifications.forEach((n, i) => {
    const text = arrived[i];
    if (text === undefined) throw new Error(`notification ${i + 1} of ${want.notifications.length} did not arrive after ${show(req)}`);
    const why = notificationMismatch(w, n, text);
    if (why !== undefined) throw new Error(`after ${show(req)}: notification ${i + 1}: ${why}\n  got ${text.slice(0, 400)}`);
  });
  counts.notifications += arrived.length;
}

/**
 * A 202's `notifications` (PROTOCOL.md § POST /publish), history on: one per item in
 * order, `{topic, id, offset}`, the id the item's own or derived from the offset.
 */
function acceptedMismatch(want: NonNullable<Expected['accepted']>, got: unknown): string | undefined {
  if (!Array.isArray(got) || got.length !== want.length) return `${JSON.stringify(got)?.slice(0, 200)}: not ${want.length} entries`;
  for (let i = 0; i < want.length; i++) {
    const n = got[i] as Record<string, unknown>;
    const w = want[i] as { topic: string; own: string | undefined };
    if (Object.keys(n).join(',') !== 'topic,id,offset') return `[${i}]: properties ${Object.keys(n).join(',')}`;
    if (n['topic'] !== w.topic) return `[${i}]: topic ${String(n['topic'])}, expected ${w.topic}`;
    const offset = n['offset'];
    if (typeof offset !== 'string' || !/^\d{1,15}-\d{1,15}$/.test(offset)) return `[${i}]: offset ${JSON.stringify(offset)}`;
    const id = w.own ?? `${offset}@${createHash('sha1').update(w.topic).digest('hex').slice(0, 8)}`;
    if (n['id'] !== id) return `[${i}]: id ${JSON.stringify(n['id'])}, expected ${JSON.stringify(id)}`;
  }
  return undefined;
}

/**
 * A live notification with history on (PROTOCOL.md § notification, docs/DELIVERY.md):
 * properties in the documented order, the own id or `<offset>@<first 8 hex digits of
 * sha1(topic)>`, `ts` the offset's ms, offsets increasing within a topic, one epoch,
 * and the data byte for byte.
 */
function notificationMismatch(w: Watcher, want: Expected['notifications'][number], text: string): string | undefined {
  const f = JSON.parse(text) as Record<string, unknown>;
  const keys = Object.keys(f).join(',');
  if (keys !== 'type,topic,id,ts,offset,epoch,data') return `properties ${keys}`;
  if (f['type'] !== 'notification' || f['topic'] !== want.topic)
    return `type/topic ${String(f['type'])} ${String(f['topic'])}, expected ${want.topic}`;
  const offset = f['offset'];
  const m = typeof offset === 'string' ? /^(\d{1,15})-(\d{1,15})$/.exec(offset) : null;
  if (m === null) return `offset ${JSON.stringify(offset)}`;
  const position = [Number(m[1]), Number(m[2])] as const;
  const last = w.offsets.get(want.topic);
  if (last !== undefined && (position[0] < last[0] || (position[0] === last[0] && position[1] <= last[1])))
    return `offset ${String(offset)} does not follow ${last.join('-')}`;
  w.offsets.set(want.topic, position);
  const id = want.id ?? `${String(offset)}@${createHash('sha1').update(want.topic).digest('hex').slice(0, 8)}`;
  if (f['id'] !== id) return `id ${JSON.stringify(f['id'])}, expected ${JSON.stringify(id)}`;
  if (f['ts'] !== position[0]) return `ts ${String(f['ts'])}, expected the offset's ${position[0]}`;
  if (typeof f['epoch'] !== 'string' || !/^[0-9a-f]{1,64}$/.test(f['epoch'])) return `epoch ${JSON.stringify(f['epoch'])}`;
  epoch ??= f['epoch'];
  if (f['epoch'] !== epoch) return `epoch ${f['epoch']}, earlier ${epoch}`;
  if (JSON.stringify(f['data']) !== want.data)
    return `data ${JSON.stringify(f['data']).slice(0, 200)}, expected ${want.data.slice(0, 200)}`;
  return undefined;
}

/** The history epoch: one for the whole run (Redis keeps its dataset). */
let epoch: string | undefined;

/** A last notification: it must be the next frame, so nothing unexpected came before it. */
async function barrier(w: Watcher): Promise<void> {
  const topic = watchedTopics(w.ns)[1] as string;
  const res = await fetch(`${gw.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ topic, data: 'barrier' }),
    signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 202) throw new Error(`the barrier publish answered ${res.status}`);
  await w.until(w.seen + 1, 10_000);
  const rest = w.frames.slice(w.seen);
  if (rest.length !== 1 || !(rest[0] ?? '').includes('"data":"barrier"'))
    throw new Error(`after the expected notifications came ${JSON.stringify(rest).slice(0, 500)}`);
}

let runs = 0;

/** One run: a fresh watcher on a fresh namespace, the requests in order, then a barrier. */
async function run(requests: readonly PublishRequest[]): Promise<void> {
  const w = await watcher(runNamespace(runs++));
  try {
    for (const req of requests) await exchange(w, req);
    await barrier(w);
  } finally {
    w.ws.terminate();
  }
}

const showRun = (requests: readonly PublishRequest[]): string => requests.map(show).join('\n    then ');

async function phase(t: Test, bodies: number, seed: number): Promise<void> {
  const gate: FailureGate = { owner: undefined };
  const failures: string[] = [];
  const start = counts.requests;
  // Rounds until `bodies` requests were sent: a run holds 1-4.
  for (let round = 0; counts.requests - start < bodies && gate.owner === undefined; round++) {
    await lanes(LANES, async (lane) => {
      const r = await fuzzCheck(
        gate,
        `round ${round} lane ${lane}`,
        fc.array(request, { minLength: 1, maxLength: 4 }),
        run,
        seed + 100 * round + lane,
        100,
        showRun,
      );
      if (r !== undefined) failures.push(r);
    });
  }
  const death = deathOf(gw);
  if (death !== undefined) failures.unshift(death);
  t.same(failures, [], 'every request got the documented status, body and headers, and every 202 its notifications');
}

t.comment(`fuzz seed ${SEED} (replay or vary with HERALD_FUZZ_SEED=<n>)`);
let before: Memory | undefined;

t.test('warm-up: the same mix of requests, so the measured run starts from a warmed heap', async (t) => {
  await phase(t, 2000, SEED + 1_000_000);
  before = await memoryAfterGc(gw);
  t.comment(`after warm-up: ${await memoryReport(gw)}`);
});

t.test(`${MIN_BODIES} generated POST /publish requests each get the documented answer`, async (t) => {
  const started = Date.now();
  counts.requests = 0;
  counts.notifications = 0;
  counts.byStatus.clear();
  counts.resets = 0;
  counts.dropped = 0;
  await phase(t, MIN_BODIES, SEED);
  t.comment(
    `${counts.requests} requests in ${((Date.now() - started) / 1000).toFixed(1)} s, ${counts.notifications} notifications checked, ` +
      `${counts.resets} 413s lost to a reset, ${counts.dropped} requests over 4 KB of headers dropped by uWS; by answer: ${JSON.stringify([...counts.byStatus].sort())}`,
  );
  t.ok(counts.requests >= MIN_BODIES, `${counts.requests} requests sent (at least ${MIN_BODIES})`);
  for (const answer of [
    '202 ',
    '400 invalid_json',
    '400 invalid_body',
    '400 too_many_items',
    '400 notification_too_large',
    '401 invalid_publish_key',
    '404 not_found',
    '405 method_not_allowed',
    '413 body_too_large',
  ]) {
    t.ok([...counts.byStatus.keys()].includes(answer), `some requests were answered ${answer}`);
  }
  t.ok(counts.notifications > 0, 'notifications were delivered and checked');
});

t.test('afterwards the gateway is alive and, after a forced GC, its heap and RSS are within 10% of before', async (t) => {
  await checkAlive(t, gw);
  if (before === undefined) throw new Error('the warm-up did not measure memory');
  await checkNoLeak(t, gw, before);
});

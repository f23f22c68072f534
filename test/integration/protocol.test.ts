// Frames after the upgrade: ping/pong, id echo, schema errors, subscribe and
// unsubscribe, the closes (1003, 1009, 1008), the rate limit, ack/mark_read in both
// modes (one id or a list), history in embedded mode, and the heartbeat.
import t from 'tap';
import WebSocket from 'ws';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, type GatewayProcess, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const PUBLISH_KEY = 'protocol-test-publish-key-0123456789';
const MAX_PAYLOAD_BYTES = 1024;
const MAX_TOPICS = 3;
const IDLE_TIMEOUT_S = 8;

// Embedded mode (POST /publish delivers locally), a small payload cap and topic
// limit, and the shortest idle timeout uWS accepts, so the heartbeat test is quick.
const gw = await startGateway(
  baseEnv({
    HERALD_PUBLISH_KEY: PUBLISH_KEY,
    HERALD_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
    HERALD_MAX_TOPICS_PER_CONNECTION: String(MAX_TOPICS),
    HERALD_IDLE_TIMEOUT_S: String(IDLE_TIMEOUT_S),
  }),
);
t.teardown(() => gw.stop());

interface Teardown {
  teardown(fn: () => unknown): void;
}

let users = 0;
/** A fresh user per call, so one test's notifications never reach another's clients. */
const newUser = (): string => `u${++users}`;

async function connect(t: Teardown, on: GatewayProcess, claims: { sub: string; roles?: string[]; topics?: string[] }) {
  const c = await TestClient.connect(on.ws, { headers: { authorization: `Bearer ${await token(claims)}` } });
  t.teardown(() => c.close());
  return c;
}

async function publish(items: Array<{ topic: string; data: unknown }>): Promise<void> {
  const res = await fetch(`${gw.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(items),
    signal: AbortSignal.timeout(3000),
  });
  if (res.status !== 202) throw new Error(`POST /publish answered ${res.status}: ${await res.text()}`);
}

/** A ping round trip: every frame the server sent before the pong has arrived. */
async function barrier(c: TestClient, id = `barrier-${Date.now()}`): Promise<void> {
  const pong = await c.request({ type: 'ping', id });
  if (pong.type !== 'pong') throw new Error(`barrier got ${JSON.stringify(pong)}`);
}

const ofType = (c: TestClient, type: string): Frame[] => c.inbox.filter((f) => f.type === type);

t.test('ping', async (t) => {
  t.test('a ping without id gets a pong with ts and no id', async (t) => {
    const c = await connect(t, gw, { sub: newUser() });
    const before = Date.now();
    c.send({ type: 'ping' });
    const pong = await c.next('pong');
    t.same(Object.keys(pong).sort(), ['ts', 'type']);
    t.ok((pong['ts'] as number) >= before && (pong['ts'] as number) <= Date.now(), 'ts is the server time in ms');
  });

  for (const id of ['p-1', 42, 0]) {
    t.test(`a ping with ${typeof id} id ${JSON.stringify(id)} gets a pong echoing it`, async (t) => {
      const c = await connect(t, gw, { sub: newUser() });
      c.send({ type: 'ping', id });
      const pong = await c.next('pong');
      t.equal(pong['id'], id);
      t.type(pong['ts'], 'number');
    });
  }
});

t.test('a request with an id always gets a reply with that id, errors included', async (t) => {
  const c = await connect(t, gw, { sub: newUser(), topics: ['org:rio'] });
  const rows: Array<{ frame: Record<string, unknown>; want: Record<string, unknown> }> = [
    { frame: { type: 'ping' }, want: { type: 'pong' } },
    { frame: { type: 'subscribe', topic: 'org:rio' }, want: { type: 'subscribed', topic: 'org:rio' } },
    { frame: { type: 'unsubscribe', topic: 'org:rio' }, want: { type: 'unsubscribed', topic: 'org:rio' } },
    { frame: { type: 'subscribe', topic: 'org:secret' }, want: { type: 'error', code: 'forbidden' } },
    { frame: { type: 'ack', notificationId: 'n-1' }, want: { type: 'acked', notificationId: 'n-1' } },
    { frame: { type: 'mark_read', notificationId: 'n-1' }, want: { type: 'marked_read', notificationId: 'n-1' } },
    { frame: { type: 'subscribe' }, want: { type: 'error', code: 'invalid_message' } },
    { frame: { type: 'ping', extra: true }, want: { type: 'error', code: 'invalid_message' } },
    { frame: { type: 'teleport' }, want: { type: 'error', code: 'unknown_type' } },
  ];
  for (const id of ['req-1', 7, Number.MAX_SAFE_INTEGER, 'x'.repeat(64)]) {
    for (const { frame, want } of rows) {
      const reply = await c.request({ ...frame, id });
      t.match(reply, { ...want, id }, `${JSON.stringify(frame)} with id ${JSON.stringify(id).slice(0, 20)}`);
      t.equal(reply['id'], id, 'the id is echoed verbatim, with its type');
    }
  }
});

t.test('a frame whose id is not a usable id gets invalid_message without an id', async (t) => {
  const c = await connect(t, gw, { sub: newUser() });
  for (const id of ['', 'x'.repeat(65), -1, 1.5, null, true, { a: 1 }, ['a']]) {
    c.send({ type: 'ping', id });
    const err = await c.next('error');
    t.equal(err['code'], 'invalid_message', `id ${JSON.stringify(id)}`);
    t.notOk('id' in err, `id ${JSON.stringify(id)} is not echoed`);
  }
  await barrier(c);
});

t.test('schema failures get invalid_message and the connection stays open', async (t) => {
  const c = await connect(t, gw, { sub: newUser() });
  const bad: unknown[] = [
    [],
    ['ping'],
    'ping',
    42,
    null,
    true,
    {},
    { type: 5 },
    { type: null },
    { id: 'no-type' },
    { type: 'ping', extra: 1 },
    { type: 'subscribe' },
    { type: 'subscribe', topic: '' },
    { type: 'subscribe', topic: 'has space' },
    { type: 'subscribe', topic: 'x'.repeat(129) },
    { type: 'subscribe', topic: 'feed:*' },
    { type: 'subscribe', topic: 'usér:é' },
    { type: 'subscribe', topic: ['user:a'] },
    { type: 'unsubscribe' },
    { type: 'ack' },
    { type: 'ack', notificationId: '' },
    { type: 'ack', notificationId: 'x'.repeat(129) },
    { type: 'mark_read', notificationId: 7 },
  ];
  const texts = [
    ...bad.map((f) => JSON.stringify(f)),
    '{"type":"ping","__proto__":{"polluted":true}}',
    '{"type":"ping","constructor":{"prototype":{}}}',
  ];
  for (const text of texts) {
    c.send(text);
    const err = await c.next('error');
    t.equal(err['code'], 'invalid_message', text.slice(0, 60));
    t.type(err['message'], 'string');
  }
  await barrier(c);
  t.equal(c.ws.readyState, WebSocket.OPEN);
  t.same(c.inbox, [], 'no other frame was sent');
});

t.test('an unknown type gets unknown_type and the connection stays open', async (t) => {
  const c = await connect(t, gw, { sub: newUser() });
  const err = await c.request({ type: 'hello', id: 7 });
  t.match(err, { type: 'error', code: 'unknown_type', id: 7 });
  c.send({ type: 'notification' }); // a server frame type is unknown from a client
  t.match(await c.next('error'), { code: 'unknown_type' });
  await barrier(c);
});

t.test('subscriptions', async (t) => {
  t.test('subscribing to an exactly granted topic gets subscribed, then its notifications', async (t) => {
    const c = await connect(t, gw, { sub: newUser(), topics: ['org:rio', 'feed:*'] });
    t.same(await c.request({ type: 'subscribe', topic: 'org:rio', id: 's1' }), { type: 'subscribed', topic: 'org:rio', id: 's1' });
    await publish([{ topic: 'org:rio', data: { n: 1 } }]);
    t.match(await c.next('notification'), { topic: 'org:rio', data: { n: 1 } });
  });

  t.test('subscribing under a prefix grant gets subscribed, then its notifications', async (t) => {
    const c = await connect(t, gw, { sub: newUser(), topics: ['feed:*'] });
    t.same(await c.request({ type: 'subscribe', topic: 'feed:news:eu', id: 2 }), { type: 'subscribed', topic: 'feed:news:eu', id: 2 });
    c.send({ type: 'subscribe', topic: 'feed:sport' });
    t.same(await c.next('subscribed'), { type: 'subscribed', topic: 'feed:sport' }, 'no id asked, none given');
    await publish([
      { topic: 'feed:news:eu', data: 'a' },
      { topic: 'feed:sport', data: 'b' },
    ]);
    t.match(await c.next('notification'), { topic: 'feed:news:eu', data: 'a' });
    t.match(await c.next('notification'), { topic: 'feed:sport', data: 'b' });
  });

  t.test('subscribing to an ungranted topic gets forbidden and delivers nothing', async (t) => {
    const sub = newUser();
    const c = await connect(t, gw, { sub, topics: ['org:rio', 'feed:*'] });
    for (const topic of ['org:other', 'org:rio2', 'org', 'feed', 'feedback', 'user:someone-else', 'role:admin']) {
      const err = await c.request({ type: 'subscribe', topic, id: topic });
      t.match(err, { type: 'error', code: 'forbidden', id: topic }, topic);
    }
    await publish([
      { topic: 'org:other', data: 'leak' },
      { topic: 'user:someone-else', data: 'leak' },
      { topic: 'role:admin', data: 'leak' },
      { topic: `user:${sub}`, data: 'barrier' },
    ]);
    t.match(await c.next('notification'), { topic: `user:${sub}`, data: 'barrier' });
    t.same(ofType(c, 'notification'), [], 'nothing arrived before the barrier');
  });

  t.test(`subscribing past HERALD_MAX_TOPICS_PER_CONNECTION (${MAX_TOPICS}) gets too_many_topics`, async (t) => {
    const sub = newUser();
    const c = await connect(t, gw, { sub, roles: ['ops'], topics: ['feed:*'] });
    for (let i = 1; i <= MAX_TOPICS; i++) {
      t.match(await c.request({ type: 'subscribe', topic: `feed:${i}`, id: i }), { type: 'subscribed', topic: `feed:${i}` });
    }
    t.match(await c.request({ type: 'subscribe', topic: 'feed:over', id: 'over' }), { type: 'error', code: 'too_many_topics', id: 'over' });
    t.match(
      await c.request({ type: 'subscribe', topic: 'feed:1', id: 'again' }),
      { type: 'subscribed' },
      'a topic already held does not count twice',
    );
    for (const base of [`user:${sub}`, 'role:ops', 'system']) {
      t.match(
        await c.request({ type: 'subscribe', topic: base, id: base }),
        { type: 'subscribed' },
        `${base} is a base topic, never counted`,
      );
    }
    t.match(await c.request({ type: 'unsubscribe', topic: 'feed:1', id: 'u' }), { type: 'unsubscribed' });
    t.match(await c.request({ type: 'subscribe', topic: 'feed:over', id: 'room' }), { type: 'subscribed' }, 'an unsubscribe frees a place');
  });

  t.test('after unsubscribe a topic delivers nothing more', async (t) => {
    const sub = newUser();
    const c = await connect(t, gw, { sub, topics: ['feed:*'] });
    await c.request({ type: 'subscribe', topic: 'feed:a', id: 's' });
    await publish([{ topic: 'feed:a', data: { n: 1 } }]);
    t.match(await c.next('notification'), { topic: 'feed:a', data: { n: 1 } });
    t.same(await c.request({ type: 'unsubscribe', topic: 'feed:a', id: 'u1' }), { type: 'unsubscribed', topic: 'feed:a', id: 'u1' });
    await publish([
      { topic: 'feed:a', data: { n: 2 } },
      { topic: `user:${sub}`, data: 'barrier' },
    ]);
    t.match(await c.next('notification'), { topic: `user:${sub}`, data: 'barrier' });
    t.same(ofType(c, 'notification'), [], 'feed:a delivered nothing before the barrier');
  });

  t.test('unsubscribing from a topic not held still answers unsubscribed', async (t) => {
    const c = await connect(t, gw, { sub: newUser() });
    t.same(await c.request({ type: 'unsubscribe', topic: 'never:held', id: 9 }), { type: 'unsubscribed', topic: 'never:held', id: 9 });
  });
});

t.test('closes', async (t) => {
  t.test("a binary frame closes with 1003 'binary_not_supported'", async (t) => {
    const c = await connect(t, gw, { sub: newUser() });
    c.ws.send(Buffer.from(JSON.stringify({ type: 'ping', id: 1 })), { binary: true });
    t.same(await c.closed, { code: 1003, reason: 'binary_not_supported' });
    t.same(ofType(c, 'pong'), []);
  });

  for (const text of ['{"type":"ping"', 'hello', '', '{"type":"ping"} trailing']) {
    t.test(`non-JSON text ${JSON.stringify(text)} closes with 1003 'invalid_json'`, async (t) => {
      const c = await connect(t, gw, { sub: newUser() });
      c.send(text);
      t.same(await c.closed, { code: 1003, reason: 'invalid_json' });
    });
  }

  /** A valid ping frame of exactly `bytes` bytes, padded with JSON whitespace. */
  const pingOf = (bytes: number, id: string): string => {
    const head = `{"type":"ping","id":"${id}"`;
    return `${head}${' '.repeat(bytes - head.length - 1)}}`;
  };

  t.test(`a frame of exactly HERALD_MAX_PAYLOAD_BYTES (${MAX_PAYLOAD_BYTES}) is answered`, async (t) => {
    const c = await connect(t, gw, { sub: newUser() });
    const frame = pingOf(MAX_PAYLOAD_BYTES, 'fits');
    t.equal(Buffer.byteLength(frame), MAX_PAYLOAD_BYTES);
    c.send(frame);
    t.match(await c.next('pong'), { id: 'fits' });
  });

  t.test(`a frame one byte over HERALD_MAX_PAYLOAD_BYTES closes with 1009 'message_too_big'`, async (t) => {
    const c = await connect(t, gw, { sub: newUser() });
    const frame = pingOf(MAX_PAYLOAD_BYTES + 1, 'over');
    t.equal(Buffer.byteLength(frame), MAX_PAYLOAD_BYTES + 1);
    JSON.parse(frame); // valid JSON: it is the size alone that closes
    c.send(frame);
    t.same(await c.closed, { code: 1009, reason: 'message_too_big' });
    t.same(ofType(c, 'pong'), []);
  });

  t.test('a frame up to the uWS hard cap (64 KiB here) closes with 1009', async (t) => {
    const c = await connect(t, gw, { sub: newUser() });
    c.send(pingOf(64 * 1024, 'big'));
    t.same(await c.closed, { code: 1009, reason: 'message_too_big' });
  });

  t.test('a frame over the uWS hard cap is dropped by uWS without a close frame (1006), as documented', async (t) => {
    const c = await connect(t, gw, { sub: newUser() });
    c.send(pingOf(64 * 1024 + 1, 'huge'));
    t.same(await c.closed, { code: 1006, reason: '' });
    const other = await connect(t, gw, { sub: newUser() });
    t.match(await other.request({ type: 'ping', id: 'after' }), { type: 'pong', id: 'after' }, 'the gateway serves others');
  });

  t.test('closes are counted by reason in herald_connections_closed_total', async (t) => {
    const before = (await scrape(gw.http)).value('herald_connections_closed_total', { reason: 'invalid_json' });
    const c = await connect(t, gw, { sub: newUser() });
    c.send('not json');
    await c.closed;
    await waitFor(
      'the close to be counted',
      async () => (await scrape(gw.http)).value('herald_connections_closed_total', { reason: 'invalid_json' }) === before + 1,
      3000,
    );
    t.pass('counted once');
  });
});

t.test('the rate limit', async (t) => {
  const rl = await startGateway(baseEnv({ HERALD_RATE_LIMIT_MESSAGES: '5', HERALD_RATE_LIMIT_WINDOW_S: '60' }));
  t.teardown(() => rl.stop());

  t.test('frames 6-10 get rate_limited with retryAfterMs and their id, frame 11 closes with 1008; others are unaffected', async (t) => {
    const before = (await scrape(rl.http)).value('herald_rate_limited_total');
    const noisy = await connect(t, rl, { sub: newUser() });
    const quiet = await connect(t, rl, { sub: newUser() });
    for (let i = 1; i <= 5; i++) t.match(await noisy.request({ type: 'ping', id: i }), { type: 'pong', id: i }, `frame ${i} is served`);
    for (let i = 6; i <= 10; i++) {
      const err = await noisy.request({ type: 'ping', id: i });
      t.match(err, { type: 'error', code: 'rate_limited', id: i }, `frame ${i} is refused`);
      const retry = err['retryAfterMs'] as number;
      t.ok(Number.isInteger(retry) && retry > 0 && retry <= 60_000, `retryAfterMs ${retry} is within the 60 s window`);
    }
    noisy.send({ type: 'ping', id: 11 });
    t.same(await noisy.closed, { code: 1008, reason: 'rate_limited' });
    t.same(noisy.inbox, [], 'frame 11 got no reply');
    t.match(await quiet.request({ type: 'ping', id: 'still-fine' }), { type: 'pong' }, 'another client on the gateway is unaffected');
    t.equal((await scrape(rl.http)).value('herald_rate_limited_total'), before + 5);
  });

  t.test('a fresh connection of the same user gets its own budget', async (t) => {
    const sub = newUser();
    const first = await connect(t, rl, { sub });
    for (let i = 1; i <= 5; i++) await first.request({ type: 'ping', id: i });
    t.match(await first.request({ type: 'ping', id: 6 }), { code: 'rate_limited' });
    const second = await connect(t, rl, { sub });
    t.match(await second.request({ type: 'ping', id: 1 }), { type: 'pong' });
  });
});

t.test('ack and mark_read in Redis mode', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const rgw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url }));
  t.teardown(() => rgw.stop());
  const r = redis.client();
  await rgw.waitForLog((l) => l.msg === 'redis subscription active');
  // The command connection (which XADDs) connects alongside the subscriber; wait until Redis sees it.
  await waitFor('the gateway command connection', async () => String(await r.client('LIST')).includes('name=herald-commands'), 5000);

  /** herald:events entries written by one connection, as field objects. */
  async function eventsOf(connectionId: unknown): Promise<Array<Record<string, string>>> {
    const entries = await r.xrange('herald:events', '-', '+');
    return entries
      .map(([, fields]) => {
        const o: Record<string, string> = {};
        for (let i = 0; i + 1 < fields.length; i += 2) o[fields[i] as string] = fields[i + 1] as string;
        return o;
      })
      .filter((o) => o['connectionId'] === connectionId);
  }

  t.test('with an id they are answered with that id and land in herald:events', async (t) => {
    const c = await connect(t, rgw, { sub: 'reader' });
    const before = Date.now();
    t.same(await c.request({ type: 'ack', notificationId: 'n-1', id: 'a1' }), { type: 'acked', notificationId: 'n-1', id: 'a1' });
    t.same(await c.request({ type: 'mark_read', notificationId: 'n-1', id: 2 }), { type: 'marked_read', notificationId: 'n-1', id: 2 });
    const after = Date.now();
    const events = await eventsOf(c.welcome['connectionId']);
    t.match(events, [
      { type: 'ack', userId: 'reader', notificationId: 'n-1', connectionId: c.welcome['connectionId'] },
      { type: 'mark_read', userId: 'reader', notificationId: 'n-1', connectionId: c.welcome['connectionId'] },
    ]);
    t.equal(events.length, 2);
    for (const e of events) {
      const ts = Number(e['ts']);
      t.ok(ts >= before && ts <= after, `ts ${e['ts']} is the time of the event in ms`);
    }
  });

  t.test('a list of ids: one reply echoing the list, one herald:events entry per distinct id, in order', async (t) => {
    const c = await connect(t, rgw, { sub: 'batcher' });
    const id = c.welcome['connectionId'];
    const notificationIds = ['b-1', 'b-2', 'b-1', 'b-3'];
    t.same(
      await c.request({ type: 'ack', notificationIds, id: 'list' }),
      { type: 'acked', notificationIds, id: 'list' },
      'the list as sent',
    );
    t.same(
      await c.request({ type: 'mark_read', notificationIds: ['b-2'], id: 7 }),
      { type: 'marked_read', notificationIds: ['b-2'], id: 7 },
      'a list of one stays a list',
    );
    t.same(
      (await eventsOf(id)).map((e) => [e['type'], e['userId'], e['notificationId']]),
      [
        ['ack', 'batcher', 'b-1'],
        ['ack', 'batcher', 'b-2'],
        ['ack', 'batcher', 'b-3'],
        ['mark_read', 'batcher', 'b-2'],
      ],
      'a repeated id is recorded once',
    );
    const ts = new Set((await eventsOf(id)).filter((e) => e['type'] === 'ack').map((e) => e['ts']));
    t.equal(ts.size, 1, 'the entries of one frame share its time');
  });

  t.test('a list over MAX_ACK_IDS (100), empty, or beside notificationId is invalid_message and records nothing', async (t) => {
    const c = await connect(t, rgw, { sub: 'oversize' });
    const many = Array.from({ length: 101 }, (_, i) => `o-${i}`);
    t.match(await c.request({ type: 'ack', notificationIds: many, id: 1 }), { type: 'error', code: 'invalid_message', id: 1 });
    t.match(await c.request({ type: 'mark_read', notificationIds: [], id: 2 }), { type: 'error', code: 'invalid_message', id: 2 });
    t.match(await c.request({ type: 'ack', notificationId: 'o-0', notificationIds: ['o-1'], id: 3 }), {
      type: 'error',
      code: 'invalid_message',
      id: 3,
    });
    t.same(await eventsOf(c.welcome['connectionId']), [], 'nothing in herald:events');
  });

  t.test('a 300-id backlog acked in 3 frames of 100 stays within the default rate limit: each frame counts once', async (t) => {
    const before = (await scrape(rgw.http)).value('herald_client_events_total', { type: 'ack', outcome: 'recorded' });
    const c = await connect(t, rgw, { sub: 'backlog' });
    for (let f = 0; f < 3; f++) {
      const notificationIds = Array.from({ length: 100 }, (_, i) => `bl-${f * 100 + i}`);
      t.same(await c.request({ type: 'ack', notificationIds, id: f }), { type: 'acked', notificationIds, id: f }, `frame ${f + 1}`);
    }
    const events = await eventsOf(c.welcome['connectionId']);
    t.same(
      events.map((e) => e['notificationId']),
      Array.from({ length: 300 }, (_, i) => `bl-${i}`),
      '300 entries, in order',
    );
    t.equal((await scrape(rgw.http)).value('herald_client_events_total', { type: 'ack', outcome: 'recorded' }), before + 300);
    // The default limit is 100 frames a minute: the 3 acks took 3, so 97 more are served
    // and the 101st frame is the first refused.
    for (let i = 0; i < 97; i++) c.send({ type: 'ping', id: `p${i}` });
    t.match(await c.request({ type: 'ping', id: 'last' }), { type: 'error', code: 'rate_limited', id: 'last' }, 'frame 101 is refused');
    t.equal(c.inbox.filter((f) => f.type === 'pong').length, 97, 'frames 4-100 were served');
  });

  t.test('without an id they get no reply but still land in herald:events', async (t) => {
    const c = await connect(t, rgw, { sub: 'silent' });
    c.send({ type: 'ack', notificationId: 'n-2' });
    c.send({ type: 'mark_read', notificationId: 'n-3' });
    // Events are recorded in order, so the barrier's reply comes after any reply to the two above.
    t.match(await c.request({ type: 'ack', notificationId: 'n-4', id: 'barrier' }), { type: 'acked', id: 'barrier' });
    t.same(c.inbox, [], 'no reply to the frames without id');
    const events = await eventsOf(c.welcome['connectionId']);
    t.same(
      events.map((e) => [e['type'], e['userId'], e['notificationId']]),
      [
        ['ack', 'silent', 'n-2'],
        ['mark_read', 'silent', 'n-3'],
        ['ack', 'silent', 'n-4'],
      ],
    );
  });
});

t.test('ack and mark_read in embedded mode', async (t) => {
  t.test('with an id they are answered with that id; without, nothing is sent and the connection carries on', async (t) => {
    const before = (await scrape(gw.http)).value('herald_client_events_total', { type: 'ack', outcome: 'discarded' });
    const c = await connect(t, gw, { sub: newUser() });
    t.same(await c.request({ type: 'ack', notificationId: 'e-1', id: 'a' }), { type: 'acked', notificationId: 'e-1', id: 'a' });
    t.same(await c.request({ type: 'mark_read', notificationId: 'e-1', id: 1 }), { type: 'marked_read', notificationId: 'e-1', id: 1 });
    c.send({ type: 'ack', notificationId: 'e-2' });
    c.send({ type: 'mark_read', notificationId: 'e-2' });
    await barrier(c);
    t.same(c.inbox, [], 'no reply without an id');
    t.equal((await scrape(gw.http)).value('herald_client_events_total', { type: 'ack', outcome: 'discarded' }), before + 2);
  });

  t.test('a list of ids gets one reply echoing it, each id counted as discarded', async (t) => {
    const before = (await scrape(gw.http)).value('herald_client_events_total', { type: 'mark_read', outcome: 'discarded' });
    const c = await connect(t, gw, { sub: newUser() });
    const notificationIds = ['e-1', 'e-2', 'e-3'];
    t.same(await c.request({ type: 'mark_read', notificationIds, id: 'l' }), { type: 'marked_read', notificationIds, id: 'l' });
    t.equal((await scrape(gw.http)).value('herald_client_events_total', { type: 'mark_read', outcome: 'discarded' }), before + 3);
  });
});

t.test('history in embedded mode: history_unavailable, even for a topic the connection holds', async (t) => {
  const sub = newUser();
  const c = await connect(t, gw, { sub });
  await publish([{ topic: `user:${sub}`, data: { id: 'live' } }]);
  await c.next('notification');
  t.match(await c.request({ type: 'history', topic: `user:${sub}`, id: 'h' }), {
    type: 'error',
    code: 'history_unavailable',
    id: 'h',
  });
  t.match(await c.request({ type: 'history', topic: 'system', limit: 5, id: 2 }), { type: 'error', code: 'history_unavailable', id: 2 });
  t.match(await c.request({ type: 'ping', id: 3 }), { type: 'pong' }, 'the connection carries on');
  t.ok((await scrape(gw.http)).value('herald_history_requests_total', { result: 'history_off' }) >= 2);
});

/** Resolves with `p`, or rejects naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

t.test(
  `with HERALD_IDLE_TIMEOUT_S=${IDLE_TIMEOUT_S}: heartbeatMs is 4000, a client answering pings stays, a silent one is closed`,
  async (t) => {
    const live = await connect(t, gw, { sub: newUser() });
    t.equal(live.welcome['heartbeatMs'], (IDLE_TIMEOUT_S * 1000) / 2, 'half the idle timeout, in ms');
    const pinged = new Promise<number>((resolve) => live.ws.once('ping', () => resolve(Date.now())));

    // A client whose network died: it never answers the server's pings.
    const silent = new WebSocket(gw.ws, { headers: { authorization: `Bearer ${await token({ sub: newUser() })}` }, autoPong: false });
    t.teardown(() => silent.terminate());
    const silentClosed = new Promise<number>((resolve) => silent.once('close', () => resolve(Date.now())));
    await within(
      new Promise((resolve, reject) => {
        silent.once('open', resolve);
        silent.once('error', reject);
      }),
      3000,
      'open',
    );
    const opened = Date.now();

    t.ok((await within(pinged, 12_000, 'protocol ping to the live client')) > 0, 'the server pings');
    const closedAt = await within(silentClosed, 16_000, 'close of the silent client');
    const after = closedAt - opened;
    t.comment(`silent client closed after ${after} ms`);
    // uWS pings after (idle timeout - 4 s) of silence and closes 4 s later if nothing came
    // back; its clock ticks every 4 s, so the silent client goes somewhere in 4-12 s. The
    // lower bound (with slack for the ticks) shows it was the timeout, not the upgrade, that closed it.
    t.ok(after >= 3000 && after <= IDLE_TIMEOUT_S * 1000 + 4000, `closed after ${after} ms`);
    t.equal(live.ws.readyState, WebSocket.OPEN, 'the client that answered pings is still open');
    await barrier(live);
  },
);

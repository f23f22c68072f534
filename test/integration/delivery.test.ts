// Delivery in Redis mode: a backend PUBLISHes to `notifications:<topic>` and the
// gateway hands one frame to uWS per message. One private redis-server and one
// gateway serve the whole file; each test uses its own user ids so nothing leaks
// between tests. "Did not receive" is always proven with a barrier: publish the
// thing, then a barrier the client must get; uWS keeps order per connection, so
// when the barrier arrives nothing else may have.
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const MAX_NOTIFICATION_BYTES = 1024;

const redis = await startRedis();
t.teardown(() => redis.close());
const gw = await startGateway(
  baseEnv({
    HERALD_REDIS_URL: redis.url,
    HERALD_MAX_NOTIFICATION_BYTES: String(MAX_NOTIFICATION_BYTES),
  }),
);
t.teardown(() => gw.stop());
await gw.waitForLog((l) => l.msg === 'redis subscription active');
const pub = redis.client();

type Client = TestClient & { welcome: Frame };

/** Printable, ASCII-only form of a payload for assertion messages (a raw U+2028 breaks TAP lines). */
const show = (s: string): string =>
  JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** A fresh user id, so tests never see each other's notifications. */
const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

async function connect(t: Test, claims: { sub: string; roles?: string[]; topics?: string[] }): Promise<Client> {
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token(claims)}` } });
  t.teardown(() => c.close());
  return c;
}

function publish(topic: string, payload: string): Promise<number> {
  return pub.publish(`notifications:${topic}`, payload);
}

/**
 * Publishes a barrier to `user:<userId>` and asserts it is the very next frame each
 * client gets and that nothing else is waiting in the inbox.
 */
async function barrier(t: Test, userId: string, ...clients: Client[]): Promise<void> {
  const marker = randomUUID();
  await publish(`user:${userId}`, JSON.stringify({ barrier: marker }));
  for (const c of clients) {
    const f = await c.next('*');
    t.same(f['data'], { barrier: marker }, 'the barrier is the next frame: nothing was delivered before it');
    t.same(c.inbox, [], 'and nothing else is waiting');
  }
}

t.test('a notification published on user:<sub> reaches that user with its topic, id, ts and data', async (t) => {
  const alice = uid('alice');
  const c = await connect(t, { sub: alice });
  const receivers = await publish(`user:${alice}`, '{"title":"hi"}');
  t.equal(receivers, 1, 'the gateway is the one subscriber of the channel');
  const n = await c.next('notification');
  t.equal(n['topic'], `user:${alice}`);
  t.same(n['data'], { title: 'hi' });
  t.type(n['id'], 'string');
  t.type(n['ts'], 'number');
  await barrier(t, alice, c);
});

t.test("user A never receives user B's notification", async (t) => {
  const a = uid('a');
  const b = uid('b');
  const ca = await connect(t, { sub: a });
  const cb = await connect(t, { sub: b });
  await publish(`user:${b}`, '{"secret":"for b only"}');
  t.same((await cb.next('notification'))['data'], { secret: 'for b only' }, 'B gets it');
  await barrier(t, a, ca);
});

t.test('role:admin reaches only the clients whose token has the admin role', async (t) => {
  const admin = uid('admin');
  const plain = uid('plain');
  const ops = uid('ops');
  const ca = await connect(t, { sub: admin, roles: ['admin', 'ops'] });
  const cp = await connect(t, { sub: plain });
  const co = await connect(t, { sub: ops, roles: ['ops'] });
  t.same(ca.welcome['topics'], [`user:${admin}`, 'role:admin', 'role:ops', 'system']);
  await publish('role:admin', '{"to":"admins"}');
  const n = await ca.next('notification');
  t.equal(n['topic'], 'role:admin');
  t.same(n['data'], { to: 'admins' });
  await barrier(t, admin, ca);
  await barrier(t, plain, cp);
  await barrier(t, ops, co);
});

t.test('system reaches every connected user, whatever their roles', async (t) => {
  const users = [uid('s1'), uid('s2'), uid('s3')];
  const clients = [
    await connect(t, { sub: users[0] as string }),
    await connect(t, { sub: users[1] as string, roles: ['admin'] }),
    await connect(t, { sub: users[2] as string, topics: ['feed:*'] }),
  ];
  await publish('system', '{"maintenance":"tonight"}');
  for (const [i, c] of clients.entries()) {
    const n = await c.next('notification');
    t.equal(n['topic'], 'system');
    t.same(n['data'], { maintenance: 'tonight' });
    await barrier(t, users[i] as string, c);
  }
});

t.test('a claimed topic is delivered after subscribe, and only to clients subscribed to it', async (t) => {
  const rio = uid('rio');
  const other = uid('other');
  const cr = await connect(t, { sub: rio, topics: ['org:rio', 'feed:*'] });
  const co = await connect(t, { sub: other, topics: ['org:rio'] });
  t.notOk((cr.welcome['topics'] as string[]).includes('org:rio'), 'a claim grants the topic but does not subscribe to it');

  await publish('org:rio', '{"n":0}');
  await barrier(t, rio, cr);

  t.same(await cr.request({ type: 'subscribe', topic: 'org:rio', id: 1 }), { type: 'subscribed', topic: 'org:rio', id: 1 });
  t.same(await cr.request({ type: 'subscribe', topic: 'feed:news', id: 2 }), { type: 'subscribed', topic: 'feed:news', id: 2 });
  await publish('org:rio', '{"n":1}');
  await publish('feed:news', '{"n":2}');
  const a = await cr.next('notification');
  const b = await cr.next('notification');
  t.same([a['topic'], a['data']], ['org:rio', { n: 1 }]);
  t.same([b['topic'], b['data']], ['feed:news', { n: 2 }], 'a prefix grant (feed:*) covers feed:news');
  await barrier(t, rio, cr);
  await barrier(t, other, co);
});

t.test('a lookalike prefix channel (notificationsX:...) reaches nobody: the gateway does not even receive it', async (t) => {
  const a = uid('a');
  const c = await connect(t, { sub: a });
  const before = await scrape(gw.http);
  t.equal(await pub.publish(`notificationsX:user:${a}`, '{"n":1}'), 0, 'no subscriber matches the channel');
  t.equal(await pub.publish(`notification:user:${a}`, '{"n":2}'), 0, 'nor a shorter prefix');
  await barrier(t, a, c);
  const after = await scrape(gw.http);
  const received = (m: typeof after, source: string) => m.value('herald_redis_messages_total', { source });
  t.equal(received(after, 'pattern') - received(before, 'pattern'), 1, 'its recorder received only the barrier');
  t.equal(received(after, 'topic') - received(before, 'topic'), 1, 'and so did its topic subscription');
});

t.test('a notification for a topic nobody here holds is recorded, but Redis does not route it to the gateway', async (t) => {
  const away = uid('away');
  const before = await scrape(gw.http);
  t.equal(await publish(`user:${away}`, JSON.stringify({ id: randomUUID() })), 1, 'the recorder receives it');
  // No client can witness it, so wait until the recorder has recorded it.
  const recorded = (m: typeof before) => m.value('herald_history_writes_total', { result: 'recorded' });
  await waitFor('the message to be recorded', async () => recorded(await scrape(gw.http)) - recorded(before) === 1, 3000, 20);
  const after = await scrape(gw.http);
  const received = (m: typeof after) => m.value('herald_redis_messages_total', { source: 'topic' });
  t.equal(received(after) - received(before), 0, 'nothing arrived on a topic subscription');
  t.equal(after.value('herald_notifications_unrouted_total') - before.value('herald_notifications_unrouted_total'), 0);
  t.equal(after.value('herald_notifications_published_total') - before.value('herald_notifications_published_total'), 0);
});

t.test('a channel whose topic breaks the grammar delivers nothing and counts as dropped invalid_topic', async (t) => {
  const a = uid('a');
  const c = await connect(t, { sub: a });
  const before = await scrape(gw.http);
  const bad = [
    'notifications:',
    `notifications:user:${a} `,
    `notifications:user:${a}*`,
    `notifications:user:${a}\n`,
    'notifications:user:é',
    `notifications:user:${'x'.repeat(124)}`, // 129 characters of topic
  ];
  for (const channel of bad) t.equal(await pub.publish(channel, '{"n":1}'), 1, `${show(channel)} matches the pattern`);
  await barrier(t, a, c);
  const after = await scrape(gw.http);
  const dropped = (m: typeof after) => m.value('herald_notifications_dropped_total', { reason: 'invalid_topic' });
  t.equal(dropped(after) - dropped(before), bad.length, 'each one is counted once');
  t.equal(
    after.value('herald_notifications_published_total') - before.value('herald_notifications_published_total'),
    1,
    'only the barrier was published',
  );
});

t.test('the same payload id twice on one topic is delivered once: the repeat is found recorded, not announced', async (t) => {
  const a = uid('dup');
  const c = await connect(t, { sub: a });
  const before = await scrape(gw.http);
  const id = randomUUID();
  await publish(`user:${a}`, JSON.stringify({ id, n: 1 }));
  await publish(`user:${a}`, JSON.stringify({ id, n: 2 }));
  const n = await c.next('notification');
  t.equal(n['id'], id);
  t.same(n['data'], { id, n: 1 }, 'the first one wins');
  await barrier(t, a, c);
  const after = await scrape(gw.http);
  const found = (m: typeof after) => m.value('herald_history_writes_total', { result: 'found' });
  t.equal(found(after) - found(before), 1);
});

t.test('the same payload id on two topics is delivered on both', async (t) => {
  const a = uid('two');
  const c = await connect(t, { sub: a, roles: ['two-topics'] });
  const id = randomUUID();
  await publish(`user:${a}`, JSON.stringify({ id, on: 'user' }));
  await publish('role:two-topics', JSON.stringify({ id, on: 'role' }));
  const first = await c.next('notification');
  const second = await c.next('notification');
  t.same([first['topic'], first['id'], first['data']], [`user:${a}`, id, { id, on: 'user' }]);
  t.same([second['topic'], second['id'], second['data']], ['role:two-topics', id, { id, on: 'role' }]);
  await barrier(t, a, c);
});

t.test('payloads without an id are never deduplicated', async (t) => {
  const a = uid('noid');
  const c = await connect(t, { sub: a });
  const payloads = ['{"title":"same"}', '{"title":"same"}', 'plain text', 'plain text', '{"id":7}', '{"id":7}'];
  for (const p of payloads) await publish(`user:${a}`, p);
  const got: Frame[] = [];
  for (const _ of payloads) got.push(await c.next('notification'));
  t.same(
    got.map((f) => f['data']),
    [{ title: 'same' }, { title: 'same' }, 'plain text', 'plain text', { id: 7 }, { id: 7 }],
  );
  t.equal(new Set(got.map((f) => f['id'])).size, payloads.length, 'each gets its own generated id');
  await barrier(t, a, c);
});

t.test('a payload that is not JSON arrives as a string in data', async (t) => {
  const a = uid('text');
  const c = await connect(t, { sub: a });
  const rows = ['hello world', '{not json', '', '{"a":1}}', 'NaN', "{'single':'quotes'}", '"unterminated', '<b>&amp;</b>\u2028'];
  for (const p of rows) await publish(`user:${a}`, p);
  for (const p of rows) t.equal((await c.next('notification'))['data'], p, `${show(p)} arrives verbatim`);
  await barrier(t, a, c);
});

t.test('JSON strings, arrays, numbers, booleans and null arrive as such', async (t) => {
  const a = uid('json');
  const c = await connect(t, { sub: a });
  const rows: Array<[string, unknown]> = [
    ['"text"', 'text'],
    ['[1,"two",{"three":3}]', [1, 'two', { three: 3 }]],
    ['42', 42],
    ['-1.5e3', -1500],
    ['true', true],
    ['null', null],
    ['  {"padded":true}\n', { padded: true }],
    ['"{\\"nested\\":1}"', '{"nested":1}'],
  ];
  for (const [p] of rows) await publish(`user:${a}`, p);
  for (const [p, want] of rows) t.same((await c.next('notification'))['data'], want, `${show(p)} arrives as ${JSON.stringify(want)}`);
  await barrier(t, a, c);
});

t.test("a payload's string id becomes the notification id; anything else gets a generated id", async (t) => {
  const a = uid('ids');
  const c = await connect(t, { sub: a });
  const own = `order-${randomUUID()}`;
  await publish(`user:${a}`, JSON.stringify({ id: own, title: 'x' }));
  t.equal((await c.next('notification'))['id'], own, 'an object with a string id keeps it');

  const generatedFor = [
    '{"title":"no id"}',
    '{"id":12345}',
    '{"id":""}',
    JSON.stringify({ id: 'x'.repeat(129) }),
    '[{"id":"in-an-array"}]',
    '"id"',
    'id=plain-text',
  ];
  for (const p of generatedFor) await publish(`user:${a}`, p);
  const ids: string[] = [];
  for (const p of generatedFor) {
    const id = (await c.next('notification'))['id'];
    t.type(id, 'string', `${p.slice(0, 40)} gets a string id`);
    t.not(id, 'in-an-array');
    t.ok(typeof id === 'string' && id.length > 0 && id.length <= 128, 'a non-empty bounded id');
    ids.push(id as string);
  }
  t.equal(new Set(ids).size, ids.length, 'generated ids are unique');
  t.notOk(ids.includes(own));
  await barrier(t, a, c);
});

t.test('ts is the receipt time, close to now', async (t) => {
  const a = uid('ts');
  const c = await connect(t, { sub: a });
  const before = Date.now();
  await publish(`user:${a}`, '{"t":1}');
  const n = await c.next('notification');
  const after = Date.now();
  t.ok(Number.isInteger(n['ts']), 'an integer number of ms');
  t.ok((n['ts'] as number) >= before - 50 && (n['ts'] as number) <= after + 50, `ts ${String(n['ts'])} within [${before}, ${after}]`);
});

t.test('a payload over HERALD_MAX_NOTIFICATION_BYTES is dropped and counted as too_large', async (t) => {
  const a = uid('big');
  const c = await connect(t, { sub: a });
  const before = await scrape(gw.http);
  const atLimit = 'x'.repeat(MAX_NOTIFICATION_BYTES);
  await publish(`user:${a}`, atLimit);
  t.equal((await c.next('notification'))['data'], atLimit, 'exactly the limit is delivered');

  await publish(`user:${a}`, 'x'.repeat(MAX_NOTIFICATION_BYTES + 1));
  // 517 characters but 1026 UTF-8 bytes: the limit is in bytes, not characters.
  await publish(`user:${a}`, JSON.stringify({ t: 'é'.repeat(509) }));
  await barrier(t, a, c);
  const after = await scrape(gw.http);
  const big = (m: typeof after) => m.value('herald_notifications_dropped_total', { reason: 'too_large' });
  t.equal(big(after) - big(before), 2);
});

t.test('every connection of one user receives the notification exactly once', async (t) => {
  const a = uid('multi');
  const clients: Client[] = [];
  for (let i = 0; i < 6; i++) clients.push(await connect(t, { sub: a }));
  const before = await scrape(gw.http);
  const id = randomUUID();
  t.equal(await publish(`user:${a}`, JSON.stringify({ id })), 1, 'one PUBLISH, whatever the number of connections');
  for (const c of clients) t.equal((await c.next('notification'))['id'], id);
  await barrier(t, a, ...clients);
  const after = await scrape(gw.http);
  t.equal(
    after.value('herald_messages_sent_total') - before.value('herald_messages_sent_total'),
    2 * clients.length,
    'the notification and the barrier, once per connection',
  );
});

// Durable delivery: every notification is recorded once in its topic's history
// stream (plain PUBLISH through the gateways, or herald_publish in one step), frames
// carry their position, `resume` replays what a client missed or says it cannot,
// and a gateway whose subscription dropped fills the gap for its own clients.
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, type GatewayProcess, ROOT, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { type RedisServer, startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const PUBLISH_KEY = 'history-test-publish-key-0123456789';

type Client = TestClient & { welcome: Frame };
const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

async function gateway(t: Test, redis: { url: string }, extra: Record<string, string> = {}): Promise<GatewayProcess> {
  const gw = await startGateway(
    baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_PUBLISH_KEY: PUBLISH_KEY, HERALD_LOG_LEVEL: 'info', ...extra }),
  );
  t.teardown(() => gw.stop());
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  return gw;
}

async function connect(t: Test, gw: GatewayProcess, sub: string, topics: string[] = []): Promise<Client> {
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token({ sub, topics })}` } });
  t.teardown(() => c.close());
  return c;
}

type Entry = { offset: string; fields: Record<string, string> };
/** The topic's history stream in namespace `ns` (keys carry the topic as a hash tag). */
async function history(redis: RedisServer, topic: string, ns = 'herald'): Promise<Entry[]> {
  const raw = (await redis.client().xrange(`${ns}:history:{${topic}}`, '-', '+')) as Array<[string, string[]]>;
  return raw.map(([offset, f]) => ({
    offset,
    fields: Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i], f[2 * i + 1]])),
  }));
}

const redis = await startRedis();
t.teardown(() => redis.close());
const pub = redis.client();

t.test(
  'a gateway that takes a recorder slot is ready only once its pattern is subscribed: a plain PUBLISH sent then is recorded',
  async (t) => {
    for (let i = 0; i < 3; i++) {
      const own = await startRedis();
      const admin = own.client();
      const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: own.url, HERALD_LOG_LEVEL: 'info' }));
      // Ready (the log line comes with the first readiness) already knowing its slot: the
      // only gateway on this Redis takes slot 0, and readiness waited for its pattern.
      const ready = await gw.waitForLog((l) => l.msg === 'redis subscription active');
      t.equal(ready['recorderSlot'], 0, `start ${i}: ready holding recorder slot 0`);
      await waitFor('/readyz 200', async () => (await fetch(`${gw.http}/readyz`)).status === 200, 10_000, 2);
      t.equal(
        await admin.publish('notifications:user:early', JSON.stringify({ id: `early-${i}` })),
        1,
        `start ${i}: the first PUBLISH after ready reaches the recorder's pattern`,
      );
      await waitFor('the entry', async () => (await admin.xlen('herald:history:{user:early}')) === 1, 5000, 20);
      t.pass(`start ${i}: and is recorded`);
      await gw.stop();
      await own.close();
    }
  },
);

t.test('a plain PUBLISH is recorded once and delivered with its position; connected carries the epoch', async (t) => {
  const gw = await gateway(t, redis);
  const sub = uid('pos');
  const c = await connect(t, gw, sub);
  t.match(c.welcome['epoch'], /^[0-9a-f]+$/, 'connected names the epoch');
  await pub.publish(`notifications:user:${sub}`, JSON.stringify({ id: 'n-1', title: 'hi' }));
  await pub.publish(`notifications:user:${sub}`, JSON.stringify({ title: 'no id' }));
  const [a, b] = [await c.next('notification'), await c.next('notification')];
  t.equal(a['id'], 'n-1');
  t.match(a['offset'], /^\d+-\d+$/);
  t.equal(a['epoch'], c.welcome['epoch']);
  t.same(a['data'], { id: 'n-1', title: 'hi' });
  t.equal(a['ts'], Number(String(a['offset']).split('-')[0]), 'ts is the entry time');
  t.match(b['id'], /^\d+-\d+@[0-9a-f]{8}$/, 'an id-less payload gets an id derived from its entry');
  t.ok(String(b['offset']) > String(a['offset']) || String(b['offset']).length > String(a['offset']).length, 'offsets increase');
  const entries = await history(redis, `user:${sub}`);
  t.same(
    entries.map((e) => e.offset),
    [a['offset'], b['offset']],
  );
  t.same(
    entries[0]?.fields,
    { d: JSON.stringify({ id: 'n-1', title: 'hi' }), i: 'n-1', k: 'j' },
    'the payload as sent, its id, and that the recorder found it JSON',
  );
  const ttl = await pub.pttl(`herald:history:{user:${sub}}`);
  t.ok(ttl > 0 && ttl <= 300_000, `the stream expires when the topic goes quiet (pttl ${ttl})`);
});

t.test('with two gateways a plain PUBLISH is recorded once, and both deliver the same id and offset', async (t) => {
  const [g1, g2] = [await gateway(t, redis), await gateway(t, redis)];
  const sub = uid('two');
  const [c1, c2] = [await connect(t, g1, sub), await connect(t, g2, sub)];
  for (let i = 0; i < 20; i++) await pub.publish(`notifications:user:${sub}`, JSON.stringify({ n: i }));
  const got1: Frame[] = [];
  const got2: Frame[] = [];
  for (let i = 0; i < 20; i++) {
    got1.push(await c1.next('notification'));
    got2.push(await c2.next('notification'));
  }
  t.same(
    got1.map((f) => [f['id'], f['offset']]),
    got2.map((f) => [f['id'], f['offset']]),
    'same ids and offsets on both gateways',
  );
  t.equal((await history(redis, `user:${sub}`)).length, 20, 'twenty entries, not forty');
});

t.test('with two gateways: one entry per topic and payload id; an id-less payload published twice is two entries', async (t) => {
  const [g1, g2] = [await gateway(t, redis), await gateway(t, redis)];
  const sub = uid('ids');
  const topic = `user:${sub}`;
  const [c1, c2] = [await connect(t, g1, sub), await connect(t, g2, sub)];
  const sent = [{ id: 'd-1', v: 1 }, { id: 'd-1', v: 2 }, { x: 1 }, { x: 1 }, { id: 'd-2' }];
  for (const p of sent) await pub.publish(`notifications:${topic}`, JSON.stringify(p));
  await waitFor('four entries recorded', async () => (await history(redis, topic)).length >= 4);
  const entries = await history(redis, topic);
  t.same(
    entries.map((e) => e.fields['d']),
    ['{"id":"d-1","v":1}', '{"x":1}', '{"x":1}', '{"id":"d-2"}'],
    'the second d-1 maps to the first',
  );
  for (const c of [c1, c2]) {
    const got = [await c.next('notification'), await c.next('notification'), await c.next('notification'), await c.next('notification')];
    t.same(
      got.map((f) => f['offset']),
      entries.map((e) => e.offset),
      'each gateway delivers each entry once, with its offset',
    );
    t.equal(new Set(got.map((f) => f['id'])).size, 4, 'four distinct ids');
  }
  t.equal(await pub.exists(`herald:seen:{${topic}}#d-1`), 1, 'the id keys the seen entry');
  const again = (await pub.call('FCALL', 'herald_publish', '1', topic, JSON.stringify({ id: 'd-1', v: 3 }))) as string[];
  t.same(again.slice(0, 2), [entries[0]?.offset, 'd-1'], 'herald_publish with a recorded id answers that entry');
  t.equal((await history(redis, topic)).length, 4, 'and adds none');
});

t.test('herald_publish and POST /publish record and publish in one step', async (t) => {
  const gw = await gateway(t, redis);
  const sub = uid('fcall');
  const c = await connect(t, gw, sub);
  const reply = (await pub.call('FCALL', 'herald_publish', '1', `user:${sub}`, JSON.stringify({ id: 'f-1' }))) as string[];
  t.equal(reply.length, 3, 'offset, id, epoch');
  const f = await c.next('notification');
  t.same([f['offset'], f['id'], f['epoch']], reply);
  const r = await fetch(`${gw.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ topic: `user:${sub}`, data: { id: 'p-1' } }),
  });
  t.equal(r.status, 202);
  const g = await c.next('notification');
  t.equal(g['id'], 'p-1');
  t.same(
    (await history(redis, `user:${sub}`)).map((e) => e.fields['i']),
    ['f-1', 'p-1'],
    'each recorded once, in order',
  );
});

t.test('the Redis ACL documented in docs/DELIVERY.md is enough for a gateway; herald_publish also needs its topics as keys', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs/DELIVERY.md'), 'utf8');
  const rule = /^\s*user herald on >LONG-RANDOM-PASSWORD (.+)$/m.exec(doc)?.[1];
  if (rule === undefined) throw new Error('no ACL rule in docs/DELIVERY.md');
  t.ok(readFileSync(join(ROOT, 'docs/SECURITY.md'), 'utf8').includes(rule), 'docs/SECURITY.md shows the same rule');
  const admin = redis.client();
  await admin.call('ACL', 'SETUSER', 'herald', 'reset', 'on', '>acl-test-password', ...rule.split(' '));
  t.teardown(() => admin.call('ACL', 'DELUSER', 'herald'));
  const url = redis.url.replace('redis://', 'redis://herald:acl-test-password@');
  const controlKey = 'acl-test-control-key-0123456789';
  const gw = await gateway(t, { url }, { HERALD_CONTROL_KEY: controlKey });
  const sub = uid('acl');
  const topic = `user:${sub}`;
  const c = await connect(t, gw, sub);
  await pub.publish(`notifications:${topic}`, JSON.stringify({ id: 'acl-1' }));
  const first = await c.next('notification');
  t.match(first['offset'], /^\d+-\d+$/, 'recorded through herald_record');
  await pub.publish(`notifications:${topic}`, JSON.stringify({ id: 'acl-2' }));
  await c.next('notification');
  const reply = await c.request({ type: 'resume', epoch: c.welcome['epoch'], topics: { [topic]: { offset: first['offset'] } }, id: 1 });
  t.same(reply['topics'], { [topic]: { recovered: true } }, 'resume reads the history');
  const replayed = await c.next('notification');
  t.same([replayed['id'], replayed['replayed']], ['acl-2', true], 'and replays from it');
  t.equal((await c.request({ type: 'ack', notificationId: 'acl-1', id: 2 }))['type'], 'acked', 'client events reach herald:events');
  t.same(
    ((await c.request({ type: 'history', topic, id: 3 }))['notifications'] as Array<Record<string, unknown>>).map((n) => n['id']),
    ['acl-1', 'acl-2'],
    'history requests read it too',
  );
  t.match(
    await c.request({ type: 'ack', notificationIds: ['acl-1', 'acl-2'], id: 4 }),
    { type: 'acked', notificationIds: ['acl-1', 'acl-2'] },
    'and a list of acks',
  );
  const post = (): Promise<Response> =>
    fetch(`${gw.http}/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ topic, data: { id: 'acl-3' } }),
    });
  t.equal((await post()).status, 503, 'without key permission on the topic, herald_publish is refused');
  await admin.call('ACL', 'SETUSER', 'herald', '%RW~user:*');
  t.equal((await post()).status, 202, 'with %RW~user:* it publishes');
  t.equal((await c.next('notification'))['id'], 'acl-3');

  // Presence and control run a script whose commands the rule must allow too.
  const control = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${gw.http}${path}`, { ...init, headers: { authorization: `Bearer ${controlKey}` } });
  await waitFor(
    'the presence of the connection',
    async () => {
      const p = (await (await control(`/presence?user=${sub}&topic=${topic}`)).json()) as Record<string, Record<string, unknown>>;
      return (
        JSON.stringify(p) ===
        JSON.stringify({ users: { [sub]: { online: true, connections: 1 } }, topics: { [topic]: { connections: 1 } } })
      );
    },
    5000,
  );
  t.pass('presence is written and read');
  const revoked = await control('/control/revoke', { method: 'POST', body: JSON.stringify({ user: sub }) });
  t.equal(revoked.status, 200, 'a revocation is stored and published');
  const m = await scrape(gw.http);
  t.equal(m.value('herald_presence_flushes_total', { result: 'failed' }), 0, 'no presence write was refused');
  t.ok(m.value('herald_admission_checks_total', { where: 'redis' }) >= 1, 'admission was checked in Redis');
  t.equal(m.value('herald_admission_checks_total', { where: 'local' }), 0, 'never locally for want of a permission');
});

t.test('resume', async (t) => {
  const gw = await gateway(t, redis, { HERALD_RECOVERY_MAX: '5' });
  const sub = uid('resume');
  const topic = `user:${sub}`;
  const first = await connect(t, gw, sub);
  const epoch = first.welcome['epoch'] as string;
  await pub.publish(`notifications:${topic}`, JSON.stringify({ id: 'r-1' }));
  const seen = await first.next('notification');
  await first.close();
  for (const id of ['r-2', 'r-3', 'r-4']) await pub.publish(`notifications:${topic}`, JSON.stringify({ id }));
  await waitFor('three more entries', async () => (await history(redis, topic)).length === 4, 5000);

  t.test('replays what was missed after an offset, in order, marked replayed, then says recovered', async (t) => {
    const c = await connect(t, gw, sub);
    const reply = await c.request({ type: 'resume', epoch, topics: { [topic]: { offset: seen['offset'] } }, id: 'res' });
    t.same(reply, { type: 'resumed', topics: { [topic]: { recovered: true } }, id: 'res' });
    const replayed = c.inbox.filter((f) => f.type === 'notification');
    t.same(
      replayed.map((f) => f['id']),
      ['r-2', 'r-3', 'r-4'],
    );
    t.ok(
      replayed.every((f) => f['replayed'] === true && f['epoch'] === epoch),
      'each marked replayed, with the epoch',
    );
  });

  t.test('a since time replays everything newer', async (t) => {
    const c = await connect(t, gw, sub);
    const reply = await c.request({
      type: 'resume',
      epoch,
      topics: { [topic]: { since: Number(String(seen['offset']).split('-')[0]) } },
      id: 1,
    });
    t.same(reply['topics'], { [topic]: { recovered: true } });
    t.same(
      c.inbox.filter((f) => f.type === 'notification').map((f) => f['id']),
      ['r-1', 'r-2', 'r-3', 'r-4'],
    );
  });

  t.test('nothing missed: recovered with no replay', async (t) => {
    const last = (await history(redis, topic)).at(-1)?.offset as string;
    const c = await connect(t, gw, sub);
    const reply = await c.request({ type: 'resume', epoch, topics: { [topic]: { offset: last } }, id: 2 });
    t.same(reply['topics'], { [topic]: { recovered: true } });
    t.equal(c.inbox.filter((f) => f.type === 'notification').length, 0);
  });

  t.test('another epoch, a topic not held, more than HERALD_RECOVERY_MAX: recovered false, nothing replayed', async (t) => {
    const c = await connect(t, gw, sub);
    const other = await c.request({ type: 'resume', epoch: 'feedface', topics: { [topic]: { offset: seen['offset'] } }, id: 3 });
    t.same(other['topics'], { [topic]: { recovered: false } }, 'epoch changed');
    const notHeld = await c.request({ type: 'resume', epoch, topics: { 'user:someone-else': { since: 0 } }, id: 4 });
    t.same(notHeld['topics'], { 'user:someone-else': { recovered: false } }, 'a topic the connection does not hold');
    for (let i = 5; i <= 10; i++) await pub.publish(`notifications:${topic}`, JSON.stringify({ id: `r-${i}` }));
    for (let i = 5; i <= 10; i++) await c.next('notification'); // live, hence recorded (and dropped here)
    const tooMany = await c.request({ type: 'resume', epoch, topics: { [topic]: { offset: seen['offset'] } }, id: 5 });
    t.same(tooMany['topics'], { [topic]: { recovered: false } }, '9 missed, at most 5 replayed: none');
    t.equal(c.inbox.filter((f) => f.type === 'notification' && f['replayed'] === true).length, 0, 'never a partial replay');
    const m = await scrape(gw.http);
    for (const reason of ['epoch_changed', 'not_held', 'too_many']) {
      t.ok(m.value('herald_resumes_total', { result: 'unrecovered', reason }) >= 1, `unrecovered: ${reason}`);
    }
    t.ok(m.value('herald_resumes_total', { result: 'recovered' }) >= 3);
    t.ok(m.value('herald_replayed_notifications_total') >= 7);
  });

  t.test('an invalid resume frame is invalid_message', async (t) => {
    const c = await connect(t, gw, sub);
    const rows = [
      { type: 'resume', topics: {} },
      { type: 'resume', epoch, topics: { [topic]: { offset: 'nope' } } },
      { type: 'resume', epoch, topics: { [topic]: { offset: '1-1', since: 1 } } },
      { type: 'resume', epoch, topics: { 'bad topic': { since: 1 } } },
    ];
    for (const [i, frame] of rows.entries())
      t.equal((await c.request({ ...frame, id: i }))['code'], 'invalid_message', JSON.stringify(frame));
  });
});

// Other history settings are another deployment: its own namespace and channel prefix.
t.test('a trimmed history cannot be resumed', async (t) => {
  const gw = await gateway(t, redis, { HERALD_HISTORY_SIZE: '3', HERALD_NAMESPACE: 'trim', HERALD_CHANNEL_PREFIX: 'trimmed' });
  const sub = uid('trim');
  const topic = `user:${sub}`;
  const c = await connect(t, gw, sub);
  await pub.publish(`trimmed:${topic}`, JSON.stringify({ id: 't-0' }));
  const seen = await c.next('notification');
  for (let i = 1; i <= 5; i++) await pub.publish(`trimmed:${topic}`, JSON.stringify({ id: `t-${i}` }));
  for (let i = 1; i <= 5; i++) await c.next('notification');
  t.equal((await history(redis, topic, 'trim')).length, 3, 'HERALD_HISTORY_SIZE entries kept');
  const reply = await c.request({ type: 'resume', epoch: c.welcome['epoch'], topics: { [topic]: { offset: seen['offset'] } }, id: 1 });
  t.same(reply['topics'], { [topic]: { recovered: false } }, 't-1 and t-2 were trimmed: not a complete replay');
});

t.test('entries older than HERALD_HISTORY_TTL_S count as trimmed, even while the stream lives on', async (t) => {
  const gw = await gateway(t, redis, { HERALD_HISTORY_TTL_S: '2', HERALD_NAMESPACE: 'aged', HERALD_CHANNEL_PREFIX: 'aged-notifications' });
  const sub = uid('age');
  const topic = `user:${sub}`;
  const c = await connect(t, gw, sub);
  await pub.publish(`aged-notifications:${topic}`, JSON.stringify({ id: 'a-0' }));
  await pub.publish(`aged-notifications:${topic}`, JSON.stringify({ id: 'a-1' }));
  const [a0, a1] = [await c.next('notification'), await c.next('notification')];
  await new Promise((r) => setTimeout(r, 1200));
  await pub.publish(`aged-notifications:${topic}`, JSON.stringify({ id: 'a-2' })); // keeps the stream alive
  const a2 = await c.next('notification');
  await new Promise((r) => setTimeout(r, 1200));
  t.equal((await history(redis, topic, 'aged')).length, 3, 'a-1 is still in the stream, 2.4 s old');
  const epoch = c.welcome['epoch'];
  const fromA0 = await c.request({ type: 'resume', epoch, topics: { [topic]: { offset: a0['offset'] } }, id: 1 });
  t.same(fromA0['topics'], { [topic]: { recovered: false } }, 'after a-0 comes a-1, past the age bound');
  const sinceA1 = await c.request({ type: 'resume', epoch, topics: { [topic]: { since: a1['ts'] } }, id: 2 });
  t.same(sinceA1['topics'], { [topic]: { recovered: false } }, 'since a-1: the same');
  const fromA1 = await c.request({ type: 'resume', epoch, topics: { [topic]: { offset: a1['offset'] } }, id: 3 });
  t.same(fromA1['topics'], { [topic]: { recovered: true } }, 'after a-1 comes only a-2, within the bound');
  const replayed = await c.next('notification');
  t.same([replayed['id'], replayed['replayed']], [a2['id'], true]);
  const page = await c.request({ type: 'history', topic, id: 4 });
  t.same(
    (page['notifications'] as Array<Record<string, unknown>>).map((n) => n['id']),
    [a2['id']],
    'history leaves out what a resume would not replay',
  );
  const after = await c.request({ type: 'history', topic, after: a0['offset'], id: 5 });
  t.same(
    (after['notifications'] as Array<Record<string, unknown>>).map((n) => n['id']),
    [a2['id']],
    'also when paging from before the bound',
  );
});

t.test('with history off, frames carry no position and every resume is unrecovered', async (t) => {
  const gw = await gateway(t, redis, { HERALD_HISTORY_SIZE: '0' });
  const sub = uid('off');
  const c = await connect(t, gw, sub);
  t.notOk('epoch' in c.welcome);
  await pub.publish(`notifications:user:${sub}`, JSON.stringify({ id: 'o-1' }));
  const f = await c.next('notification');
  t.notOk('offset' in f);
  t.same(await history(redis, `user:${sub}`), []);
  const reply = await c.request({ type: 'resume', epoch: 'x', topics: { [`user:${sub}`]: { since: 0 } }, id: 1 });
  t.same(reply['topics'], { [`user:${sub}`]: { recovered: false } });
});

t.test('a gateway whose subscription drops fills the gap for its connected clients from history', async (t) => {
  const gw = await gateway(t, redis);
  const sub = uid('gap');
  const topic = `user:${sub}`;
  const c = await connect(t, gw, sub);
  // A second client whose topic has had no notification yet: no offset to start from.
  const quietSub = uid('gap-quiet');
  const quiet = await connect(t, gw, quietSub);
  await pub.publish(`notifications:${topic}`, JSON.stringify({ id: 'g-0' }));
  t.equal((await c.next('notification'))['id'], 'g-0');
  // Kill this gateway's subscriber and record messages in the same breath: the
  // PUBLISH cannot reach the killed connection, so only the gap fill can deliver them.
  const list = String(await pub.client('LIST'));
  const subscriberId = new RegExp(`id=(\\d+) [^\\n]*name=herald-subscriber-${gw.proc.pid}`).exec(list)?.[1];
  t.ok(subscriberId, 'found the gateway subscriber');
  const p = pub.pipeline();
  p.client('KILL', 'ID', subscriberId as string);
  p.call('FCALL', 'herald_publish', '1', topic, JSON.stringify({ id: 'g-1' }));
  p.call('FCALL', 'herald_publish', '1', `user:${quietSub}`, JSON.stringify({ id: 'q-1' }));
  await p.exec();
  const f = await c.next('notification');
  t.equal(f['id'], 'g-1', 'the missed notification arrives after the resubscribe');
  t.equal(f['replayed'], true, 'marked replayed');
  const q = await quiet.next('notification');
  t.same([q['id'], q['replayed']], ['q-1', true], 'also on a topic that had no notification before the drop');
  t.equal(c.ws.readyState, c.ws.OPEN, 'the client never disconnected');
  await gw.waitForLog((l) => l.msg === 'gap filled after resubscribing');
  t.ok((await scrape(gw.http)).value('herald_gap_fills_total', { result: 'filled' }) >= 1);
});

t.test('after Redis lost its data the gateway tells its clients the gap cannot be filled', async (t) => {
  const own = await startRedis();
  t.teardown(() => own.close());
  const gw = await gateway(t, own);
  const sub = uid('lost');
  const topic = `user:${sub}`;
  const c = await connect(t, gw, sub);
  await own.client().publish(`notifications:${topic}`, JSON.stringify({ id: 'l-0' }));
  const before = await c.next('notification');
  await own.kill(); // no persistence: the history and the epoch are gone
  await own.start();
  // Every held topic is signalled (system too), each in a frame of its own.
  let signal = await c.next('resumed', { timeoutMs: 15_000 });
  if (!(topic in (signal['topics'] as object))) signal = await c.next('resumed', { timeoutMs: 15_000 });
  t.same(signal, { type: 'resumed', topics: { [topic]: { recovered: false } } });
  await own.client().publish(`notifications:${topic}`, JSON.stringify({ id: 'l-1' }));
  const after = await c.next('notification');
  t.not(after['epoch'], before['epoch'], 'a new epoch after the data loss');
});

t.test('resume: one at a time per connection, each replayed entry spent from HERALD_REPLAY_BUDGET', async (t) => {
  const gw = await gateway(t, redis, { HERALD_REPLAY_BUDGET: '5' });
  const sub = uid('budget');
  const topic = `user:${sub}`;
  const c = await connect(t, gw, sub);
  const epoch = c.welcome['epoch'];
  await pub.publish(`notifications:${topic}`, JSON.stringify({ id: 'b-0' }));
  const first = await c.next('notification');
  for (let i = 1; i <= 4; i++) await pub.publish(`notifications:${topic}`, JSON.stringify({ id: `b-${i}` }));
  for (let i = 1; i <= 4; i++) await c.next('notification');
  const from = { [topic]: { offset: first['offset'] } };

  t.same(
    (await c.request({ type: 'resume', epoch, topics: from, id: 'r1' }))['topics'],
    { [topic]: { recovered: true } },
    '4 entries: within the budget of 5',
  );
  t.equal(c.inbox.filter((f) => f['replayed'] === true).length, 4);
  c.inbox.length = 0;

  // A resume and a ping back to back: the ping waits for the resume's answer.
  c.send({ type: 'resume', epoch, topics: from, id: 'r2' });
  c.send({ type: 'ping', id: 'p' });
  const answer = await c.next('*');
  t.match(answer, { type: 'error', code: 'rate_limited', id: 'r2' }, '4 more than the 1 left: rate_limited, nothing replayed');
  t.ok(
    Number(answer['retryAfterMs']) > 30_000 && Number(answer['retryAfterMs']) <= 36_000,
    `retry once 3 entries came back (${String(answer['retryAfterMs'])} ms at 5 a minute)`,
  );
  t.match(await c.next('*'), { type: 'pong', id: 'p' }, 'then the pong: one request at a time, in order');

  for (let i = 5; i <= 10; i++) await pub.publish(`notifications:${topic}`, JSON.stringify({ id: `b-${i}` }));
  for (let i = 5; i <= 10; i++) await c.next('notification');
  const over = await c.request({ type: 'resume', epoch, topics: from, id: 'r3' });
  t.same(over['topics'], { [topic]: { recovered: false } }, '10 entries: more than the budget ever holds, so recovered: false');
  t.equal(c.inbox.filter((f) => f['replayed'] === true).length, 0, 'and nothing replayed');
});

t.test(
  'while Redis refuses writes a recorder holds what waits, bounded by bytes: the oldest are dropped and counted, the rest delivered once recorded',
  async (t) => {
    const own = await startRedis();
    t.teardown(() => own.close());
    const admin = own.client();
    const gw = await gateway(t, own, { HERALD_RECORDER_MAX_WAITING_BYTES: String(1024 * 1024), HERALD_MAX_NOTIFICATION_BYTES: '65536' });
    const sub = uid('oom');
    const c = await connect(t, gw, sub);
    // noeviction with no room: every write (herald_record) fails with OOM; PUBLISH still works.
    const used = Number(/used_memory:(\d+)/.exec(String(await admin.info('memory')))?.[1]);
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', String(used));
    const pad = 'x'.repeat(60_000);
    for (let i = 0; i < 40; i++)
      t.equal(await admin.publish(`notifications:user:${sub}`, JSON.stringify({ id: `o-${i}`, pad })), 1, `o-${i} reached the recorder`);
    const count = async (result: string): Promise<number> => (await scrape(gw.http)).value('herald_history_writes_total', { result });
    await waitFor('the drops to be counted', async () => (await count('dropped')) > 0, 5000, 50);
    const dropped = await count('dropped');
    // 1 MiB holds 17 payloads of 60 KB: the first 23 went.
    t.equal(dropped, 23, '40 × 60 KB against 1 MiB: the 23 oldest dropped');
    t.ok((await count('failed')) > 0, 'the failing calls are counted');
    await gw.waitForLog((l) => l.msg === 'notifications dropped: too many waiting to be recorded' && l['dropped'] !== undefined);
    t.pass('and logged');
    t.equal(c.inbox.length, 0, 'nothing delivered while nothing could be recorded');

    await admin.config('SET', 'maxmemory', '0');
    const got: string[] = [];
    for (let i = 0; i < 40 - dropped; i++) got.push(String((await c.next('notification', { timeoutMs: 5000 }))['id']));
    t.same(
      got,
      Array.from({ length: 40 - dropped }, (_, i) => `o-${i + dropped}`),
      'the newest 17 arrive once Redis takes writes again, in order, with positions',
    );
    await own.client().publish(`notifications:user:${sub}`, JSON.stringify({ id: 'after' }));
    t.equal((await c.next('notification'))['id'], 'after', 'and nothing else');
  },
);

t.test('a subscriber cut in the middle of a fast stream: every notification arrives, live or by the gap fill', async (t) => {
  // A history that keeps the whole stream: the gap must be recoverable.
  const gw = await gateway(t, redis, {
    HERALD_HISTORY_SIZE: '10000',
    HERALD_RECOVERY_MAX: '10000',
    HERALD_NAMESPACE: 'race',
    HERALD_CHANNEL_PREFIX: 'race-notifications',
  });
  const sub = uid('race');
  const topic = `user:${sub}`;
  const c = await connect(t, gw, sub);
  await pub.call('FCALL', 'race_publish', '1', topic, JSON.stringify({ id: 'x-0' }));
  t.equal((await c.next('notification'))['id'], 'x-0');
  // A steady stream through the drop: some are announced while the subscriber is away
  // (only the gap fill can bring them), and the next ones arrive with the resubscription.
  const N = 3000;
  const sent: string[] = [];
  const stream = (async () => {
    for (let i = 1; i <= N; i += 10) {
      const p = pub.pipeline();
      for (let k = i; k < i + 10; k++) p.call('FCALL', 'race_publish', '1', topic, JSON.stringify({ id: `x-${k}` }));
      await p.exec();
      for (let k = i; k < i + 10; k++) sent.push(`x-${k}`);
    }
  })();
  await new Promise((r) => setTimeout(r, 100));
  const list = String(await pub.client('LIST'));
  const subscriberId = new RegExp(`id=(\\d+) [^\\n]*name=herald-subscriber-${gw.proc.pid}`).exec(list)?.[1];
  t.ok(subscriberId, 'found the gateway subscriber');
  await pub.client('KILL', 'ID', subscriberId as string);
  await stream;
  // Every id once: read until N distinct arrived, then up to a barrier published after
  // them, so that a notification delivered both live and by the gap fill shows.
  const ids: string[] = [];
  const got = new Set<string>();
  while (got.size < N) {
    const id = String((await c.next('notification', { timeoutMs: 5000 }))['id']);
    ids.push(id);
    got.add(id);
  }
  await pub.call('FCALL', 'race_publish', '1', topic, JSON.stringify({ id: 'x-end' }));
  for (let id = ''; id !== 'x-end'; ) {
    id = String((await c.next('notification'))['id']);
    if (id !== 'x-end') ids.push(id);
  }
  t.same(
    sent.filter((id) => !got.has(id)),
    [],
    `none of the ${N} missing, live or replayed`,
  );
  t.equal(ids.length, N, 'and none delivered twice');
});

/** POST /publish of `items` to `gw`: the 202's body (each item's topic, id and offset). */
async function publishVia(
  gw: GatewayProcess,
  items: Array<{ topic: string; data: unknown }>,
): Promise<{ accepted: number; notifications: Array<{ topic: string; id: string; offset: string }> }> {
  const r = await fetch(`${gw.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(items),
  });
  if (r.status !== 202) throw new Error(`POST /publish answered ${r.status}: ${await r.text()}`);
  return (await r.json()) as { accepted: number; notifications: Array<{ topic: string; id: string; offset: string }> };
}

t.test('history requests', async (t) => {
  const gw = await gateway(t, redis);
  const sub = uid('hist');
  const topic = `user:${sub}`;
  const granted = `org:${sub}`;
  // 30 notifications, h-0 … h-29, and 2 on a topic the token grants but nobody subscribes to.
  const made = await publishVia(gw, [
    ...Array.from({ length: 30 }, (_, i) => ({ topic, data: { id: `h-${i}`, n: i } })),
    { topic: granted, data: 'g-0' },
    { topic: granted, data: { id: 'g-1' } },
  ]);
  const offsets = made.notifications.map((n) => n.offset);
  const quiet = `org:${sub}-quiet`;
  const c = await connect(t, gw, sub, [granted, quiet]);
  const epoch = c.welcome['epoch'];
  const page = async (frame: Record<string, unknown>, id: string | number): Promise<Frame> => c.request({ type: 'history', ...frame, id });
  const ids = (f: Frame): unknown[] => (f['notifications'] as Array<Record<string, unknown>>).map((n) => n['id']);
  const range = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `h-${from + i}`);

  t.test('without limit: the newest 20, oldest first, each with its position and data', async (t) => {
    const f = await page({ topic }, 'newest');
    t.same(Object.keys(f), ['type', 'topic', 'epoch', 'notifications', 'id'], 'the documented properties, in order');
    t.match(f, { type: 'history', topic, epoch, id: 'newest' });
    t.same(ids(f), range(10, 30));
    const first = (f['notifications'] as Array<Record<string, unknown>>)[0] as Record<string, unknown>;
    t.same(Object.keys(first), ['topic', 'id', 'ts', 'offset', 'epoch', 'data']);
    t.same(first, {
      topic,
      id: 'h-10',
      ts: Number(String(offsets[10]).split('-')[0]),
      offset: offsets[10],
      epoch,
      data: { id: 'h-10', n: 10 },
    });
    t.notOk('replayed' in first, 'not marked replayed: nobody asked for it again');
  });

  t.test('limit, before and after page through it, exclusive, oldest first', async (t) => {
    t.same(ids(await page({ topic, limit: 5 }, 1)), range(25, 30), 'limit 5: the newest 5');
    t.same(ids(await page({ topic, limit: 10, before: offsets[25] }, 2)), range(15, 25), 'the 10 just before h-25');
    t.same(ids(await page({ topic, limit: 10, before: offsets[5] }, 3)), range(0, 5), 'fewer than the limit before h-5');
    t.same(ids(await page({ topic, before: offsets[0] }, 4)), [], 'nothing before the first');
    t.same(ids(await page({ topic, before: '0-0' }, 5)), [], 'nothing before 0-0 (a Redis error if passed on as is)');
    t.same(ids(await page({ topic, limit: 3, after: offsets[5] }, 6)), range(6, 9), 'the 3 just after h-5');
    t.same(ids(await page({ topic, after: offsets[25] }, 7)), range(26, 30), 'the rest after h-25');
    t.same(ids(await page({ topic, after: offsets[29] }, 8)), [], 'nothing after the last');
    t.same(ids(await page({ topic, after: '0-0', limit: 2 }, 9)), range(0, 2), 'from the beginning');
    t.same(ids(await page({ topic, limit: 100 }, 10)), range(0, 30), 'limit 100: all 30');
    t.same(ids(await page({ topic: quiet }, 11)), [], 'a topic without history: an empty page');
  });

  t.test('out-of-bounds frames are invalid_message', async (t) => {
    for (const [i, frame] of [
      { topic, limit: 101 },
      { topic, limit: 0 },
      { topic, limit: 5.5 },
      { topic, before: offsets[5], after: offsets[1] },
      { topic, before: '+' },
      { topic, after: '(1-0' },
      { topic: 'org:*' },
    ].entries()) {
      t.match(await page(frame, `bad-${i}`), { type: 'error', code: 'invalid_message', id: `bad-${i}` }, JSON.stringify(frame));
    }
  });

  t.test('authorised like a subscription: held or granted topics only', async (t) => {
    const g = await page({ topic: granted }, 'granted');
    t.same(ids(g), [`${offsets[30]}@${createHash('sha1').update(granted).digest('hex').slice(0, 8)}`, 'g-1'], 'granted, not held: served');
    t.same(
      (g['notifications'] as Array<Record<string, unknown>>).map((n) => n['data']),
      ['g-0', { id: 'g-1' }],
    );
    t.match(await page({ topic: 'system' }, 'system'), { type: 'history', topic: 'system' }, 'an initial topic');
    const other = `user:${uid('other')}`;
    await publishVia(gw, [{ topic: other, data: { id: 'secret' } }]);
    for (const [i, forbidden] of [other, `org:${uid('x')}`, `${granted}x`].entries()) {
      const f = await page({ topic: forbidden }, `f-${i}`);
      t.match(f, { type: 'error', code: 'forbidden', id: `f-${i}` }, `${forbidden}: neither held nor granted`);
      t.notOk(JSON.stringify(f).includes('secret'));
    }
    const m = await scrape(gw.http);
    t.ok(m.value('herald_history_requests_total', { result: 'forbidden' }) >= 3, 'counted as forbidden');
    t.ok(m.value('herald_history_requests_total', { result: 'served' }) >= 13, 'and as served');
  });
});

t.test('history requests count toward the rate limit and draw from the replay budget', async (t) => {
  const gw = await gateway(t, redis, { HERALD_RATE_LIMIT_MESSAGES: '4', HERALD_REPLAY_BUDGET: '12' });
  const sub = uid('hbudget');
  const topic = `user:${sub}`;
  await publishVia(
    gw,
    Array.from({ length: 30 }, (_, i) => ({ topic, data: { id: `b-${i}` } })),
  );
  const c = await connect(t, gw, sub);
  // A budget below the limit caps the page: 20 asked, 12 served (the newest), so no
  // request is over the whole budget.
  const capped = await c.request({ type: 'history', topic, id: 1 });
  t.same(
    (capped['notifications'] as Array<Record<string, unknown>>).map((n) => n['id']),
    Array.from({ length: 12 }, (_, i) => `b-${18 + i}`),
  );
  const spent = await c.request({ type: 'history', topic, limit: 5, id: 2 });
  t.match(spent, { type: 'error', code: 'rate_limited', id: 2 }, 'the budget is spent: rate_limited before any read');
  t.ok(Number(spent['retryAfterMs']) > 0 && Number(spent['retryAfterMs']) <= 5000, `retryAfterMs ${String(spent['retryAfterMs'])}`);
  t.match(await c.request({ type: 'ping', id: 3 }), { type: 'pong' }, 'frame 3 of 4');
  t.match(await c.request({ type: 'ping', id: 4 }), { type: 'pong' }, 'frame 4 of 4');
  t.match(await c.request({ type: 'history', topic, id: 5 }), { code: 'rate_limited', id: 5 }, 'frame 5: over the rate limit');
  t.ok((await scrape(gw.http)).value('herald_history_requests_total', { result: 'over_budget' }) >= 1);
});

t.test('a history page over what is left of the budget is refused whole, and history is answered before later frames', async (t) => {
  const gw = await gateway(t, redis, { HERALD_REPLAY_BUDGET: '12' });
  const sub = uid('hpart');
  const topic = `user:${sub}`;
  await publishVia(
    gw,
    Array.from({ length: 30 }, (_, i) => ({ topic, data: { id: `p-${i}` } })),
  );
  const c = await connect(t, gw, sub);
  // Sent back to back: the ping waits for the history request in progress (PROTOCOL.md, Order).
  c.send({ type: 'history', topic, limit: 5, id: 'h1' });
  c.send({ type: 'ping', id: 'p1' });
  const first = await c.next('*');
  t.match(first, { type: 'history', id: 'h1' }, 'the history reply comes first');
  t.equal((first['notifications'] as unknown[]).length, 5, '5 served: 7 of 12 left');
  t.match(await c.next('*'), { type: 'pong', id: 'p1' }, 'then the pong');
  const over = await c.request({ type: 'history', topic, limit: 10, id: 'h2' });
  t.match(over, { type: 'error', code: 'rate_limited', id: 'h2' }, 'a page of 10 with 7 left is refused');
  t.match(await c.request({ type: 'ping', id: 'p2' }), { type: 'pong', id: 'p2' });
  t.same(c.inbox, [], 'and nothing of the page was sent');
});

t.test('history: history off answers history_unavailable; a Redis error answers unavailable', async (t) => {
  const off = await gateway(t, redis, { HERALD_HISTORY_SIZE: '0' });
  const sub = uid('hoff');
  const c = await connect(t, off, sub);
  t.match(await c.request({ type: 'history', topic: `user:${sub}`, id: 'h' }), { type: 'error', code: 'history_unavailable', id: 'h' });
  t.equal((await scrape(off.http)).value('herald_history_requests_total', { result: 'history_off' }), 1);

  const own = await startRedis();
  t.teardown(() => own.close());
  const gw = await gateway(t, own);
  const d = await connect(t, gw, sub);
  // The gateway's connections use the default user: without XREVRANGE, the read fails.
  await own.client().call('ACL', 'SETUSER', 'default', '-xrevrange');
  t.match(await d.request({ type: 'history', topic: `user:${sub}`, id: 'r' }), { type: 'error', code: 'unavailable', id: 'r' });
  await own.client().call('ACL', 'SETUSER', 'default', '+xrevrange');
  t.match(
    await d.request({ type: 'history', topic: `user:${sub}`, id: 'again' }),
    { type: 'history', notifications: [] },
    'and served again',
  );
  t.equal((await scrape(gw.http)).value('herald_history_requests_total', { result: 'failed' }), 1);
});

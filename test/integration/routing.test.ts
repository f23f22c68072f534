// Interest routing and recording once (docs/DELIVERY.md, "Who subscribes to what").
// With several gateways Redis sends each one only the topics its connections hold:
// with history on, the notifications the recorders announce on <ns>:notify:{<topic>};
// with history off, the plain <prefix>:<topic> channels. Every plain PUBLISH is
// recorded once whichever recorders see it, a recorder killed mid-stream loses
// nothing, and two namespaces on one Redis server never see each other.
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, type GatewayProcess, spawnMain, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { type RedisServer, startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

type Client = TestClient & { welcome: Frame };
const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

async function gateways(t: Test, redis: RedisServer, n: number, extra: Record<string, string> = {}): Promise<GatewayProcess[]> {
  const out: GatewayProcess[] = [];
  for (let i = 0; i < n; i++) {
    const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_LOG_LEVEL: 'info', ...extra }));
    t.teardown(() => gw.stop('SIGKILL'));
    await gw.waitForLog((l) => l.msg === 'redis subscription active');
    out.push(gw);
  }
  return out;
}

async function connect(t: Test, gw: GatewayProcess, sub: string, topics: string[] = []): Promise<Client> {
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token({ sub, topics })}` } });
  t.teardown(() => c.close());
  return c;
}

/** Publishes a barrier to each client's own user topic; it must be the next frame, with nothing else waiting. */
async function barrier(t: Test, pub: ReturnType<RedisServer['client']>, prefix: string, clients: Client[]): Promise<void> {
  for (const c of clients) {
    const marker = randomUUID();
    await pub.publish(`${prefix}:user:${String(c.welcome['userId'])}`, JSON.stringify({ barrier: marker }));
    const f = await c.next('*');
    t.same(f['data'], { barrier: marker }, `${String(c.welcome['userId'])}: the barrier is the next frame`);
    t.same(c.inbox, [], 'and nothing else is waiting');
  }
}

/** Redis's own count of channel subscriptions for each gateway's subscriber connection (CLIENT LIST sub=). */
async function subscriptionsOf(pub: ReturnType<RedisServer['client']>, gws: GatewayProcess[]): Promise<number[]> {
  const list = String(await pub.client('LIST'));
  return gws.map((g) => Number(new RegExp(`name=herald-subscriber-${g.proc.pid} [^\\n]*? sub=(\\d+)`).exec(list)?.[1] ?? NaN));
}

for (const history of [true, false]) {
  t.test(`history ${history ? 'on' : 'off'}`, async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.close());
    const pub = redis.client();
    // History on: a size that keeps every entry these tests write, to count them.
    const gws = await gateways(t, redis, 3, { HERALD_HISTORY_SIZE: history ? '5000' : '0' });
    const channelOf = (topic: string): string => (history ? `herald:notify:{${topic}}` : `notifications:${topic}`);

    t.test('each gateway receives only what its connections hold; its metrics and redis-server agree', async (t) => {
      const users = Array.from({ length: 9 }, (_, i) => uid(`r${i}`));
      const clients = await Promise.all(users.map((u, i) => connect(t, gws[i % 3] as GatewayProcess, u)));
      const before = await Promise.all(gws.map((g) => scrape(g.http)));
      for (const [i, u] of users.entries()) await pub.publish(`notifications:user:${u}`, JSON.stringify({ id: `m-${i}`, to: u }));
      for (const [i, c] of clients.entries()) {
        t.same((await c.next('notification'))['data'], { id: `m-${i}`, to: users[i] }, `user ${i} got its own notification`);
      }
      await barrier(t, pub, 'notifications', clients);
      const after = await Promise.all(gws.map((g) => scrape(g.http)));
      for (const [g, m] of after.entries()) {
        const routed =
          m.value('herald_redis_messages_total', { source: 'topic' }) -
          (before[g] as typeof m).value('herald_redis_messages_total', { source: 'topic' });
        t.equal(routed, 6, `gateway ${g} received its three users' notifications and barriers, nothing else`);
        t.equal(m.value('herald_redis_subscriptions', { kind: 'topic' }), 4, `gateway ${g} holds 4 channels: system and its 3 users`);
        t.equal(m.value('herald_redis_subscriptions', { kind: 'control' }), 3, `gateway ${g} holds its 3 users' control channels`);
      }
      t.same(await subscriptionsOf(pub, gws), [7, 7, 7], "redis-server's CLIENT LIST agrees: 7 channels per gateway (4 topics, 3 users)");
      const numsub = (await pub.call('PUBSUB', 'NUMSUB', ...users.map((u) => channelOf(`user:${u}`)), channelOf('user:nobody'))) as Array<
        string | number
      >;
      t.same(
        numsub.filter((_, i) => i % 2 === 1),
        [...users.map(() => 1), 0],
        'PUBSUB NUMSUB: one gateway per user channel, none for a topic nobody holds',
      );
    });

    t.test('a notification published as soon as `connected` arrives is delivered', async (t) => {
      // The promise covers connections that got `connected` (TestClient.connect retries
      // the rare drop this uWS build makes right after an upgrade, as the SDK reconnects).
      for (let i = 0; i < 30; i++) {
        const u = uid(`fresh${i}`);
        const c = await TestClient.connect((gws[i % 3] as GatewayProcess).ws, {
          headers: { authorization: `Bearer ${await token({ sub: u })}` },
        });
        await pub.publish(`notifications:user:${u}`, JSON.stringify({ id: `first-${i}` }));
        const f = await c.next('notification', { timeoutMs: 5000 });
        if (f['id'] !== `first-${i}`) t.fail(`connection ${i} got ${JSON.stringify(f)}`);
        await c.close();
      }
      t.pass(`30 fresh connections, each got the notification published right after its connected frame`);
    });

    t.test('subscribe and unsubscribe frames hold and release a channel; a closed connection releases its own', async (t) => {
      const u = uid('hold');
      const feed = `feed:${uid('f')}`;
      const gw = gws[1] as GatewayProcess;
      const c = await connect(t, gw, u, ['feed:*']);
      const numsub = async (topic: string): Promise<number> =>
        Number(((await pub.call('PUBSUB', 'NUMSUB', channelOf(topic))) as unknown[])[1]);
      t.equal(await numsub(feed), 0);
      t.same(await c.request({ type: 'subscribe', topic: feed, id: 1 }), { type: 'subscribed', topic: feed, id: 1 });
      t.equal(await numsub(feed), 1, 'the channel is subscribed before the reply');
      await pub.publish(`notifications:${feed}`, JSON.stringify({ id: 'f-1' }));
      t.equal((await c.next('notification'))['id'], 'f-1');
      await c.request({ type: 'unsubscribe', topic: feed, id: 2 });
      await waitFor('the feed channel to be left', async () => (await numsub(feed)) === 0, 3000, 50);
      t.pass('left within the batch interval');
      t.equal(await numsub(`user:${u}`), 1);
      await c.close();
      await waitFor('the user channel to be left', async () => (await numsub(`user:${u}`)) === 0, 3000, 50);
      t.pass('the closed connection released its user channel');
      t.equal(await numsub('system'), 3, 'system stays subscribed on every gateway');
    });

    t.test('a topic a renewed token no longer grants is revoked and its channel left', async (t) => {
      const u = uid('renew');
      const feed = `feed:${uid('r')}`;
      const c = await connect(t, gws[0] as GatewayProcess, u, [feed]);
      await c.request({ type: 'subscribe', topic: feed, id: 1 });
      const numsub = async (): Promise<number> => Number(((await pub.call('PUBSUB', 'NUMSUB', channelOf(feed))) as unknown[])[1]);
      t.equal(await numsub(), 1);
      const renewed = await c.request({ type: 'auth', token: await token({ sub: u }), id: 2 });
      t.same(renewed['revoked'], [feed], 'revoked by the new token');
      await waitFor("the revoked topic's channel to be left", async () => (await numsub()) === 0, 3000, 50);
      t.pass('left within the batch interval');
    });

    if (!history) return;

    t.test('three gateways, two recorders: every plain PUBLISH is recorded and announced exactly once', async (t) => {
      await waitFor(
        'two recorder slots held',
        async () =>
          (await Promise.all(gws.map(async (g) => (await scrape(g.http)).value('herald_recorder')))).reduce((a, b) => a + b, 0) === 2,
        5000,
        50,
      );
      t.pass('exactly two of the three gateways record');
      const u = uid('once');
      const topic = `user:${u}`;
      const c = await connect(t, gws[2] as GatewayProcess, u);
      const sent = [
        ...Array.from({ length: 100 }, (_, i) => JSON.stringify({ id: `o-${i}` })),
        ...Array.from({ length: 50 }, (_, i) => JSON.stringify({ n: i })), // id-less, distinct
        '{"same":true}',
        '{"same":true}', // id-less, identical: two notifications
      ];
      for (const p of sent) await pub.publish(`notifications:${topic}`, p);
      const got: Frame[] = [];
      for (let i = 0; i < sent.length; i++) got.push(await c.next('notification'));
      t.same(
        got.map((f) => JSON.stringify(f['data'])),
        sent,
        'every one delivered once, in publish order',
      );
      t.equal(new Set(got.map((f) => f['id'])).size, sent.length, 'each with its own id');
      t.equal(await pub.xlen(`herald:history:{${topic}}`), sent.length, 'and one history entry each, not one per recorder');
      await barrier(t, pub, 'notifications', [c]);
    });

    t.test('kill -9 of a recorder mid-stream: nothing lost, nothing twice, its slot taken over', async (t) => {
      const recorderOf = async (g: GatewayProcess): Promise<number> => (await scrape(g.http)).value('herald_recorder');
      const flags = await Promise.all(gws.map(recorderOf));
      const victim = gws[flags.indexOf(1)] as GatewayProcess;
      const survivors = gws.filter((g) => g !== victim);
      const users = survivors.map(() => uid('kill'));
      const clients = await Promise.all(survivors.map((g, i) => connect(t, g, users[i] as string)));
      const N = 1200;
      let killedAt = -1;
      for (let i = 0; i < N; i++) {
        const p = pub.pipeline();
        for (const u of users) p.publish(`notifications:user:${u}`, JSON.stringify({ id: `k-${i}` }));
        await p.exec();
        if (i === N / 3) {
          victim.proc.kill('SIGKILL');
          killedAt = i;
        }
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 10)); // about 2.5 s of publishing in all
      }
      t.ok(killedAt > 0, `the recorder was killed after ${killedAt} messages`);
      t.equal((await victim.exited).signal, 'SIGKILL', 'and it died of it');
      for (const [i, c] of clients.entries()) {
        const ids: string[] = [];
        for (let k = 0; k < N; k++) ids.push(String((await c.next('notification'))['id']));
        t.same(
          ids,
          Array.from({ length: N }, (_, k) => `k-${k}`),
          `user ${i}: all ${N} delivered once, in order`,
        );
        t.equal(await pub.xlen(`herald:history:{user:${users[i]}}`), N, `user ${i}: ${N} history entries, none twice`);
      }
      await barrier(t, pub, 'notifications', clients);
      const started = Date.now();
      await waitFor(
        'the survivors to hold both slots',
        async () => (await Promise.all(survivors.map(recorderOf))).every((x) => x === 1),
        8000,
        100,
      );
      t.ok(Date.now() - started < 8000, `the victim's slot was taken over (${Date.now() - started} ms after the stream ended)`);
    });
  });
}

t.test('two namespaces on one redis-server do not see each other, and a clashing setting refuses to start', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const pub = redis.client();
  const [a] = await gateways(t, redis, 1);
  const [b] = await gateways(t, redis, 1, { HERALD_NAMESPACE: 'acme', HERALD_CHANNEL_PREFIX: 'acme-notifications' });
  const user = uid('same');
  const ca = await connect(t, a as GatewayProcess, user);
  const cb = await connect(t, b as GatewayProcess, user);
  t.not(ca.welcome['epoch'], cb.welcome['epoch'], 'each namespace has its own epoch');

  await pub.publish(`notifications:user:${user}`, JSON.stringify({ id: 'for-herald' }));
  await pub.publish(`acme-notifications:user:${user}`, JSON.stringify({ id: 'for-acme' }));
  await pub.call('FCALL', 'herald_publish', '1', `user:${user}`, JSON.stringify({ id: 'fcall-herald' }));
  await pub.call('FCALL', 'acme_publish', '1', `user:${user}`, JSON.stringify({ id: 'fcall-acme' }));
  // Sorted: a plain PUBLISH takes the recorder's path, herald_publish its own (docs/DELIVERY.md, Order).
  t.same([String((await ca.next('notification'))['id']), String((await ca.next('notification'))['id'])].sort(), [
    'fcall-herald',
    'for-herald',
  ]);
  t.same([String((await cb.next('notification'))['id']), String((await cb.next('notification'))['id'])].sort(), ['fcall-acme', 'for-acme']);
  await barrier(t, pub, 'notifications', [ca]);
  await barrier(t, pub, 'acme-notifications', [cb]);
  const ids = async (key: string): Promise<string[]> => (await pub.xrange(key, '-', '+')).map(([, f]) => f[f.indexOf('i') + 1] as string);
  const [ha, hb] = [await ids(`herald:history:{user:${user}}`), await ids(`acme:history:{user:${user}}`)];
  t.same(ha.slice(0, 2).sort(), ['fcall-herald', 'for-herald'], 'the herald history holds its own (then the barrier), none of acme');
  t.same(hb.slice(0, 2).sort(), ['fcall-acme', 'for-acme'], 'the acme history holds its own, none of herald');
  const resume = await ca.request({ type: 'resume', epoch: cb.welcome['epoch'], topics: { [`user:${user}`]: { since: 0 } }, id: 1 });
  t.same(resume['topics'], { [`user:${user}`]: { recovered: false } }, "acme's epoch means nothing to herald");

  const refused = async (env: Record<string, string>, variable: string): Promise<void> => {
    const child = spawnMain(t, [], baseEnv({ HERALD_REDIS_URL: redis.url, ...env }));
    const exit = await child.exited;
    t.equal(exit.code, 2, `${JSON.stringify(env)} exits 2`);
    t.match(child.stderr(), new RegExp(`configuration error: .*${variable}:`), `naming ${variable}: ${child.stderr().trim()}`);
  };
  await refused({ HERALD_NAMESPACE: 'other' }, 'HERALD_CHANNEL_PREFIX');
  await refused({ HERALD_HISTORY_SIZE: '50' }, 'HERALD_HISTORY_SIZE');
  await refused({ HERALD_NAMESPACE: 'acme', HERALD_CHANNEL_PREFIX: 'acme-notifications', HERALD_RECORDERS: '3' }, 'HERALD_RECORDERS');
  t.equal((await scrape((a as GatewayProcess).http)).value('herald_redis_up'), 1, 'the running gateways are untouched');
});

// Presence across gateways (issue 17): GET /presence counts every live gateway's
// connections per user and per topic; a connect counts at once (the admission check
// writes it), a close within the next flush (about a second); a gateway killed with
// SIGKILL stops counting after HERALD_PRESENCE_TTL_S and a live gateway removes its
// entries from Redis; one stopped with SIGTERM removes its own at once; after Redis
// loses its data each gateway writes its presence again. HERALD_MAX_CONNECTIONS_PER_USER
// holds across gateways, and the events stream gets `connected` / `disconnected`
// entries (unless HERALD_CONNECTION_EVENTS=false). Two gateways and a private
// redis-server per group.
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { type Frame, refusedUpgrade, TestClient } from '../support/client.js';
import { CONTROL_KEY, closeOf, control, gatewayIdOf, PUBLISH_KEY, presence, presenceQuery, userCount } from '../support/control.js';
import { baseEnv, type GatewayProcess, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { type RedisServer, startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

type Client = TestClient & { welcome: Frame };
const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

async function gateways(t: Test, redis: RedisServer, n: number, extra: Record<string, string> = {}): Promise<GatewayProcess[]> {
  const out: GatewayProcess[] = [];
  for (let i = 0; i < n; i++) {
    const gw = await startGateway(
      baseEnv({
        HERALD_REDIS_URL: redis.url,
        HERALD_LOG_LEVEL: 'info',
        HERALD_CONTROL_KEY: CONTROL_KEY,
        HERALD_PUBLISH_KEY: PUBLISH_KEY,
        ...extra,
      }),
    );
    t.teardown(() => gw.stop('SIGKILL'));
    await gw.waitForLog((l) => l.msg === 'redis subscription active');
    out.push(gw);
  }
  // Each has beaten once: presence reads count a gateway only once it is in the heartbeat set.
  const r = redis.client();
  await waitFor(
    'every gateway in the heartbeat set',
    async () => (await Promise.all(out.map((g) => gatewayIdOf(r, g)))).every(Boolean),
    5000,
    50,
  );
  return out;
}

async function connect(t: Test, gw: GatewayProcess, sub: string, topics: string[] = []): Promise<Client> {
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token({ sub, topics })}` } });
  t.teardown(() => c.close());
  return c;
}

/** Polls /presence on `gw` until `user` counts `n` connections (a close shows after the next flush). */
async function untilCount(gw: GatewayProcess, user: string, n: number, timeoutMs = 5000): Promise<void> {
  await waitFor(`${user} to count ${n} connections`, async () => (await userCount(gw.http, user)) === n, timeoutMs, 50);
}

/** An upgrade's outcome: 101 (the socket is closed again at once) or the refusal. */
async function attempt(
  url: string,
  authorization: string,
): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, unknown> }> {
  try {
    return await refusedUpgrade(url, { headers: { authorization } });
  } catch (err) {
    if ((err as Error).message === 'upgrade unexpectedly succeeded') return { status: 101, body: {}, headers: {} };
    throw err;
  }
}

/** Short, so that the kill test is quick; long enough that a busy machine's live gateway is never taken for dead. */
const TTL_S = 3;

t.test('two gateways, one redis-server', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const r = redis.client();
  const [a, b] = (await gateways(t, redis, 2, { HERALD_PRESENCE_TTL_S: String(TTL_S) })) as [GatewayProcess, GatewayProcess];

  t.test('a user counts at once when a connection opens on either gateway, and stops counting after it closes', async (t) => {
    const u = uid('p');
    const ask = async (gw: GatewayProcess) => (await presence(gw.http, [u])).users[u];
    t.strictSame(await ask(a), { online: false, connections: 0 }, 'nobody yet');

    const c1 = await connect(t, a, u);
    // The admission check wrote the count before the upgrade: no wait.
    t.strictSame(await ask(a), { online: true, connections: 1 }, 'counted on the gateway holding it');
    t.strictSame(await ask(b), { online: true, connections: 1 }, 'and on the other');
    const c2 = await connect(t, b, u);
    const c3 = await connect(t, b, u);
    t.strictSame(await ask(a), { online: true, connections: 3 }, 'three connections over two gateways');
    t.strictSame(await ask(b), { online: true, connections: 3 });

    const ids = [await gatewayIdOf(r, a), await gatewayIdOf(r, b)] as [string, string];
    t.strictSame(
      await r.hgetall(`herald:presence:{user:${u}}`),
      { [ids[0]]: '1', [ids[1]]: '2' },
      "Redis holds each gateway's count of the user",
    );

    await c2.close();
    await untilCount(a, u, 2);
    t.pass('a closed connection stops counting within the flush');
    await c1.close();
    await untilCount(b, u, 1);
    t.strictSame(await r.hgetall(`herald:presence:{user:${u}}`), { [ids[1]]: '1' }, 'gateway a no longer has a field for the user');
    t.equal(await r.hget(`herald:gateway:${ids[0]}`, `c:${u}`), null, 'and its own record of what it wrote forgot the user');
    await c3.close();
    await untilCount(a, u, 0);
    t.strictSame(await ask(b), { online: false, connections: 0 }, 'offline once every connection closed');
    t.equal(await r.exists(`herald:presence:{user:${u}}`), 0, 'the hash is gone');
  });

  t.test('topics count the connections holding them on every gateway; both maps are always in the answer', async (t) => {
    const u = uid('tp');
    const v = uid('tq');
    const feed = `feed:${uid('f')}`;
    const c1 = await connect(t, a, u, ['feed:*']);
    const c2 = await connect(t, b, v, ['feed:*']);
    await c1.request({ type: 'subscribe', topic: feed, id: 1 });
    await c2.request({ type: 'subscribe', topic: feed, id: 1 });
    // Topic counts go out with the flush.
    await waitFor('the feed to count 2', async () => (await presence(b.http, [], [feed])).topics[feed]?.connections === 2, 5000, 50);
    const both = await presence(a.http, [u, v, 'nobody-here'], [feed, `user:${u}`, 'feed:unheld']);
    t.strictSame(
      both,
      {
        users: {
          [u]: { online: true, connections: 1 },
          [v]: { online: true, connections: 1 },
          'nobody-here': { online: false, connections: 0 },
        },
        topics: { [feed]: { connections: 2 }, [`user:${u}`]: { connections: 1 }, 'feed:unheld': { connections: 0 } },
      },
      'every user and topic asked is in the answer',
    );
    t.strictSame(
      await presence(a.http, [], [feed]),
      { users: {}, topics: { [feed]: { connections: 2 } } },
      'users map present though empty',
    );
    t.strictSame(
      await presence(a.http, [u], []),
      { users: { [u]: { online: true, connections: 1 } }, topics: {} },
      'topics map present though empty',
    );
    const dup = await presenceQuery(a.http, `user=${u}&user=${u}&topic=${feed}&topic=${feed}`);
    t.strictSame(
      dup.body,
      { users: { [u]: { online: true, connections: 1 } }, topics: { [feed]: { connections: 2 } } },
      'a repeated name is answered once',
    );

    await c1.request({ type: 'unsubscribe', topic: feed, id: 2 });
    await waitFor('the feed to count 1', async () => (await presence(a.http, [], [feed])).topics[feed]?.connections === 1, 5000, 50);
    await c2.close();
    await waitFor('the feed to count 0', async () => (await presence(a.http, [], [feed])).topics[feed]?.connections === 0, 5000, 50);
    t.equal(await r.exists(`herald:subscribers:{${feed}}`), 0, "the topic's hash is gone");
  });

  t.test('the presence metrics: writes, flushes and the live gateways seen', async (t) => {
    await waitFor(
      'each gateway to see two live gateways',
      async () =>
        (await Promise.all([a, b].map(async (g) => (await scrape(g.http)).value('herald_presence_gateways')))).every((n) => n === 2),
      5000,
      50,
    );
    const m = await scrape(a.http);
    t.ok(m.value('herald_presence_flushes_total', { result: 'ok' }) > 0, 'flushes counted');
    t.equal(m.value('herald_presence_flushes_total', { result: 'failed' }), 0, 'none failed');
    t.ok(m.value('herald_presence_writes_total') > 0, 'entries written');
    t.ok(m.sum('herald_presence_requests_total', { status: '200' }) > 0, 'presence reads counted');
  });

  t.test('connected and disconnected entries go to the events stream', async (t) => {
    const u = uid('ev');
    const c = await connect(t, a, u);
    const connectionId = c.welcome['connectionId'] as string;
    t.equal((await control(b.http, 'disconnect', { user: u })).status, 200);
    t.strictSame(await closeOf(c), { code: 4000, reason: 'disconnected' });
    const d = await connect(t, b, u);
    await d.close(1000);

    type Entry = Record<string, string>;
    const entriesOf = async (): Promise<Entry[]> => {
      const out: Entry[] = [];
      for (const [, fields] of await r.xrange('herald:events', '-', '+')) {
        const e: Entry = {};
        for (let i = 0; i + 1 < fields.length; i += 2) e[fields[i] as string] = fields[i + 1] as string;
        if (e['userId'] === u) out.push(e);
      }
      return out;
    };
    await waitFor('four entries for the user', async () => (await entriesOf()).length === 4, 5000, 50);
    const entries = await entriesOf();
    const [aId, bId] = [await gatewayIdOf(r, a), await gatewayIdOf(r, b)];
    const byConn = entries.filter((e) => e['connectionId'] === connectionId);
    t.match(byConn, [
      { type: 'connected', userId: u, connectionId, gateway: aId, ts: /^\d{13}$/ },
      { type: 'disconnected', userId: u, connectionId, gateway: aId, code: '4000', reason: 'disconnected', by: 'server', ts: /^\d{13}$/ },
    ]);
    t.notOk('code' in (byConn[0] as Entry), 'a connected entry has no close fields');
    const other = entries.filter((e) => e['connectionId'] === d.welcome['connectionId']);
    t.match(other, [
      { type: 'connected', gateway: bId },
      { type: 'disconnected', gateway: bId, code: '1000', by: 'client' },
    ]);
    t.ok(Number((byConn[1] as Entry)['ts']) >= Number((byConn[0] as Entry)['ts']), 'in order');
    t.ok((await scrape(a.http)).value('herald_connection_events_total', { outcome: 'written' }) >= 2, 'counted as written');
  });

  t.test('Redis losing its data (FLUSHALL): each gateway writes its presence again', async (t) => {
    const u = uid('lost');
    const feed = `feed:${uid('l')}`;
    await connect(t, a, u);
    const c = await connect(t, b, u, ['feed:*']);
    await c.request({ type: 'subscribe', topic: feed, id: 1 });
    await waitFor('the feed to count 1', async () => (await presence(a.http, [], [feed])).topics[feed]?.connections === 1, 5000, 50);
    await r.flushall();
    await waitFor(
      'presence to be written again',
      async () => {
        const p = await presence(a.http, [u], [feed]);
        return p.users[u]?.connections === 2 && p.topics[feed]?.connections === 1;
      },
      5000,
      50,
    );
    t.pass('the user and the topic count again, after the next heartbeat');
    t.equal(await r.zcard('herald:gateways'), 2, 'both gateways beat again');
  });

  // Last: it kills gateway b.
  t.test('a gateway killed with SIGKILL stops counting after HERALD_PRESENCE_TTL_S and its entries are removed', async (t) => {
    const [live, victim] = [a, b];
    const shared = uid('both');
    const only = uid('victim-only');
    const feed = `feed:${uid('k')}`;
    await connect(t, live, shared);
    await connect(t, victim, shared);
    const v = await connect(t, victim, only, ['feed:*']);
    await v.request({ type: 'subscribe', topic: feed, id: 1 });
    const victimId = (await gatewayIdOf(r, victim)) as string;
    const gwKey = `herald:gateway:${victimId}`;
    await waitFor('the victim to have written its feed count', async () => (await r.hget(gwKey, `s:${feed}`)) === '1', 5000, 50);
    t.strictSame(await presence(live.http, [shared, only], [feed]), {
      users: { [shared]: { online: true, connections: 2 }, [only]: { online: true, connections: 1 } },
      topics: { [feed]: { connections: 1 } },
    });
    t.match(await r.hgetall(gwKey), { [`c:${shared}`]: '1', [`c:${only}`]: '1', [`s:${feed}`]: '1', [`s:user:${only}`]: '1' });

    const killedAt = Date.now();
    await victim.stop('SIGKILL');
    await closeOf(v);
    const deadline = TTL_S * 1000 + 2000;
    await waitFor(
      'the dead gateway to stop counting',
      async () => {
        const p = await presence(live.http, [shared, only], [feed]);
        return p.users[only]?.connections === 0 && p.users[shared]?.connections === 1 && p.topics[feed]?.connections === 0;
      },
      deadline - (Date.now() - killedAt),
      50,
    );
    t.pass(`offline within HERALD_PRESENCE_TTL_S + 2 s (${Date.now() - killedAt} ms)`);
    t.strictSame((await presence(live.http, [only])).users[only], { online: false, connections: 0 });

    // The live gateway reaps at its next flush once the victim's beat is older than the TTL.
    await waitFor(
      "the victim's entries to be removed",
      async () => (await r.exists(gwKey, `herald:presence:{user:${only}}`, `herald:subscribers:{${feed}}`)) === 0,
      5000,
      50,
    );
    t.pass("herald:gateway:<victim>, the victim-only user's and feed's hashes are gone");
    const liveId = (await gatewayIdOf(r, live)) as string;
    t.strictSame(
      await r.hgetall(`herald:presence:{user:${shared}}`),
      { [liveId]: '1' },
      "the shared user's hash keeps the live gateway's field only",
    );
    t.strictSame(await r.zrange('herald:gateways', 0, -1), [liveId], 'the victim left the heartbeat set');
    const m = await scrape(live.http);
    t.equal(m.value('herald_presence_reaped_total'), 1, 'the live gateway counted one reaped gateway');
    t.equal(m.value('herald_presence_gateways'), 1, 'and sees itself alone');
  });
});

t.test('HERALD_MAX_CONNECTIONS_PER_USER=2, HERALD_CONNECTION_EVENTS=false', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const r = redis.client();
  const [a, b] = (await gateways(t, redis, 2, { HERALD_MAX_CONNECTIONS_PER_USER: '2', HERALD_CONNECTION_EVENTS: 'false' })) as [
    GatewayProcess,
    GatewayProcess,
  ];

  t.test('two connections on two gateways; the third is refused on either with 429 and Retry-After: 1', async (t) => {
    const u = uid('cap');
    const bearer = `Bearer ${await token({ sub: u })}`;
    const c1 = await connect(t, a, u);
    await connect(t, b, u);
    for (const [name, gw] of [
      ['a', a],
      ['b', b],
    ] as const) {
      const refused = await refusedUpgrade(gw.ws, { headers: { authorization: bearer } });
      t.equal(refused.status, 429, `refused on gateway ${name}`);
      t.strictSame(refused.body, { error: 'too_many_requests', reason: 'too_many_connections_for_user' });
      t.equal(refused.headers['retry-after'], '1', 'Retry-After: 1');
    }
    const other = await connect(t, a, uid('other'));
    t.equal(other.welcome.type, 'connected', 'another user is not affected');
    t.equal((await scrape(a.http)).value('herald_admission_refused_total', { reason: 'too_many_connections_for_user' }), 1, 'counted');

    await c1.close();
    // Refused until the close is flushed, then admitted.
    let admitted: { status: number } = { status: 0 };
    await waitFor(
      'a new connection to be admitted once the close is flushed',
      async () => {
        admitted = await attempt(b.ws, bearer);
        if (admitted.status !== 101 && admitted.status !== 429) throw new Error(`unexpected ${admitted.status}`);
        return admitted.status === 101;
      },
      5000,
      100,
    );
    t.equal(admitted.status, 101, 'admitted after the close');
    await untilCount(a, u, 1); // the probe closed at once: it counts out too
    const c3 = await connect(t, b, u);
    t.equal(c3.welcome.type, 'connected');
    t.equal((await refusedUpgrade(a.ws, { headers: { authorization: bearer } })).status, 429, 'full again');
  });

  t.test('upgrades racing on both gateways: exactly the cap is admitted', async (t) => {
    const u = uid('race');
    const bearer = `Bearer ${await token({ sub: u })}`;
    const sockets: WebSocket[] = [];
    t.teardown(() => {
      for (const s of sockets) s.terminate();
    });
    const outcomes = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) =>
          new Promise<number>((resolve, reject) => {
            const ws = new WebSocket((i % 2 === 0 ? a : b).ws, { headers: { authorization: bearer } });
            sockets.push(ws);
            ws.once('open', () => resolve(101));
            ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
            ws.once('error', reject);
          }),
      ),
    );
    t.strictSame(
      [...outcomes].sort((x, y) => x - y),
      [101, 101, 429, 429, 429, 429, 429, 429],
      'two admitted, six refused',
    );
    // At most: this uWS build may drop a socket right after its upgrade (client.ts), which then counts out.
    t.ok((await userCount(a.http, u)) <= 2, 'presence never counts more than the cap');
  });

  t.test('a tab reloading while the flush waits on Redis: the user stays counted twice', async (t) => {
    // Redis runs the reconnect's admission (which writes the count with it) and then a
    // flush that was sent while the admission was in flight, computed without it. Pausing
    // Redis's writes makes that order certain: the gateway must write the count again.
    const u = uid('tabs');
    await connect(t, a, u);
    const x = await connect(t, a, u);
    t.equal(await userCount(b.http, u), 2);
    await r.call('CLIENT', 'PAUSE', '1500', 'WRITE');
    await x.close(); // the count is now dirty; the next flush is queued behind the admission
    const y = await connect(t, a, u);
    t.equal(y.welcome.type, 'connected');
    await waitFor('the user to count 2 again', async () => (await userCount(b.http, u)) === 2, 5000, 100).catch(() => undefined);
    t.equal(await userCount(b.http, u), 2, 'two connections open, two counted');
    const aId = (await gatewayIdOf(r, a)) as string;
    t.strictSame(await r.hgetall(`herald:presence:{user:${u}}`), { [aId]: '2' });
  });

  t.test('no connection entry reaches the events stream', async (t) => {
    const gw = a;
    const u = uid('quiet');
    const c = await connect(t, gw, u);
    t.equal((await control(gw.http, 'disconnect', { user: u })).status, 200);
    await closeOf(c);
    const d = await connect(t, gw, u);
    await d.close();
    await untilCount(gw, u, 0);
    // The flush that wrote the count would have carried the events: one more to be sure.
    const flushes = (await scrape(gw.http)).value('herald_presence_flushes_total', { result: 'ok' });
    await waitFor(
      'another flush',
      async () => (await scrape(gw.http)).value('herald_presence_flushes_total', { result: 'ok' }) > flushes,
      5000,
      50,
    );
    t.equal(await r.exists('herald:events'), 0, 'no events stream at all');
    t.equal((await scrape(gw.http)).value('herald_connection_events_total', { outcome: 'written' }), 0);
  });

  // Last: it stops gateway b.
  t.test('a gateway shut down with SIGTERM removes its presence from Redis before it exits', async (t) => {
    const u = uid('bye');
    const feed = `feed:${uid('b')}`;
    await connect(t, a, u);
    const c = await connect(t, b, u, ['feed:*']);
    await c.request({ type: 'subscribe', topic: feed, id: 1 });
    const bId = (await gatewayIdOf(r, b)) as string;
    await waitFor("b's feed count to be written", async () => (await r.hget(`herald:gateway:${bId}`, `s:${feed}`)) === '1', 5000, 50);
    t.equal(await userCount(a.http, u), 2);
    const exited = await b.stop('SIGTERM');
    t.equal(exited.code, 0, 'b exited cleanly');
    t.strictSame(await closeOf(c), { code: 1001, reason: 'shutting_down' });
    // No wait for HERALD_PRESENCE_TTL_S: the entries went with the shutdown.
    t.strictSame(await presence(a.http, [u], [feed]), {
      users: { [u]: { online: true, connections: 1 } },
      topics: { [feed]: { connections: 0 } },
    });
    t.equal(await r.exists(`herald:gateway:${bId}`, `herald:subscribers:{${feed}}`), 0, "b's record and the feed's hash are gone");
    t.strictSame(await r.hgetall(`herald:presence:{user:${u}}`), { [(await gatewayIdOf(r, a)) as string]: '1' });
    t.equal(await r.zscore('herald:gateways', bId), null, 'b left the heartbeat set');
  });
});

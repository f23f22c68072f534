// Presence and the control API under churn (load-heavy: `make test` runs it after the
// rest). Over two gateways, 5,000 connections open and close in waves, with server-side
// disconnects, revocations, subscribes and unsubscribes made while they are open and
// while they close. Afterwards Redis holds presence for the connections still open and
// nothing else: no stale user, topic or gateway entry, no control channel left
// subscribed; /presence answers 0 for every churned user, and each gateway's herald_users
// is back to what it was before the churn.
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { CONTROL_KEY, closeOf, control, gatewayIdOf, PUBLISH_KEY, presence, scanKeys } from '../support/control.js';
import { baseEnv, type GatewayProcess, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const WAVES = 10;
const PER_WAVE = 500;
/** Each wave gives every user two connections, one on each gateway. */
const USERS = PER_WAVE / 2;
const IN_FLIGHT = 100;
/** Control calls per wave, of each kind. */
const CALLS = 5;

type Client = TestClient & { welcome: Frame };

/** Runs `fn` for 0..n-1 with at most IN_FLIGHT at once. */
async function pool<T>(n: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

const redis = await startRedis();
t.teardown(() => redis.close());
const r = redis.client();
const gws: GatewayProcess[] = [];
for (let i = 0; i < 2; i++) {
  const gw = await startGateway(
    baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_LOG_LEVEL: 'info', HERALD_CONTROL_KEY: CONTROL_KEY, HERALD_PUBLISH_KEY: PUBLISH_KEY }),
  );
  t.teardown(() => gw.stop());
  gws.push(gw);
}
const [a, b] = gws as [GatewayProcess, GatewayProcess];
await waitFor(
  'both gateways in the heartbeat set',
  async () => (await gatewayIdOf(r, a)) !== undefined && (await gatewayIdOf(r, b)) !== undefined,
  10_000,
  50,
);
const aId = (await gatewayIdOf(r, a)) as string;
const bId = (await gatewayIdOf(r, b)) as string;

const run = randomUUID().slice(0, 6);
const connectAs = async (gw: GatewayProcess, sub: string, issuedAt = 0): Promise<Client> =>
  TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token({ sub, topics: ['feed:*'] }, { issuedAt })}` } });

t.test(`${WAVES * PER_WAVE} connects and disconnects with control calls between leave only the open connections in Redis`, async (t) => {
  // Connections that stay open through the churn: what Redis must still hold afterwards.
  const [s1, s2, s3] = ['s1', 's2', 's3'].map((s) => `stay-${run}-${s}`) as [string, string, string];
  const stayFeed = `feed:${run}-stay`;
  const staySrv = `srv:${run}-stay`;
  const stays = [await connectAs(a, s1), await connectAs(b, s1), await connectAs(a, s2), await connectAs(a, s2), await connectAs(b, s3)];
  t.teardown(async () => {
    for (const c of stays) await c.close();
  });
  const s3c = stays[4] as Client;
  t.equal((await s3c.request({ type: 'subscribe', topic: stayFeed, id: 'f' }))['type'], 'subscribed');
  t.equal((await control(a.http, 'subscribe', { user: s3, topic: staySrv })).status, 200);
  t.strictSame(await s3c.next('subscribed'), { type: 'subscribed', topic: staySrv, server: true });
  const baseline = await Promise.all(gws.map(async (g) => (await scrape(g.http)).value('herald_users')));
  t.strictSame(baseline, [2, 2], 'baseline: each gateway holds two of the users that stay');

  const churned = Array.from({ length: USERS }, (_, k) => `churn-${run}-${k}`);
  const revoked: string[] = [];
  const closes = new Map<string, number>();
  const count = (what: string): void => {
    closes.set(what, (closes.get(what) ?? 0) + 1);
  };
  const started = Date.now();

  for (let w = 0; w < WAVES; w++) {
    // Connection i: user i % USERS, on a for the first half and b for the second.
    const clients = await pool(PER_WAVE, (i) => connectAs(i < USERS ? a : b, churned[i % USERS] as string));
    // Two users per wave connect with tokens issued a minute ago, to be revoked.
    const doomed = [`rv-${run}-${w}-0`, `rv-${run}-${w}-1`];
    const old = await Promise.all(doomed.flatMap((u) => [connectAs(a, u, -60), connectAs(b, u, -60)]));
    revoked.push(...doomed);
    // Some subscribe to shared feeds, so that topic counts churn too.
    await pool(PER_WAVE, async (i) => {
      if (i % 3 === 0) await (clients[i] as Client).request({ type: 'subscribe', topic: `feed:${run}-${i % 20}`, id: 's' });
    });

    // Control calls on open connections: every user here is on both gateways.
    const user = (k: number): string => churned[(w * 4 * CALLS + k) % USERS] as string;
    for (let k = 0; k < CALLS; k++) {
      const via = k % 2 === 0 ? a : b;
      const d = await control(via.http, 'disconnect', { user: user(k), ...(k % 2 === 0 ? { reconnect: true } : {}) });
      if (d.status !== 200 || d.body['gateways'] !== 2) t.fail(`disconnect ${user(k)}: ${d.status} ${JSON.stringify(d.body)}`);
      const s = await control(via.http, 'subscribe', { user: user(CALLS + k), topic: `srv:${run}-${w}` });
      if (s.status !== 200 || s.body['gateways'] !== 2) t.fail(`subscribe: ${s.status} ${JSON.stringify(s.body)}`);
      const one = clients.find((c) => c.welcome['userId'] === user(2 * CALLS + k)) as Client;
      const c = await control(via.http, 'disconnect', { user: user(2 * CALLS + k), connectionId: one.welcome['connectionId'] });
      if (c.status !== 200) t.fail(`disconnect one: ${c.status}`);
    }
    for (const [k, u] of doomed.entries()) {
      const res = await control((k === 0 ? a : b).http, 'revoke', { user: u });
      if (res.status !== 200 || res.body['gateways'] !== 2) t.fail(`revoke ${u}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    for (const c of old) {
      const closed = await closeOf(c);
      count(`${closed.code} ${closed.reason}`);
    }

    // The rest close while more control calls come in: unsubscribes, subscribes, disconnects.
    const racing = (async () => {
      for (let k = 0; k < CALLS; k++) {
        const via = k % 2 === 0 ? b : a;
        for (const [action, body] of [
          ['unsubscribe', { user: user(CALLS + k), topic: `srv:${run}-${w}` }],
          ['subscribe', { user: user(3 * CALLS + k), topic: `srv:${run}-${w}-late` }],
          ['disconnect', { user: user(3 * CALLS + k) }],
        ] as const) {
          const res = await control(via.http, action, body);
          if (res.status !== 200) t.fail(`${action} while closing: ${res.status} ${JSON.stringify(res.body)}`);
        }
      }
    })();
    await pool(PER_WAVE, async (i) => {
      const c = clients[i] as Client;
      const closed = await c.close();
      count(closed.code === 4000 || closed.code === 4001 ? `${closed.code} ${closed.reason}` : 'by the client');
    });
    await racing;
  }
  const churnS = (Date.now() - started) / 1000;
  t.pass(
    `${WAVES * (PER_WAVE + 4)} connections opened and closed in ${churnS.toFixed(1)} s: ${JSON.stringify(Object.fromEntries(closes))}`,
  );
  t.equal(closes.get('1008 token_revoked'), WAVES * 4, 'every connection of a revoked user was closed 1008');
  t.ok((closes.get('4000 disconnected') ?? 0) >= WAVES * CALLS, 'the disconnects closed connections');
  t.ok((closes.get('4001 reconnect') ?? 0) >= WAVES * 2, 'and the reconnecting ones too');

  // Every churned user offline, as /presence says (at most 100 names per query).
  const everyone = [...churned, ...revoked];
  await waitFor(
    'every churned user to be offline',
    async () => {
      for (let i = 0; i < everyone.length; i += 100) {
        const p = await presence(b.http, everyone.slice(i, i + 100));
        if (Object.values(p.users).some((e) => e.connections !== 0 || e.online)) return false;
      }
      return true;
    },
    15_000,
    200,
  );
  t.pass(`/presence answers 0 for all ${everyone.length} churned users`);

  // What Redis must hold: the open connections' counts, nothing else.
  const expected = {
    presence: {
      [`herald:presence:{user:${s1}}`]: { [aId]: '1', [bId]: '1' },
      [`herald:presence:{user:${s2}}`]: { [aId]: '2' },
      [`herald:presence:{user:${s3}}`]: { [bId]: '1' },
    },
    subscribers: {
      'herald:subscribers:{system}': { [aId]: '3', [bId]: '2' },
      [`herald:subscribers:{user:${s1}}`]: { [aId]: '1', [bId]: '1' },
      [`herald:subscribers:{user:${s2}}`]: { [aId]: '2' },
      [`herald:subscribers:{user:${s3}}`]: { [bId]: '1' },
      [`herald:subscribers:{${stayFeed}}`]: { [bId]: '1' },
      [`herald:subscribers:{${staySrv}}`]: { [bId]: '1' },
    },
    gateways: {
      [`herald:gateway:${aId}`]: { [`c:${s1}`]: '1', [`c:${s2}`]: '2', 's:system': '3', [`s:user:${s1}`]: '1', [`s:user:${s2}`]: '2' },
      [`herald:gateway:${bId}`]: {
        [`c:${s1}`]: '1',
        [`c:${s3}`]: '1',
        's:system': '2',
        [`s:user:${s1}`]: '1',
        [`s:user:${s3}`]: '1',
        [`s:${stayFeed}`]: '1',
        [`s:${staySrv}`]: '1',
      },
    },
    controlChannels: [`herald:control:{user:${s1}}`, `herald:control:{user:${s2}}`, `herald:control:{user:${s3}}`].sort(),
  };
  const hashes = async (pattern: string): Promise<Record<string, Record<string, string>>> => {
    const out: Record<string, Record<string, string>> = {};
    for (const k of await scanKeys(r, pattern)) out[k] = await r.hgetall(k);
    return out;
  };
  const actual = async () => ({
    presence: await hashes('herald:presence:*'),
    subscribers: await hashes('herald:subscribers:*'),
    gateways: await hashes('herald:gateway:*'),
    controlChannels: ((await r.call('PUBSUB', 'CHANNELS', 'herald:control:*')) as string[]).sort(),
  });
  // Topic counts and channel leaves trail the user counts by a flush or an unsubscribe batch.
  await waitFor(
    'Redis to hold only the open connections',
    async () => JSON.stringify(await actual()) === JSON.stringify(expected),
    15_000,
    250,
  ).catch(() => undefined);
  const got = await actual();
  t.strictSame(got.presence, expected.presence, 'herald:presence:* holds the open connections only');
  t.strictSame(got.subscribers, expected.subscribers, 'herald:subscribers:* holds the topics the open connections hold only');
  t.strictSame(got.gateways, expected.gateways, "each gateway's herald:gateway:<gw> holds live entries only");
  t.strictSame(got.controlChannels, expected.controlChannels, 'the gateways hold the control channels of the open users only');
  const numsub = (await r.call('PUBSUB', 'NUMSUB', ...expected.controlChannels)) as Array<string | number>;
  t.strictSame(
    numsub.filter((_, i) => i % 2 === 1),
    [2, 1, 1],
    's1 is on both gateways, s2 and s3 on one each',
  );
  t.strictSame((await r.zrange('herald:gateways', 0, -1)).sort(), [aId, bId].sort(), 'both gateways beat, no other');
  t.equal((await scanKeys(r, 'herald:revoked:*')).length, revoked.length, 'one revocation per revoked user');

  const after = await Promise.all(gws.map((g) => scrape(g.http)));
  t.strictSame(
    after.map((m) => m.value('herald_users')),
    baseline,
    'herald_users is back to the baseline on each gateway',
  );
  t.strictSame(
    after.map((m) => m.value('herald_connections')),
    [3, 2],
    'herald_connections: the open ones',
  );
  t.strictSame(
    await presence(a.http, [s1, s2, s3], [staySrv]),
    {
      users: { [s1]: { online: true, connections: 2 }, [s2]: { online: true, connections: 2 }, [s3]: { online: true, connections: 1 } },
      topics: { [staySrv]: { connections: 1 } },
    },
    'the users that stayed are counted as before',
  );
  for (const [i, m] of after.entries()) {
    t.equal(m.value('herald_presence_flushes_total', { result: 'failed' }), 0, `gateway ${i}: no flush failed`);
    t.equal(m.value('herald_presence_reaped_total'), 0, `gateway ${i}: nobody was taken for dead`);
  }
  // The stays still get what is published to them.
  await fetch(`${a.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ topic: staySrv, data: { end: run } }),
  });
  t.match(await s3c.next('notification'), { topic: staySrv, data: { end: run } }, 'and the server-subscribed topic still delivers');
});

t.test('a reconnect storm: every user closes and reconnects at once, and each is counted exactly once afterwards', async (t) => {
  // A close makes the user's count dirty; the reconnect's admission check writes the new
  // count while the once-a-second flush may go out with the old one: whichever Redis
  // runs last, the user must end up counted, not left offline while connected.
  const STORM_USERS = 1000;
  const ROUNDS = 3;
  const users = Array.from({ length: STORM_USERS }, (_, i) => `storm-${run}-${i}`);
  const gwOf = (i: number): GatewayProcess => (i % 2 === 0 ? a : b);
  let clients = await pool(STORM_USERS, (i) => connectAs(gwOf(i), users[i] as string));
  for (let round = 0; round < ROUNDS; round++) {
    clients = await pool(STORM_USERS, async (i) => {
      await (clients[i] as Client).close();
      return connectAs(gwOf(i), users[i] as string);
    });
  }
  t.teardown(async () => {
    await pool(STORM_USERS, (i) => (clients[i] as Client).close());
  });
  const miscounted = async (): Promise<Array<[string, number]>> => {
    const out: Array<[string, number]> = [];
    for (let i = 0; i < users.length; i += 100) {
      const p = await presence(a.http, users.slice(i, i + 100));
      for (const [u, e] of Object.entries(p.users)) if (e.connections !== 1) out.push([u, e.connections]);
    }
    return out;
  };
  // The last closes are flushed within a second or two; a wrong count after that stays wrong.
  await waitFor('every user to count one connection', async () => (await miscounted()).length === 0, 10_000, 500).catch(() => undefined);
  const wrong = await miscounted();
  t.strictSame(wrong.slice(0, 10), [], `${STORM_USERS} users after ${ROUNDS} reconnects each: ${wrong.length} miscounted`);
  const hashes = await Promise.all(users.map((u) => r.hgetall(`herald:presence:{user:${u}}`)));
  t.equal(
    hashes.filter((h, i) => JSON.stringify(h) !== JSON.stringify({ [i % 2 === 0 ? aId : bId]: '1' })).length,
    0,
    "Redis holds one connection for each user, on its gateway's field",
  );
  t.strictSame(
    (await Promise.all(gws.map((g) => scrape(g.http)))).map((m) => m.value('herald_connections')),
    [STORM_USERS / 2, STORM_USERS / 2],
    'the gateways agree',
  );
});

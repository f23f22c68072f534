// Interest routing under churn (load-heavy: `make test` runs it after the rest): 5,000
// connections open, subscribe and unsubscribe shared topics and close, twice. Afterwards
// redis-server holds no stale subscription for the gateway, and the connect bursts cost
// SUBSCRIBE commands by the second (a paced batch), not one per connection.
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const CONNECTIONS = 5000;
const FEEDS = 500;
const IN_FLIGHT = 100;

const redis = await startRedis();
t.teardown(() => redis.close());
const pub = redis.client();
const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_LOG_LEVEL: 'info', HERALD_RATE_LIMIT_MESSAGES: '0' }));
t.teardown(() => gw.stop());
await gw.waitForLog((l) => l.msg === 'redis subscription active');

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

/** What redis-server itself says the gateway's subscriber connection holds. */
async function redisView(): Promise<{ channels: string[]; sub: number }> {
  const channels = ((await pub.call('PUBSUB', 'CHANNELS', 'herald:notify:*')) as string[]).sort();
  const list = String(await pub.client('LIST'));
  const sub = Number(new RegExp(`name=herald-subscriber-${gw.proc.pid} [^\\n]*? sub=(\\d+)`).exec(list)?.[1] ?? NaN);
  return { channels, sub };
}

for (const round of [1, 2]) {
  t.test(`round ${round}: ${CONNECTIONS} connections subscribe, unsubscribe and close; nothing stale is left`, async (t) => {
    const run = randomUUID().slice(0, 6);
    const before = await scrape(gw.http);
    const started = Date.now();
    const clients: Client[] = await pool(CONNECTIONS, async (i) =>
      TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token({ sub: `churn-${run}-${i}`, topics: ['feed:*'] })}` } }),
    );
    const connectS = (Date.now() - started) / 1000;
    const afterConnect = await scrape(gw.http);
    const subscribes =
      afterConnect.value('herald_redis_subscription_commands_total', { command: 'subscribe' }) -
      before.value('herald_redis_subscription_commands_total', { command: 'subscribe' });
    // 200 a second once the burst allowance of 50 is spent (interest.ts), plus one, for
    // each of the two kinds of channel: topics, and the users' control channels.
    const bound = 2 * (Math.ceil(50 + 200 * connectS) + 2);
    t.ok(
      subscribes <= bound,
      `${CONNECTIONS} connects in ${connectS.toFixed(1)} s cost ${subscribes} SUBSCRIBE commands (at most ${bound})`,
    );
    t.equal(afterConnect.value('herald_redis_subscriptions', { kind: 'topic' }), CONNECTIONS + 1, 'one channel per user, and system');

    await pool(CONNECTIONS, async (i) => {
      const c = clients[i] as Client;
      const topic = `feed:${run}-${i % FEEDS}`;
      const r = await c.request({ type: 'subscribe', topic, id: 's' });
      if (r['type'] !== 'subscribed') throw new Error(`subscribe ${topic}: ${JSON.stringify(r)}`);
      if (i % 2 === 0) await c.request({ type: 'unsubscribe', topic, id: 'u' });
    });
    const held = await scrape(gw.http);
    // Every odd feed is held; the even ones only until the next unsubscribe sweep.
    t.ok(held.value('herald_redis_subscriptions', { kind: 'topic' }) >= CONNECTIONS + 1 + FEEDS / 2, 'the feeds joined');
    // The odd connections keep every feed whose number is odd (i % 500 has i's parity).
    await waitFor(
      'the even feeds to be left',
      async () => (await scrape(gw.http)).value('herald_redis_subscriptions', { kind: 'topic' }) === CONNECTIONS + 1 + FEEDS / 2,
      5000,
      100,
    );
    t.pass('feeds nobody holds any more were left');
    const marker = randomUUID();
    await pub.publish(`notifications:feed:${run}-1`, JSON.stringify({ marker }));
    const got = await (clients[1] as Client).next('notification');
    t.same(got['data'], { marker }, 'a held feed still delivers');

    await pool(CONNECTIONS, async (i) => {
      await (clients[i] as Client).close();
    });
    await waitFor(
      'every channel but system to be left',
      async () => {
        const v = await redisView();
        return v.sub === 1 && v.channels.length === 1;
      },
      10_000,
      100,
    );
    t.same(
      await redisView(),
      { channels: ['herald:notify:{system}'], sub: 1 },
      "redis-server's PUBSUB CHANNELS and CLIENT LIST: only system is left",
    );
    t.strictSame(await pub.call('PUBSUB', 'CHANNELS', 'herald:control:*'), [], "and every user's control channel was left");
    const after = await scrape(gw.http);
    t.equal(after.value('herald_redis_subscriptions', { kind: 'topic' }), 1, 'and the gateway agrees');
    t.equal(after.value('herald_redis_subscriptions', { kind: 'control' }), 0, 'no control channel held');
    t.equal(after.value('herald_connections'), 0);
    t.equal(after.value('herald_topics'), 0, 'no topic held in uWS either');
  });
}

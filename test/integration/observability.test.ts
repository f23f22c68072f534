// Observability: GET /stats, the metrics added for production (topics, Redis
// reconnects, auth latency, default process metrics, backpressure drops) and the
// connection fields on every log line about a connection. Every wait has a deadline.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { HostStats, WorkerStats } from '../../dist/stats.js';
import { type Frame, refusedUpgrade, TestClient } from '../support/client.js';
import { baseEnv, type GatewayProcess, type LogLine, ROOT, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { TEST_SECRET, token } from '../support/tokens.js';

type Client = TestClient & { welcome: Frame };

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const PUBLISH_KEY = 'observability-publish-key-0123';

async function stats(gw: GatewayProcess): Promise<HostStats> {
  const res = await fetch(`${gw.http}/stats`, { signal: AbortSignal.timeout(3000) });
  if (res.status !== 200) throw new Error(`/stats answered ${res.status}`);
  return (await res.json()) as HostStats;
}

async function connect(t: Test, gw: GatewayProcess, claims: Record<string, unknown>): Promise<Client> {
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token(claims)}` } });
  t.teardown(() => c.close());
  return c;
}

/** /stats connections/topics (host and the one worker) and herald_topics, in one read. */
async function counts(
  gw: GatewayProcess,
): Promise<{ connections: number; workerConnections: number; topics: number; topicsGauge: number }> {
  const s = await stats(gw);
  const m = await scrape(gw.http);
  return {
    connections: s.connections,
    workerConnections: s.workers[0]?.connections ?? -1,
    topics: s.workers[0]?.topics ?? -1,
    topicsGauge: m.value('herald_topics'),
  };
}

/** Waits until /stats and /metrics agree on `want`, then returns what they said. */
async function countsReach(gw: GatewayProcess, want: { connections: number; topics: number }): Promise<Awaited<ReturnType<typeof counts>>> {
  let last = await counts(gw);
  await waitFor(
    `/stats and herald_topics to reach ${JSON.stringify(want)}`,
    async () => {
      last = await counts(gw);
      return last.connections === want.connections && last.topics === want.topics && last.topicsGauge === want.topics;
    },
    3000,
    20,
  );
  return last;
}

t.test('GET /stats in embedded mode describes the host and its one worker', async (t) => {
  const gw = await startGateway(baseEnv());
  t.teardown(() => gw.stop());
  const res = await fetch(`${gw.http}/stats`, { signal: AbortSignal.timeout(3000) });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^application\/json/);
  const s = (await res.json()) as HostStats;
  t.same(Object.keys(s).sort(), ['connections', 'mode', 'redis', 'uptimeS', 'version', 'workers'], 'exactly the documented fields');
  t.equal(s.version, VERSION, "version is package.json's");
  t.equal(s.mode, 'embedded');
  t.equal(s.redis, 'embedded');
  t.equal(s.connections, 0);
  t.ok(Number.isInteger(s.uptimeS) && s.uptimeS >= 0, 'uptimeS is a whole number of seconds');
  t.equal(s.workers.length, 1);
  const w = s.workers[0] as WorkerStats;
  t.same(Object.keys(w).sort(), ['connections', 'id', 'pid', 'redis', 'rssBytes', 'topics', 'uptimeS']);
  t.equal(w.id, 0);
  t.equal(w.pid, gw.proc.pid, 'pid is the gateway process');
  t.equal(w.connections, 0);
  t.equal(w.topics, 0);
  t.ok(w.rssBytes > 10 * 1024 * 1024, `rssBytes is a plausible resident size (${w.rssBytes})`);
  t.ok(Number.isInteger(w.uptimeS) && w.uptimeS >= 0);
  t.equal(w.redis, 'embedded');
});

t.test('/stats connections and topics, and herald_topics, follow clients as they connect, subscribe and leave', async (t) => {
  const gw = await startGateway(baseEnv());
  t.teardown(() => gw.stop());
  t.same(await countsReach(gw, { connections: 0, topics: 0 }), { connections: 0, workerConnections: 0, topics: 0, topicsGauge: 0 });

  // Each client starts on user:<sub> and system; system is shared.
  const alice = await connect(t, gw, { sub: 'alice', topics: ['feed:*'] });
  t.same(
    await countsReach(gw, { connections: 1, topics: 2 }),
    { connections: 1, workerConnections: 1, topics: 2, topicsGauge: 2 },
    'alice: user:alice, system',
  );
  const bob = await connect(t, gw, { sub: 'bob' });
  t.same(
    await countsReach(gw, { connections: 2, topics: 3 }),
    { connections: 2, workerConnections: 2, topics: 3, topicsGauge: 3 },
    'bob adds user:bob only',
  );

  t.equal((await alice.request({ type: 'subscribe', topic: 'feed:news', id: 's1' }))['type'], 'subscribed');
  t.same(
    await countsReach(gw, { connections: 2, topics: 4 }),
    { connections: 2, workerConnections: 2, topics: 4, topicsGauge: 4 },
    'a granted subscribe adds a topic',
  );
  t.equal((await alice.request({ type: 'subscribe', topic: 'feed:news', id: 's2' }))['type'], 'subscribed');
  t.same(
    await countsReach(gw, { connections: 2, topics: 4 }),
    { connections: 2, workerConnections: 2, topics: 4, topicsGauge: 4 },
    'subscribing twice counts once',
  );
  t.equal((await alice.request({ type: 'unsubscribe', topic: 'feed:news', id: 'u1' }))['type'], 'unsubscribed');
  t.same(
    await countsReach(gw, { connections: 2, topics: 3 }),
    { connections: 2, workerConnections: 2, topics: 3, topicsGauge: 3 },
    'unsubscribing the last subscriber removes it',
  );

  await bob.close();
  t.same(
    await countsReach(gw, { connections: 1, topics: 2 }),
    { connections: 1, workerConnections: 1, topics: 2, topicsGauge: 2 },
    'system stays while alice holds it',
  );
  await alice.close();
  t.same(
    await countsReach(gw, { connections: 0, topics: 0 }),
    { connections: 0, workerConnections: 0, topics: 0, topicsGauge: 0 },
    'back to zero',
  );
});

t.test(
  'in Redis mode /stats says redis up, down after Redis dies, and up again after it returns; herald_redis_reconnects_total counts the reconnect',
  async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.close());
    const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url }));
    t.teardown(() => gw.stop());
    await gw.waitForLog((l) => l.msg === 'redis subscription active');

    let s = await stats(gw);
    t.equal(s.mode, 'redis');
    t.equal(s.redis, 'up');
    t.equal(s.workers[0]?.redis, 'up');
    const reconnectsBefore = (await scrape(gw.http)).value('herald_redis_reconnects_total');
    t.equal(reconnectsBefore, 0, 'no reconnect while Redis has stayed up');

    await redis.kill();
    await waitFor('/stats redis "down"', async () => (await stats(gw)).redis === 'down', 5000, 50);
    s = await stats(gw);
    t.equal(s.redis, 'down');
    t.equal(s.mode, 'redis', 'still Redis mode while Redis is away');
    t.equal(s.workers[0]?.redis, 'down');
    t.ok((await scrape(gw.http)).value('herald_redis_reconnects_total') >= 1, 'a reconnect began after the connection was lost');

    await redis.start();
    await waitFor('/stats redis "up" again', async () => (await stats(gw)).redis === 'up', 10_000, 50);
    const m = await scrape(gw.http);
    t.ok(
      m.value('herald_redis_reconnects_total') > reconnectsBefore,
      `herald_redis_reconnects_total grew (${m.value('herald_redis_reconnects_total')})`,
    );
    t.equal(m.value('herald_redis_up'), 1);
  },
);

t.test(
  'herald_auth_duration_seconds_count grows by one per token verified, accepted or refused, and not for an upgrade without a token',
  async (t) => {
    const gw = await startGateway(baseEnv());
    t.teardown(() => gw.stop());
    const before = await scrape(gw.http);
    await connect(t, gw, { sub: 'alice' });
    await connect(t, gw, { sub: 'bob' });
    const forged = await token({ sub: 'mallory' }, { secret: `${TEST_SECRET}-but-another-one` });
    t.equal(
      (await refusedUpgrade(gw.ws, { headers: { authorization: `Bearer ${forged}` } })).status,
      401,
      'a forged token is verified and refused',
    );
    t.equal((await refusedUpgrade(gw.ws)).status, 401, 'no token: refused before any verification');

    const after = await scrape(gw.http);
    const delta = (name: string): number => after.value(name) - before.value(name);
    t.equal(delta('herald_auth_duration_seconds_count'), 3, 'two accepted + one refused');
    t.ok(delta('herald_auth_duration_seconds_sum') > 0, 'the histogram sum grew');
    t.ok(delta('herald_auth_duration_seconds_sum') < 3, 'in seconds, not milliseconds');
    t.equal(
      after.value('herald_auth_duration_seconds_bucket', { le: '+Inf' }) -
        before.value('herald_auth_duration_seconds_bucket', { le: '+Inf' }),
      3,
    );
  },
);

t.test('/metrics carries prom-client default process metrics and event-loop lag under the herald_ prefix', async (t) => {
  const gw = await startGateway(baseEnv());
  t.teardown(() => gw.stop());
  const m = await scrape(gw.http);
  t.ok(m.value('herald_process_resident_memory_bytes') > 10 * 1024 * 1024, 'resident memory in bytes');
  t.ok(m.value('herald_process_cpu_seconds_total') > 0, 'CPU seconds');
  t.ok(m.value('herald_process_open_fds') > 0, 'open file descriptors');
  t.ok(m.value('herald_process_max_fds') > 0, 'the open-files limit');
  t.ok(m.value('herald_nodejs_heap_size_used_bytes') > 0, 'heap');
  t.ok(m.value('herald_nodejs_eventloop_lag_seconds') >= 0, 'event-loop lag in seconds');
  t.ok(m.value('herald_nodejs_eventloop_lag_p99_seconds') >= 0, 'event-loop lag p99');
  t.ok(m.value('herald_process_start_time_seconds') > 1_600_000_000, 'start time in Unix seconds');
  for (const name of ['herald_redis_up', 'herald_redis_reconnects_total', 'herald_topics', 'herald_direct_frames_dropped_total']) {
    t.equal(m.value(name), 0, `${name} is exported (0 in a fresh embedded gateway)`);
  }
  const unprefixed = m.samples.filter((s) => !s.name.startsWith('herald_'));
  t.same(
    unprefixed.map((s) => s.name),
    [],
    'every metric has the herald_ prefix',
  );
});

t.test('herald_direct_frames_dropped_total stays 0 after a normal session', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_PUBLISH_KEY: PUBLISH_KEY }));
  t.teardown(() => gw.stop());
  const alice = await connect(t, gw, { sub: 'alice' });
  t.equal((await alice.request({ type: 'ping', id: 1 }))['type'], 'pong');
  const res = await fetch(`${gw.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify([
      { topic: 'user:alice', data: { n: 1 } },
      { topic: 'system', data: { n: 2 } },
    ]),
    signal: AbortSignal.timeout(3000),
  });
  t.equal(res.status, 202);
  t.same((await alice.next('notification'))['data'], { n: 1 });
  t.same((await alice.next('notification'))['data'], { n: 2 });
  await alice.close();
  const m = await scrape(gw.http);
  t.ok(m.value('herald_messages_sent_total') >= 4, 'connected, pong and two notifications were sent');
  t.equal(m.value('herald_direct_frames_dropped_total'), 0);
});

/** Log lines from the gateway that mention a connection (by id or by message). */
function connectionLines(logs: readonly LogLine[]): LogLine[] {
  return logs.filter((l) => 'connectionId' in l || /^(connection|ack|mark_read)\b/.test(l.msg));
}

t.test('every log line about a connection carries its connectionId and userId, an unrecorded ack included', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_LOG_LEVEL: 'debug' }));
  t.teardown(() => gw.stop());
  await gw.waitForLog((l) => l.msg === 'redis subscription active');

  const alice = await connect(t, gw, { sub: 'alice' });
  const aliceId = alice.welcome['connectionId'] as string;
  const opened = await gw.waitForLog((l) => l.msg === 'connection open' && l['connectionId'] === aliceId);
  t.equal(opened['userId'], 'alice');

  // With Redis gone, the command connection fails fast and the ack is reported as not recorded.
  await redis.kill();
  await waitFor(
    '/readyz 503 (Redis gone)',
    async () => (await fetch(`${gw.http}/readyz`, { signal: AbortSignal.timeout(3000) })).status === 503,
    5000,
    50,
  );
  const reply = await alice.request({ type: 'ack', notificationId: 'n-1', id: 'a1' });
  t.equal(reply['type'], 'error');
  t.equal(reply['code'], 'unavailable');
  const unrecorded = await gw.waitForLog((l) => l.msg === 'ack not recorded');
  t.equal(unrecorded['connectionId'], aliceId);
  t.equal(unrecorded['userId'], 'alice');

  await alice.close();
  const closed = await gw.waitForLog((l) => l.msg === 'connection closed' && l['connectionId'] === aliceId);
  t.equal(closed['userId'], 'alice');
  t.equal(closed['code'], 1000);

  const lines = connectionLines(gw.logs);
  t.ok(lines.length >= 3, `found ${lines.length} connection log lines`);
  for (const l of lines) {
    t.ok(typeof l['connectionId'] === 'string' && typeof l['userId'] === 'string', `"${l.msg}" has connectionId and userId`);
  }
});

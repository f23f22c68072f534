// HERALD_WORKERS: a supervisor runs N gateway processes on one port (SO_REUSEPORT),
// each with its own Redis subscriber. Clients land on either worker; a notification
// reaches them wherever they are; a worker that dies takes only its own clients and
// comes back; /stats and /metrics answer for the whole host; SIGTERM drains all.
// Real redis-server, real ws clients, every wait bounded.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, type GatewayProcess, type LogLine, spawnMain, startGateway } from '../support/gateway.js';
import { freePort, waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { type RedisServer, startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

type Client = TestClient & { welcome: Frame; sub: string; worker: number };

interface WorkerStats {
  id: number;
  pid: number;
  connections: number;
  topics: number;
  redis: string;
}
interface Stats {
  mode: string;
  redis: string;
  connections: number;
  workers: WorkerStats[];
}

/** How many clients we are willing to open to see both workers hold one. With
 *  SO_REUSEPORT hashing each lands on either worker, so 60 all on one is ~2^-59. */
const MAX_CLIENTS = 60;

async function stats(gw: GatewayProcess): Promise<Stats> {
  const res = await fetch(`${gw.http}/stats`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`/stats answered ${res.status}`);
  return (await res.json()) as Stats;
}

function isWorkerLine(msg: string, worker: number, pid?: number): (l: LogLine) => boolean {
  return (l) => l.msg === msg && l['worker'] === worker && (pid === undefined || l['pid'] === pid);
}

function within<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** Running, not a zombie: an orphan that exits is reparented to an init that may
 *  never reap it, and a zombie still answers kill(pid, 0). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

t.test('HERALD_WORKERS=2 is refused at start, exit code 2 naming HERALD_WORKERS', async (t) => {
  const rows: Array<{ what: string; env: Record<string, string>; says: RegExp }> = [
    { what: 'embedded mode (no HERALD_REDIS_URL)', env: { HERALD_WORKERS: '2', HERALD_PORT: '8080' }, says: /HERALD_REDIS_URL/ },
    { what: 'HERALD_PORT=0', env: { HERALD_WORKERS: '2', HERALD_PORT: '0', HERALD_REDIS_URL: 'redis://127.0.0.1:1' }, says: /HERALD_PORT/ },
  ];
  for (const row of rows) {
    const child = spawnMain(t, [], baseEnv(row.env));
    const { code } = await within(`${row.what}: exit`, child.exited, 20_000);
    t.equal(code, 2, `${row.what}: exit code 2`);
    t.match(child.stderr(), /^herald: configuration error: HERALD_WORKERS:/m, `${row.what}: stderr names HERALD_WORKERS`);
    t.match(child.stderr(), row.says, `${row.what}: and says what to set`);
    t.notMatch(child.stdout(), 'worker started', `${row.what}: no worker was started`);
  }
});

t.test('two workers share one port under the supervisor', async (t) => {
  const redis: RedisServer = await startRedis();
  t.teardown(() => redis.close());
  const pub = redis.client();
  const port = await freePort();
  const gw = await startGateway(
    baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_PORT: String(port), HERALD_WORKERS: '2', HERALD_SHUTDOWN_TIMEOUT_S: '5' }),
  );
  // Teardown: drain through the supervisor; then make sure no worker outlived it.
  t.teardown(async () => {
    await within('supervisor exit at teardown', gw.stop(), 15_000).catch(() => gw.proc.kill('SIGKILL'));
    for (const l of gw.logs) {
      const pid = l['workerPid'];
      if (l.msg === 'worker started' && typeof pid === 'number' && alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
  for (const w of [0, 1]) await gw.waitForLog(isWorkerLine('redis subscription active', w), 15_000);

  const started = (id: number): LogLine[] => gw.logs.filter((l) => l.msg === 'worker started' && l['workerId'] === id);
  const clients: Client[] = [];
  let serial = 0;

  /** Connects a new, distinct user and finds which worker holds it from that worker's 'connection open' line. */
  async function connectOne(): Promise<Client> {
    const sub = `user-${serial++}`;
    const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token({ sub })}` } });
    t.teardown(() => c.close());
    const opened = await gw.waitForLog((l) => l.msg === 'connection open' && l['connectionId'] === c.welcome['connectionId']);
    const client = Object.assign(c, { sub, worker: opened['worker'] as number });
    clients.push(client);
    return client;
  }
  const on = (w: number): Client[] => clients.filter((c) => c.worker === w && c.ws.readyState === c.ws.OPEN);

  t.test('clients spread across both workers, as /stats shows per worker', async (t) => {
    const first = await stats(gw);
    t.equal(first.mode, 'redis');
    t.equal(first.redis, 'up', "every worker's Redis link is up");
    t.same(
      first.workers.map((w) => w.id),
      [0, 1],
    );
    t.same(
      first.workers.map((w) => w.pid),
      [0, 1].map((id) => started(id)[0]?.['workerPid']),
      'pids are the ones the supervisor started',
    );
    t.not(first.workers[0]?.pid, first.workers[1]?.pid);
    t.not(first.workers[0]?.pid, gw.proc.pid, 'workers are not the supervisor');

    let s = first;
    while (!s.workers.every((w) => w.connections >= 1)) {
      if (clients.length >= MAX_CLIENTS) {
        t.fail(`${MAX_CLIENTS} clients all landed on one worker: ${JSON.stringify(s.workers)}`);
        return;
      }
      await connectOne();
      s = await stats(gw);
    }
    t.pass(`${clients.length} clients spread: ${s.workers.map((w) => `worker ${w.id} holds ${w.connections}`).join(', ')}`);
    t.equal(s.connections, clients.length, 'host connections = all clients');
    for (const w of s.workers) t.equal(w.connections, on(w.id).length, `worker ${w.id}'s count matches the clients its log says it opened`);
    // Each worker holds user:<sub> for each of its clients, and system.
    for (const w of s.workers) t.equal(w.topics, on(w.id).length + 1, `worker ${w.id} topics = its users + system`);
  });

  t.test('a PUBLISH to notifications:system reaches every client on both workers', async (t) => {
    t.equal(await pub.publish('notifications:system', JSON.stringify({ all: 1 })), 2, 'both workers hold a pattern subscription');
    const got = await Promise.all(clients.map((c) => c.next('notification')));
    for (const n of got) t.same([n['topic'], n['data']], ['system', { all: 1 }]);
    t.equal(got.length, clients.length);
  });

  t.test('a targeted PUBLISH reaches its user whichever worker holds it, and no one else', async (t) => {
    const targets = [on(0)[0], on(1)[0]].filter((c) => c !== undefined);
    t.equal(targets.length, 2, 'one target on each worker');
    for (const c of targets) await pub.publish(`notifications:user:${c.sub}`, JSON.stringify({ for: c.sub }));
    // Barrier: uWS keeps publish order, so when the barrier arrives, anything else would have too.
    await pub.publish('notifications:system', JSON.stringify({ barrier: 1 }));
    for (const c of clients) {
      const n = await c.next('notification');
      if (targets.includes(c)) {
        t.same([n['topic'], n['data']], [`user:${c.sub}`, { for: c.sub }], `${c.sub} on worker ${c.worker} got its own`);
        t.same((await c.next('notification'))['data'], { barrier: 1 });
      } else {
        t.same(n['data'], { barrier: 1 }, `${c.sub} got nothing before the barrier`);
      }
    }
  });

  t.test('/metrics aggregates every worker: herald_connections is all clients and herald_redis_up is 2', async (t) => {
    const s = await stats(gw);
    // Each scrape lands on either worker; every answer must be the host total.
    for (let i = 0; i < 4; i++) {
      const m = await scrape(gw.http);
      t.equal(m.value('herald_connections'), clients.length, `scrape ${i}: herald_connections`);
      t.equal(m.value('herald_redis_up'), 2, `scrape ${i}: herald_redis_up`);
      t.equal(
        m.value('herald_topics'),
        s.workers.reduce((n, w) => n + w.topics, 0),
        `scrape ${i}: herald_topics sums the workers'`,
      );
      t.equal(m.value('herald_connections_opened_total'), clients.length, `scrape ${i}: herald_connections_opened_total`);
      t.equal(
        m.value('herald_notifications_published_total'),
        2 + 2 + 2,
        `scrape ${i}: two system + two targeted deliveries + two barriers`,
      );
    }
  });

  t.test('SIGKILL of one worker drops only its clients; the supervisor restarts it with a new pid', async (t) => {
    const victim = 1;
    const survivorId = 0;
    const before = await stats(gw);
    const victimPid = before.workers.find((w) => w.id === victim)?.pid as number;
    t.ok(victimPid > 0, `worker ${victim} is pid ${victimPid}`);
    const doomed = on(victim);
    const survivors = on(survivorId);
    t.ok(doomed.length >= 1 && survivors.length >= 1);

    process.kill(victimPid, 'SIGKILL');
    const closes = await within("the killed worker's clients to see their connection drop", Promise.all(doomed.map((c) => c.closed)), 5000);
    for (const c of closes) t.equal(c.code, 1006, 'dropped without a close frame');

    const exited = await gw.waitForLog((l) => l.msg === 'worker exited; restarting' && l['workerId'] === victim, 5000);
    t.equal(exited['signal'], 'SIGKILL');
    t.equal(exited['level'], 'error');
    await waitFor(`a second 'worker started' for worker ${victim}`, () => started(victim).length === 2, 10_000, 20);
    const newPid = started(victim)[1]?.['workerPid'] as number;
    t.not(newPid, victimPid, `worker ${victim} is back as pid ${newPid}`);
    t.equal(started(survivorId).length, 1, 'the other worker was not restarted');

    // The survivors never noticed.
    for (const c of survivors) {
      t.equal(c.ws.readyState, c.ws.OPEN, `${c.sub} is still connected`);
      t.equal((await c.request({ type: 'ping', id: `after-kill-${c.sub}` }))['type'], 'pong', `${c.sub} still gets pongs`);
    }
    await pub.publish('notifications:system', JSON.stringify({ afterKill: 1 }));
    for (const c of survivors) t.same((await c.next('notification'))['data'], { afterKill: 1 }, `${c.sub} still gets notifications`);

    await waitFor(
      '/stats to show two workers again, worker 1 with its new pid',
      async () => {
        const s = await stats(gw);
        return s.workers.length === 2 && s.workers.find((w) => w.id === victim)?.pid === newPid;
      },
      10_000,
      50,
    );
    await gw.waitForLog(isWorkerLine('redis subscription active', victim, newPid), 10_000);
    const after = await stats(gw);
    t.same(
      after.workers.map((w) => [w.id, w.connections]),
      [
        [0, survivors.length],
        [1, 0],
      ],
      'the new worker starts empty',
    );
    t.equal(after.connections, survivors.length);
    await waitFor('/stats redis up on both workers', async () => (await stats(gw)).redis === 'up', 10_000, 50);
  });

  t.test('the restarted worker serves new clients', async (t) => {
    let fresh: Client | undefined;
    for (let i = 0; i < MAX_CLIENTS && fresh === undefined; i++) {
      const c = await connectOne();
      if (c.worker === 1) fresh = c;
    }
    if (fresh === undefined) {
      t.fail(`${MAX_CLIENTS} new clients all landed on worker 0`);
      return;
    }
    // PUBLISH counts the recorders that received it (a killed worker's slot is taken over within seconds).
    t.ok((await pub.publish(`notifications:user:${fresh.sub}`, JSON.stringify({ hello: 'again' }))) >= 1, 'a recorder received it');
    t.same((await fresh.next('notification'))['data'], { hello: 'again' });
    const m = await scrape(gw.http);
    t.equal(m.value('herald_redis_up'), 2);
    t.equal(m.value('herald_connections'), on(0).length + on(1).length, 'herald_connections counts the live clients of both workers');
  });

  t.test('SIGTERM to the supervisor closes every client with 1001 shutting_down and exits 0', async (t) => {
    const open = [...on(0), ...on(1)];
    t.ok(on(0).length >= 1 && on(1).length >= 1, 'clients on both workers');
    const workerPids = (await stats(gw)).workers.map((w) => w.pid);
    const result = await within('the supervisor to exit', gw.stop('SIGTERM'), 15_000);
    t.same(result, { code: 0, signal: null }, 'the supervisor exits 0');
    for (const c of open)
      t.same(await within(`${c.sub} close`, c.closed, 5000), { code: 1001, reason: 'shutting_down' }, `${c.sub} on worker ${c.worker}`);
    t.ok(
      gw.logs.some((l) => l.msg === 'draining workers' && l['signal'] === 'SIGTERM'),
      'the supervisor logs the drain',
    );
    for (const id of [0, 1]) {
      t.ok(
        gw.logs.some((l) => l.msg === 'worker stopped' && l['workerId'] === id && l['code'] === 0),
        `worker ${id} stopped with code 0`,
      );
    }
    for (const pid of workerPids) t.notOk(alive(pid), `worker pid ${pid} is gone`);
  });
});

t.test('when the supervisor is SIGKILLed its workers exit instead of holding the port as orphans', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const port = await freePort();
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_PORT: String(port), HERALD_WORKERS: '2' }));
  for (const w of [0, 1]) await gw.waitForLog(isWorkerLine('redis subscription active', w), 15_000);
  const workerPids = gw.logs.filter((l) => l.msg === 'worker started').map((l) => l['workerPid'] as number);
  t.equal(workerPids.length, 2);
  // The workers are this test's processes: never leave one behind, whatever the outcome.
  t.teardown(() => {
    for (const pid of workerPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });

  t.same(await within('supervisor SIGKILL', gw.stop('SIGKILL'), 5000), { code: null, signal: 'SIGKILL' });
  // Node's own cluster workers exit when the IPC channel to their primary closes; a
  // worker that stays keeps serving a port that a restarted supervisor then shares.
  await waitFor('both workers to exit after their supervisor died', () => workerPids.every((pid) => !alive(pid)), 5000, 50).catch(
    () => undefined,
  );
  t.same(workerPids.filter(alive), [], 'within 5 s no worker outlives the supervisor (the list shows those still running)');
});

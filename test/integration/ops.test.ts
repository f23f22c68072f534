// Operating the gateway: liveness and readiness, a Redis outage and recovery, the
// metrics a scripted session moves, graceful shutdown, configuration errors at start
// and dev mode. Every wait has a deadline.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, get as httpGet } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { type Frame, refusedUpgrade, TestClient } from '../support/client.js';
import { baseEnv, type SpawnResult, spawnMain, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { type Metrics, scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { TEST_SECRET, token } from '../support/tokens.js';

type Client = TestClient & { welcome: Frame };

async function get(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function connect(t: Test, url: string, sub: string): Promise<Client> {
  const c = await TestClient.connect(url, { headers: { authorization: `Bearer ${await token({ sub })}` } });
  t.teardown(() => c.close());
  return c;
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'herald-ops-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The process's exit, or a rejection after `ms`. */
function exitWithin(
  child: Pick<SpawnResult, 'exited' | 'stderr'>,
  ms: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms; stderr: ${child.stderr()}`)), ms);
  });
  return Promise.race([child.exited, deadline]).finally(() => clearTimeout(timer));
}

t.test('GET /healthz is 200 and GET /readyz is 200 ready in embedded mode', async (t) => {
  const gw = await startGateway(baseEnv());
  t.teardown(() => gw.stop());
  t.same(await get(`${gw.http}/healthz`), { status: 200, body: { status: 'ok' } });
  t.same(await get(`${gw.http}/readyz`), { status: 200, body: { status: 'ready' } });
});

t.test('in Redis mode /readyz is 200 once the subscription is active', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url }));
  t.teardown(() => gw.stop());
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  t.same(await get(`${gw.http}/readyz`), { status: 200, body: { status: 'ready' } });
  t.equal((await scrape(gw.http)).value('herald_redis_up'), 1);
});

t.test('a Redis outage turns /readyz 503 while clients stay connected; after Redis returns, readiness and delivery resume', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url }));
  t.teardown(() => gw.stop());
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  const alice = await connect(t, gw.ws, 'alice');
  const pub = redis.client();

  await redis.kill();
  await waitFor('/readyz to turn 503', async () => (await get(`${gw.http}/readyz`)).status === 503, 5000, 50);
  t.same(await get(`${gw.http}/readyz`), { status: 503, body: { status: 'unavailable', reason: 'redis_unavailable' } });
  t.same(await get(`${gw.http}/healthz`), { status: 200, body: { status: 'ok' } }, 'liveness does not depend on Redis');
  t.equal((await scrape(gw.http)).value('herald_redis_up'), 0);
  const pong = await alice.request({ type: 'ping', id: 'during-outage' });
  t.equal(pong['type'], 'pong', 'the client is still connected and served');

  await redis.start();
  await waitFor('/readyz back to 200', async () => (await get(`${gw.http}/readyz`)).status === 200, 10_000, 50);
  t.same(await get(`${gw.http}/readyz`), { status: 200, body: { status: 'ready' } });
  t.equal((await scrape(gw.http)).value('herald_redis_up'), 1);
  t.equal(await pub.publish('notifications:user:alice', '{"after":"outage"}'), 1, 'the gateway subscribed again');
  const n = await alice.next('notification', { timeoutMs: 5000 });
  t.same(n['data'], { after: 'outage' });
  t.equal(alice.ws.readyState, alice.ws.OPEN);
});

t.test('/metrics moves by exactly what a scripted session did', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_RATE_LIMIT_MESSAGES: '3' }));
  t.teardown(() => gw.stop());
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  const pub = redis.client();
  const before = await scrape(gw.http);
  const delta = (after: Metrics, name: string, labels?: Record<string, string>): number =>
    after.sum(name, labels) - before.sum(name, labels);

  // Two refused upgrades.
  t.equal((await refusedUpgrade(gw.ws)).status, 401);
  const forged = await token({ sub: 'mallory' }, { secret: `${TEST_SECRET}-but-another-one` });
  t.equal((await refusedUpgrade(gw.ws, { headers: { authorization: `Bearer ${forged}` } })).status, 401);

  // Two clients; alice sends 5 frames: ping, a forbidden subscribe, an unknown type,
  // a fourth frame over the limit of 3, and (below) a binary frame.
  const alice = await connect(t, gw.ws, 'alice');
  const bob = await connect(t, gw.ws, 'bob');
  t.equal((await scrape(gw.http)).value('herald_connections') - before.value('herald_connections'), 2, 'two connections open');
  t.equal((await alice.request({ type: 'ping', id: 1 }))['type'], 'pong');
  t.equal((await alice.request({ type: 'subscribe', topic: 'org:secret', id: 2 }))['code'], 'forbidden');
  t.equal((await alice.request({ type: 'no_such_type', id: 3 }))['code'], 'unknown_type');
  t.equal((await alice.request({ type: 'ping', id: 4 }))['code'], 'rate_limited');

  // Two Redis messages: one to alice, one to everyone (2 subscribers).
  await pub.publish('notifications:user:alice', '{"n":1}');
  t.same((await alice.next('notification'))['data'], { n: 1 });
  await pub.publish('notifications:system', '{"n":2}');
  t.same((await alice.next('notification'))['data'], { n: 2 });
  t.same((await bob.next('notification'))['data'], { n: 2 });

  // bob leaves normally; alice is closed for a binary frame.
  t.equal((await bob.close()).code, 1000);
  alice.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  t.same(await alice.closed, { code: 1003, reason: 'binary_not_supported' });

  await waitFor('both closes to be counted', async () => delta(await scrape(gw.http), 'herald_connections_closed_total') === 2, 3000, 20);
  const after = await scrape(gw.http);
  const expected: Array<[string, Record<string, string> | undefined, number]> = [
    ['herald_connections', undefined, 0],
    ['herald_connections_opened_total', undefined, 2],
    ['herald_connections_closed_total', { reason: 'normal' }, 1],
    ['herald_connections_closed_total', { reason: 'binary_not_supported' }, 1],
    ['herald_connections_closed_total', undefined, 2],
    ['herald_messages_received_total', undefined, 5],
    // 2 connected + pong + 3 errors + alice's notification + system to 2 clients
    ['herald_messages_sent_total', undefined, 9],
    // alice's and the system notification: once on the recorder's pattern, once routed here
    ['herald_redis_messages_total', { source: 'pattern' }, 2],
    ['herald_redis_messages_total', { source: 'topic' }, 2],
    ['herald_notifications_published_total', undefined, 2],
    ['herald_delivery_latency_seconds_count', undefined, 2],
    ['herald_errors_total', { code: 'forbidden' }, 1],
    ['herald_errors_total', { code: 'unknown_type' }, 1],
    ['herald_errors_total', { code: 'rate_limited' }, 1],
    ['herald_errors_total', undefined, 3],
    ['herald_rate_limited_total', undefined, 1],
    ['herald_auth_failures_total', { reason: 'missing_token' }, 1],
    ['herald_auth_failures_total', { reason: 'invalid_signature' }, 1],
    ['herald_auth_failures_total', undefined, 2],
  ];
  for (const [name, labels, want] of expected) {
    t.equal(delta(after, name, labels), want, `${name}${labels === undefined ? '' : JSON.stringify(labels)} moved by ${want}`);
  }
  t.ok(
    after.value('herald_delivery_latency_seconds_sum') - before.value('herald_delivery_latency_seconds_sum') < 1,
    'latency is in seconds',
  );
});

t.test('SIGTERM closes clients with 1001 shutting_down, leaves Redis and exits 0 within HERALD_SHUTDOWN_TIMEOUT_S', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_SHUTDOWN_TIMEOUT_S: '5' }));
  t.teardown(() => gw.stop('SIGKILL'));
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  const clients = [await connect(t, gw.ws, 'alice'), await connect(t, gw.ws, 'bob')];
  const pub = redis.client();
  t.equal(await pub.publish('notifications:system', '"before"'), 1, 'subscribed before the signal');
  const monitor = await pub.monitor();
  t.teardown(() => monitor.disconnect());
  const commands: string[] = [];
  monitor.on('monitor', (_time: string, args: string[]) => commands.push(args.join(' ').toLowerCase()));

  const started = Date.now();
  gw.proc.kill('SIGTERM');
  for (const c of clients) t.same(await c.closed, { code: 1001, reason: 'shutting_down' });
  const exit = await exitWithin(gw, 5000);
  t.same(exit, { code: 0, signal: null });
  t.ok(Date.now() - started < 5000, `exited in ${Date.now() - started} ms`);
  t.ok(
    gw.logs.some((l) => l.msg === 'shutting down' && l['signal'] === 'SIGTERM'),
    'logs the signal',
  );
  t.ok(
    gw.logs.some((l) => l.msg === 'shutdown complete'),
    'logs shutdown complete',
  );
  t.ok(
    commands.some((c) => c.startsWith('fcall herald_release')),
    `the gateway gave its recorder slot up before leaving (saw: ${commands.join(', ')})`,
  );
  t.equal(await pub.exists('herald:recorder:0'), 0, 'so another gateway can take it at once');
});

t.test('while draining, /readyz answers 503 draining, and a shutdown stuck on Redis still ends by HERALD_SHUTDOWN_TIMEOUT_S', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_SHUTDOWN_TIMEOUT_S: '2' }));
  t.teardown(() => gw.stop('SIGKILL'));
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  const alice = await connect(t, gw.ws, 'alice');

  // One kept-alive HTTP connection, opened before the signal: the listen socket closes
  // at once on SIGTERM, but connections already open are still served.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const readyz = (): Promise<{ status: number; body: Record<string, unknown>; reused: boolean }> =>
    new Promise((resolve, reject) => {
      const req = httpGet(`${gw.http}/readyz`, { agent, timeout: 3000 }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, reused: req.reusedSocket }),
        );
      });
      req.on('timeout', () => req.destroy(new Error('/readyz: no answer within 3 s')));
      req.on('error', reject);
    });
  t.equal((await readyz()).status, 200);

  // Freeze Redis (SIGSTOP): leaving it cannot finish, so only the deadline ends the shutdown.
  const pid = Number(/process_id:(\d+)/.exec(await redis.client().info('server'))?.[1]);
  t.ok(pid > 0, 'redis-server pid');
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // already gone
    }
  });

  const started = Date.now();
  gw.proc.kill('SIGTERM');
  t.same(await alice.closed, { code: 1001, reason: 'shutting_down' }, 'clients are closed before Redis is left');
  const draining = await readyz();
  t.ok(draining.reused, 'asked on the connection opened before the signal');
  t.same([draining.status, draining.body], [503, { status: 'unavailable', reason: 'draining' }]);

  const exit = await exitWithin(gw, 6000);
  const took = Date.now() - started;
  t.same(exit, { code: 1, signal: null }, 'exit code 1: the shutdown did not finish cleanly');
  t.ok(took >= 1900 && took < 4500, `exited at the 2 s deadline (${took} ms)`);
  t.ok(
    gw.logs.some((l) => l.msg === 'shutdown timed out; exiting anyway' && l['timeoutMs'] === 2000),
    'logs the timeout',
  );
  process.kill(pid, 'SIGCONT');
});

t.test('a second SIGTERM during a stuck shutdown ends the process at once', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_SHUTDOWN_TIMEOUT_S: '30' }));
  t.teardown(() => gw.stop('SIGKILL'));
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  // Freeze Redis so that the first shutdown cannot finish before its 30 s deadline.
  const pid = Number(/process_id:(\d+)/.exec(await redis.client().info('server'))?.[1]);
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // already gone
    }
  });
  gw.proc.kill('SIGTERM');
  await gw.waitForLog((l) => l.msg === 'shutting down');
  const started = Date.now();
  gw.proc.kill('SIGTERM');
  t.same(await exitWithin(gw, 5000), { code: null, signal: 'SIGTERM' }, "killed by the second signal (Node's default handling)");
  t.ok(Date.now() - started < 5000, 'well before the 30 s deadline');
});

t.test('SIGINT in embedded mode closes clients with 1001 shutting_down and exits 0', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_SHUTDOWN_TIMEOUT_S: '5' }));
  t.teardown(() => gw.stop('SIGKILL'));
  const clients = [await connect(t, gw.ws, 'alice'), await connect(t, gw.ws, 'bob')];
  gw.proc.kill('SIGINT');
  for (const c of clients) t.same(await c.closed, { code: 1001, reason: 'shutting_down' });
  const exit = await exitWithin(gw, 5000);
  t.same(exit, { code: 0, signal: null });
  t.ok(gw.logs.some((l) => l.msg === 'shutdown complete'));
});

t.test('a bad setting stops the start with exit code 2 and a message naming the variable', async (t) => {
  const rows: Array<[Record<string, string>, string]> = [
    [{ HERALD_PORT: 'abc' }, 'HERALD_PORT'],
    [{ HERALD_PORT: '65536' }, 'HERALD_PORT'],
    [{ HERALD_REDIS_URL: 'http://127.0.0.1:6379' }, 'HERALD_REDIS_URL'],
    [{ HERALD_JWT_ALGORITHMS: 'none' }, 'HERALD_JWT_ALGORITHMS'],
    [{ HERALD_IDLE_TIMEOUT_S: '5' }, 'HERALD_IDLE_TIMEOUT_S'],
    [{ HERALD_WS_PATH: '/metrics' }, 'HERALD_WS_PATH'],
    [{ HERALD_JWT_SECRET: 'too-short-secret-value' }, 'HERALD_JWT_SECRET'],
    [{ HERALD_PUBLISH_KEY: 'short-pub-key' }, 'HERALD_PUBLISH_KEY'],
    // The placeholders k8s/secret.example.yaml used to ship: public, so refused.
    [{ HERALD_JWT_SECRET: 'REPLACE-ME-placeholder-jwt-secret-not-secret-at-all' }, 'HERALD_JWT_SECRET'],
    [{ HERALD_PUBLISH_KEY: 'REPLACE-ME-placeholder-publish-key' }, 'HERALD_PUBLISH_KEY'],
  ];
  const cwd = tempDir(t);
  // One row per kind of check (integer, range, URL, allowlist, path, secret length, placeholder):
  // the process must report it and exit 2. Four at a time: each is a whole Node start.
  const results: Array<{ run: SpawnResult; exit: Awaited<SpawnResult['exited']> }> = [];
  for (let i = 0; i < rows.length; i += 4) {
    const batch = rows.slice(i, i + 4).map(([extra]) => spawnMain(t, [], baseEnv(extra), cwd));
    for (const run of batch) results.push({ run, exit: await exitWithin(run, 15_000) });
  }
  for (const [i, [extra, variable]] of rows.entries()) {
    const what = JSON.stringify(extra);
    const { run, exit } = results[i] as (typeof results)[number];
    t.same(exit, { code: 2, signal: null }, `${what}: exit code 2`);
    t.match(run.stderr(), new RegExp(`^herald: configuration error: ${variable}:`), `${what}: stderr names ${variable}`);
    t.notMatch(run.stdout(), /herald listening/, `${what}: never listened`);
    for (const value of Object.values(extra)) {
      if (/SECRET|KEY/.test(variable)) t.notOk(run.stderr().includes(value), `${what}: the secret value is not printed`);
    }
  }
});

t.test('a second gateway on a port already in use refuses to start instead of sharing it', async (t) => {
  const first = await startGateway(baseEnv());
  t.teardown(() => first.stop());
  const second = spawnMain(t, [], baseEnv({ HERALD_PORT: String(first.port) }));
  t.same(await exitWithin(second, 10_000), { code: 1, signal: null });
  t.match(second.stdout(), /cannot listen on 127\.0\.0\.1:\d+/);
  t.equal((await get(`${first.http}/readyz`)).status, 200, 'the first keeps serving');
});

t.test('npm start with no verification key refuses to start, naming HERALD_JWT_SECRET, even next to a dev secret', async (t) => {
  const cwd = tempDir(t);
  const bare = spawnMain(t, [], baseEnv({ HERALD_JWT_SECRET: undefined }), cwd);
  t.same(await exitWithin(bare, 10_000), { code: 2, signal: null });
  t.match(bare.stderr(), /HERALD_JWT_SECRET/);

  // A .herald/dev.json from `make run` is only for --dev, never picked up silently.
  mkdirSync(join(cwd, '.herald'));
  writeFileSync(join(cwd, '.herald', 'dev.json'), JSON.stringify({ jwtSecret: 'x'.repeat(43), publishKey: 'y'.repeat(48) }));
  const nextToDev = spawnMain(t, [], baseEnv({ HERALD_JWT_SECRET: undefined }), cwd);
  t.same(await exitWithin(nextToDev, 10_000), { code: 2, signal: null });
  t.match(nextToDev.stderr(), /HERALD_JWT_SECRET/);
});

t.test('--dev with no key starts with a generated secret, says so loudly and prints a token that connects', async (t) => {
  const cwd = tempDir(t);
  const env = baseEnv({ HERALD_JWT_SECRET: undefined });

  async function startDev(): Promise<{ child: SpawnResult; ws: string; token: string; banner: string }> {
    const child = spawnMain(t, ['--dev'], env, cwd);
    await waitFor(
      'the dev banner',
      () => {
        if (child.proc.exitCode !== null) throw new Error(`exited ${child.proc.exitCode}: ${child.stderr()}`);
        return /HERALD DEV MODE[\s\S]*\n=+\n/.test(child.stderr());
      },
      10_000,
    );
    const banner = child.stderr();
    const ws = /websocket: (ws:\/\/\S+)/.exec(banner)?.[1];
    const tok = /dev token[^\n]*\n\s+(\S+)/.exec(banner)?.[1];
    if (ws === undefined || tok === undefined) throw new Error(`cannot read the banner: ${banner}`);
    return { child, ws, token: tok, banner };
  }

  const first = await startDev();
  t.match(first.banner, /WARNING: using GENERATED dev secrets for HERALD_JWT_SECRET, HERALD_PUBLISH_KEY/);
  t.match(first.banner, /mode:\s+embedded/);
  t.match(first.child.stdout(), /DEV MODE: using generated secrets/, 'and logs it as a warning');

  const file = join(cwd, '.herald', 'dev.json');
  t.equal(statSync(file).mode & 0o777, 0o600, '.herald/dev.json lands in the working directory, readable by its owner only');
  const secrets = JSON.parse(readFileSync(file, 'utf8')) as { jwtSecret: string; publishKey: string };
  t.ok(secrets.jwtSecret.length >= 32, 'a generated secret of at least 32 bytes');

  const alice = await TestClient.connect(first.ws, { headers: { authorization: `Bearer ${first.token}` } });
  t.teardown(() => alice.close());
  t.equal(alice.welcome['userId'], 'alice');
  t.same(alice.welcome['topics'], ['user:alice', 'role:admin', 'system']);
  t.same(
    await alice.request({ type: 'subscribe', topic: 'feed:news', id: 1 }),
    { type: 'subscribed', topic: 'feed:news', id: 1 },
    'the token carries topics [org:rio, feed:*]',
  );
  const refused = await refusedUpgrade(first.ws, { headers: { authorization: `Bearer ${await token({ sub: 'alice' })}` } });
  t.same([refused.status, refused.body['reason']], [401, 'invalid_signature'], 'the generated secret, not some fixed one, verifies tokens');

  const http = first.ws.replace(/^ws/, 'http').replace(/\/ws$/, '');
  const published = await fetch(`${http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secrets.publishKey}` },
    body: JSON.stringify({ topic: 'user:alice', data: { title: 'hi' } }),
    signal: AbortSignal.timeout(3000),
  });
  t.equal(published.status, 202, 'POST /publish works with the generated publish key');
  t.same((await alice.next('notification'))['data'], { title: 'hi' });

  first.child.proc.kill('SIGTERM');
  t.same(await exitWithin(first.child, 5000), { code: 0, signal: null });

  const second = await startDev();
  const again = await TestClient.connect(second.ws, { headers: { authorization: `Bearer ${first.token}` } });
  t.teardown(() => again.close());
  t.equal(again.welcome['userId'], 'alice', "a restart keeps the secret: yesterday's dev token still connects");
});

/** Whether a TCP connection to host:port opens ('open') or how it fails (its error code). */
function tcpProbe(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, 3000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('open');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

t.test('--dev listens on 127.0.0.1 only unless HERALD_HOST is set', async (t) => {
  // Linux routes all of 127.0.0.0/8 to lo: a socket bound to 0.0.0.0 answers on
  // 127.0.0.2, one bound to 127.0.0.1 does not.
  async function listening(host: string | undefined): Promise<{ host: unknown; port: number }> {
    const child = spawnMain(t, ['--dev'], baseEnv({ HERALD_JWT_SECRET: undefined, HERALD_HOST: host }), tempDir(t));
    let line: Record<string, unknown> | undefined;
    await waitFor(
      'the listening line',
      () => {
        if (child.proc.exitCode !== null) throw new Error(`exited ${child.proc.exitCode}: ${child.stderr()}`);
        line = child
          .stdout()
          .split('\n')
          .filter((l) => l.includes('"herald listening"'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
        return line !== undefined;
      },
      10_000,
    );
    t.teardown(async () => {
      child.proc.kill('SIGTERM');
      await exitWithin(child, 5000);
    });
    return { host: line?.['host'], port: line?.['port'] as number };
  }

  const unset = await listening(undefined);
  t.equal(unset.host, '127.0.0.1', 'HERALD_HOST unset: the listening line says 127.0.0.1');
  t.equal(await tcpProbe('127.0.0.1', unset.port), 'open', 'reachable on 127.0.0.1');
  t.equal(await tcpProbe('127.0.0.2', unset.port), 'ECONNREFUSED', 'not on another address');

  const all = await listening('0.0.0.0');
  t.equal(all.host, '0.0.0.0', 'HERALD_HOST=0.0.0.0 is honoured in dev mode');
  t.equal(await tcpProbe('127.0.0.2', all.port), 'open', 'and then reachable on another address');
});

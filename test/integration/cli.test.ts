// The `herald` CLI (`node dist/cli.js`): `token` mints a JWT the gateway accepts;
// `publish` goes through Redis when HERALD_REDIS_URL is set, else POST /publish.
// Every run happens in a fresh temp directory, so no .herald/dev.json is found by
// accident.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import t, { type Test } from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, CLI, spawnNode, startGateway } from '../support/gateway.js';
import { freePort } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { TEST_SECRET, token } from '../support/tokens.js';

const KEY = 'publish-key-0123456789abcdef';
const SECRET = new TextEncoder().encode(TEST_SECRET);

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

const PATH_ONLY = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' };

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'herald-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs the CLI to completion (killed after 15 s) in `cwd` with exactly `env`. */
async function cli(t: Test, args: string[], env: Record<string, string>, cwd: string): Promise<CliRun> {
  const child = spawnNode(CLI, args, env, cwd);
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), 15_000);
  t.teardown(() => {
    clearTimeout(timer);
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
  });
  const { code, signal } = await child.exited;
  clearTimeout(timer);
  if (signal !== null) throw new Error(`herald ${args.join(' ')} killed by ${signal}; stderr: ${child.stderr()}`);
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

async function connect(t: Test, url: string, jwt: string): Promise<TestClient & { welcome: Frame }> {
  const c = await TestClient.connect(url, { headers: { authorization: `Bearer ${jwt}` } });
  t.teardown(() => c.close());
  return c;
}

t.test(
  'herald token prints a JWT signed with HERALD_JWT_SECRET carrying the sub, roles, topics and ttl asked for, and it connects',
  async (t) => {
    const cwd = tempDir(t);
    const args = ['token', '--sub', 'alice', '--roles', 'admin', '--topics', 'org:rio,feed:*', '--ttl', '60'];
    const run = await cli(t, args, { ...PATH_ONLY, HERALD_JWT_SECRET: TEST_SECRET }, cwd);
    const now = Math.floor(Date.now() / 1000);
    t.equal(run.code, 0, run.stderr);
    t.match(run.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'one compact JWT on one line');
    const jwt = run.stdout.trim();

    t.equal(decodeProtectedHeader(jwt).alg, 'HS256');
    const { payload } = await jwtVerify(jwt, SECRET, { algorithms: ['HS256'] });
    t.equal(payload.sub, 'alice');
    t.same(payload['roles'], ['admin']);
    t.same(payload['topics'], ['org:rio', 'feed:*']);
    t.equal((payload.exp as number) - (payload.iat as number), 60, 'exp is iat + ttl');
    t.ok(Math.abs((payload.exp as number) - (now + 60)) <= 5, `exp ${payload.exp} is about now + 60 (${now + 60})`);

    const gw = await startGateway(baseEnv());
    t.teardown(() => gw.stop());
    const c = await connect(t, gw.ws, jwt);
    t.equal(c.welcome['userId'], 'alice');
    t.same(c.welcome['topics'], ['user:alice', 'role:admin', 'system']);
    t.same(await c.request({ type: 'subscribe', topic: 'feed:news', id: 1 }), { type: 'subscribed', topic: 'feed:news', id: 1 });
    t.equal((await c.request({ type: 'subscribe', topic: 'org:elsewhere', id: 2 }))['code'], 'forbidden', 'only the topics asked for');
  },
);

t.test('herald token honours HERALD_JWT_ISSUER, HERALD_JWT_AUDIENCE and an HS algorithm from HERALD_JWT_ALGORITHMS', async (t) => {
  const cwd = tempDir(t);
  const env = {
    ...PATH_ONLY,
    HERALD_JWT_SECRET: TEST_SECRET,
    HERALD_JWT_ISSUER: 'https://id.example',
    HERALD_JWT_AUDIENCE: 'herald,other',
    HERALD_JWT_ALGORITHMS: 'HS512',
  };
  const run = await cli(t, ['token', '--sub', 'bob', '--roles', 'ops, admin'], env, cwd);
  t.equal(run.code, 0, run.stderr);
  const jwt = run.stdout.trim();
  t.equal(decodeProtectedHeader(jwt).alg, 'HS512');
  const { payload } = await jwtVerify(jwt, SECRET, { algorithms: ['HS512'], issuer: 'https://id.example', audience: 'herald' });
  t.same(payload.aud, ['herald', 'other']);
  t.same(payload['roles'], ['ops', 'admin'], 'roles are trimmed');
  t.equal(payload['topics'], undefined, 'no topics claim unless asked');
  t.equal((payload.exp as number) - (payload.iat as number), 3600, 'the default ttl is an hour');
});

t.test('herald token with a HERALD_JWT_ISSUER ending in a newline (a mounted file) signs for the issuer the gateway checks', async (t) => {
  const cwd = tempDir(t);
  const gw = await startGateway(baseEnv({ HERALD_JWT_ISSUER: 'https://id.example\n', HERALD_JWT_AUDIENCE: 'herald\n' }));
  t.teardown(() => gw.stop());
  const env = { ...PATH_ONLY, HERALD_JWT_SECRET: TEST_SECRET, HERALD_JWT_ISSUER: 'https://id.example\n', HERALD_JWT_AUDIENCE: ' herald\n' };
  const run = await cli(t, ['token', '--sub', 'alice'], env, cwd);
  t.equal(run.code, 0, run.stderr);
  const jwt = run.stdout.trim();
  const { payload } = await jwtVerify(jwt, SECRET, { algorithms: ['HS256'] });
  t.equal(payload.iss, 'https://id.example', 'iss without the newline');
  t.same(payload.aud, ['herald']);
  const c = await connect(t, gw.ws, jwt);
  t.equal(c.welcome['userId'], 'alice', 'the gateway accepts it');

  const bad = await cli(t, ['token', '--sub', 'alice'], { ...PATH_ONLY, HERALD_JWT_SECRET: 'too-short\n' }, cwd);
  t.equal(bad.code, 64, 'a secret the gateway would refuse is a usage error');
  t.match(bad.stderr, /^herald: HERALD_JWT_SECRET: must be at least 32 bytes/);
  t.notOk(bad.stderr.includes('too-short'), 'the secret is not printed');
});

t.test('herald publish with HERALD_REDIS_URL PUBLISHes to Redis and a connected client receives it', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url }));
  t.teardown(() => gw.stop());
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  const c = await connect(t, gw.ws, await token({ sub: 'alice' }));
  const cwd = tempDir(t);
  // No publish key and no gateway URL: only the Redis path can succeed.
  const env = { ...PATH_ONLY, HERALD_REDIS_URL: redis.url };

  const run = await cli(t, ['publish', '--topic', 'user:alice', '--data', '{"title":"hi"}'], env, cwd);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /^published user:alice with herald_publish \(id \S+, offset \d+-\d+\)/);
  const n = await c.next('notification');
  t.same([n['topic'], n['data']], ['user:alice', { title: 'hi' }]);
  const entries = await redis.client().xrange('herald:history:{user:alice}', '-', '+');
  t.same(
    entries.map(([offset]) => offset),
    [n['offset']],
    'recorded in the history in the same step',
  );

  const text = await cli(t, ['publish', '--topic', 'user:alice', '--data', 'plain words'], env, cwd);
  t.equal(text.code, 0, text.stderr);
  t.equal((await c.next('notification'))['data'], 'plain words', 'text that is not JSON arrives as a string');
  t.same(c.inbox, []);

  t.test(
    'it reads HERALD_NAMESPACE and HERALD_CHANNEL_PREFIX as the gateway does (a trailing newline from a mounted file included)',
    async (t) => {
      const acme = await startGateway(
        baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_NAMESPACE: 'acme', HERALD_CHANNEL_PREFIX: 'acme-notifications' }),
      );
      t.teardown(() => acme.stop());
      await acme.waitForLog((l) => l.msg === 'redis subscription active');
      const client = await connect(t, acme.ws, await token({ sub: 'alice' }));
      const r = await cli(
        t,
        ['publish', '--topic', 'user:alice', '--data', '{"n":"acme"}'],
        {
          ...PATH_ONLY,
          HERALD_REDIS_URL: `${redis.url}\n`,
          HERALD_NAMESPACE: 'acme\n',
          HERALD_CHANNEL_PREFIX: 'acme-notifications\n',
        },
        cwd,
      );
      t.equal(r.code, 0, r.stderr);
      t.match(r.stdout, /^published user:alice with acme_publish \(id \S+, offset \d+-\d+\)/);
      t.same((await client.next('notification'))['data'], { n: 'acme' }, 'delivered by the acme deployment');
      const bad = await cli(
        t,
        ['publish', '--topic', 'user:alice', '--data', '1'],
        { ...PATH_ONLY, HERALD_REDIS_URL: redis.url, HERALD_NAMESPACE: 'no-dashes' },
        cwd,
      );
      t.equal(bad.code, 64, 'a namespace the gateway would refuse is a usage error');
      t.match(bad.stderr, 'HERALD_NAMESPACE');
    },
  );

  t.test('with history off (no herald_publish function) it falls back to a plain PUBLISH', async (t) => {
    const bare = await startRedis();
    t.teardown(() => bare.close());
    const off = await startGateway(baseEnv({ HERALD_REDIS_URL: bare.url, HERALD_HISTORY_SIZE: '0' }));
    t.teardown(() => off.stop());
    await off.waitForLog((l) => l.msg === 'redis subscription active');
    const client = await connect(t, off.ws, await token({ sub: 'alice' }));
    const r = await cli(t, ['publish', '--topic', 'user:alice', '--data', '{"n":1}'], { ...PATH_ONLY, HERALD_REDIS_URL: bare.url }, cwd);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, 'published to redis notifications:user:alice (1 gateway subscriber; history off');
    t.same((await client.next('notification'))['data'], { n: 1 });
  });

  t.test(
    'with history off, a HERALD_CHANNEL_PREFIX ending in a newline still publishes on the channel the gateway listens on',
    async (t) => {
      const bare = await startRedis();
      t.teardown(() => bare.close());
      const off = await startGateway(baseEnv({ HERALD_REDIS_URL: bare.url, HERALD_HISTORY_SIZE: '0', HERALD_CHANNEL_PREFIX: 'acme-n' }));
      t.teardown(() => off.stop());
      await off.waitForLog((l) => l.msg === 'redis subscription active');
      const client = await connect(t, off.ws, await token({ sub: 'alice' }));
      const r = await cli(
        t,
        ['publish', '--topic', 'user:alice', '--data', '{"n":2}'],
        { ...PATH_ONLY, HERALD_REDIS_URL: bare.url, HERALD_CHANNEL_PREFIX: 'acme-n\n' },
        cwd,
      );
      t.equal(r.code, 0, r.stderr);
      t.match(r.stdout, 'published to redis acme-n:user:alice (1 gateway subscriber; history off');
      t.same((await client.next('notification'))['data'], { n: 2 });
    },
  );
});

t.test('herald publish with an unreachable HERALD_REDIS_URL fails with exit 1', async (t) => {
  const cwd = tempDir(t);
  const run = await cli(
    t,
    ['publish', '--topic', 'user:alice', '--data', '1'],
    { ...PATH_ONLY, HERALD_REDIS_URL: `redis://127.0.0.1:${await freePort()}` },
    cwd,
  );
  t.equal(run.code, 1);
  t.match(run.stderr, /^herald: /);
});

t.test('herald publish without HERALD_REDIS_URL goes through POST /publish with HERALD_PUBLISH_KEY', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_PUBLISH_KEY: KEY }));
  t.teardown(() => gw.stop());
  const c = await connect(t, gw.ws, await token({ sub: 'alice' }));
  const cwd = tempDir(t);
  const env = { ...PATH_ONLY, HERALD_PUBLISH_KEY: KEY };

  const run = await cli(t, ['publish', '--topic', 'user:alice', '--data', '{"title":"hi"}', '--url', gw.http], env, cwd);
  t.equal(run.code, 0, run.stderr);
  const published = /^published via (\S+) (\{.*\})\n$/.exec(run.stdout);
  t.equal(published?.[1], gw.http);
  const body = JSON.parse(published?.[2] ?? 'null') as { accepted: number; notifications: Array<{ topic: string; id: string }> };
  t.match(body, { accepted: 1, notifications: [{ topic: 'user:alice', id: /^[0-9a-f-]{36}$/ }] }, 'the 202 body: what was created');
  const first = await c.next('notification');
  t.same(first['data'], { title: 'hi' });
  t.equal(first['id'], body.notifications[0]?.id, 'the id the 202 named is the one delivered (embedded mode)');

  const text = await cli(t, ['publish', '--topic', 'user:alice', '--data', 'plain words', '--url', gw.http], env, cwd);
  t.equal(text.code, 0, text.stderr);
  t.equal((await c.next('notification'))['data'], 'plain words', 'text that is not JSON arrives as a string, as through Redis');

  const wrong = await cli(
    t,
    ['publish', '--topic', 'user:alice', '--data', '"nope"', '--url', gw.http],
    { ...PATH_ONLY, HERALD_PUBLISH_KEY: 'wrong-key-0123456789abcdef' },
    cwd,
  );
  t.equal(wrong.code, 1);
  t.match(wrong.stderr, 'POST /publish answered 401');
  t.notOk(wrong.stderr.includes('wrong-key-0123456789abcdef'), 'the key is not printed');
  const barrier = await fetch(`${gw.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ topic: 'user:alice', data: 'barrier' }),
    signal: AbortSignal.timeout(3000),
  });
  t.equal(barrier.status, 202);
  t.equal((await c.next('*'))['data'], 'barrier', 'the refused one was never delivered');
  t.same(c.inbox, []);
});

t.test('usage errors exit 64 with the usage text', async (t) => {
  const cwd = tempDir(t);
  const env = { ...PATH_ONLY, HERALD_JWT_SECRET: TEST_SECRET, HERALD_PUBLISH_KEY: KEY };
  const rows: Array<[string, string[], RegExp]> = [
    ['no such command', ['frobnicate'], /unknown command "frobnicate"/],
    ['token without --sub', ['token', '--roles', 'admin'], /--sub is required/],
    ['token with an unknown option', ['token', '--sub', 'alice', '--bogus'], /--bogus/],
    ['token with a ttl that is not a number', ['token', '--sub', 'alice', '--ttl', 'soon'], /--ttl/],
    ['token with a colon in --sub', ['token', '--sub', 'alice:billing'], /--sub: expected/],
    ['token with a colon in a role', ['token', '--sub', 'alice', '--roles', 'ops,ops:eu'], /--roles: "ops:eu"/],
    ['publish with a bad topic', ['publish', '--topic', 'user:a b', '--data', '1'], /--topic/],
    ['publish without --topic', ['publish', '--data', '1'], /--topic/],
    ['publish without --data', ['publish', '--topic', 'user:alice'], /--data is required/],
  ];
  const runs: CliRun[] = [];
  for (let i = 0; i < rows.length; i += 4) {
    runs.push(...(await Promise.all(rows.slice(i, i + 4).map(([, args]) => cli(t, args, env, cwd)))));
  }
  for (const [i, [what, , message]] of rows.entries()) {
    const run = runs[i] as CliRun;
    t.equal(run.code, 64, `${what}: exit 64`);
    t.match(run.stderr, message, `${what}: says what is wrong`);
    t.match(run.stderr, /usage:\n\s+herald token --sub/, `${what}: prints the usage`);
    t.equal(run.stdout, '', `${what}: nothing on stdout`);
  }
  const help = await cli(t, ['--help'], env, cwd);
  t.equal(help.code, 0, '--help is not an error');
  t.match(help.stdout, /usage:\n\s+herald token --sub/);
});

t.test(
  'herald token with no secret and no .herald/dev.json fails naming HERALD_JWT_SECRET; with a dev.json it uses the dev secret',
  async (t) => {
    const cwd = tempDir(t);
    const run = await cli(t, ['token', '--sub', 'alice'], PATH_ONLY, cwd);
    t.not(run.code, 0);
    t.match(run.stderr, /HERALD_JWT_SECRET is not set/);
    t.equal(run.stdout, '', 'no token printed');

    const devSecret = 'dev-secret-0123456789-0123456789-0123456789';
    mkdirSync(join(cwd, '.herald'));
    writeFileSync(join(cwd, '.herald', 'dev.json'), JSON.stringify({ jwtSecret: devSecret, publishKey: 'dev-publish-key-0123456789' }));
    const dev = await cli(t, ['token', '--sub', 'alice'], PATH_ONLY, cwd);
    t.equal(dev.code, 0, dev.stderr);
    t.match(dev.stderr, /HERALD_JWT_SECRET is not set; using the dev value from \.herald\/dev\.json/, 'and says so');
    const { payload } = await jwtVerify(dev.stdout.trim(), new TextEncoder().encode(devSecret), { algorithms: ['HS256'] });
    t.equal(payload.sub, 'alice');
  },
);

// The `herald` CLI (`node dist/cli.js`): `token` mints a JWT the gateway accepts;
// `publish` goes through Redis when HERALD_REDIS_URL is set, else POST /publish;
// `presence` and the control commands ask a gateway over HTTP.
// Every run happens in a fresh temp directory, so no .herald/dev.json is found by
// accident.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import t, { type Test } from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, CLI, spawnNode, startGateway } from '../support/gateway.js';
import { freePort } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { TEST_SECRET, token } from '../support/tokens.js';

// About eighty CLI runs and a dozen gateways, each a Node start (half a second, more
// on a loaded machine): past .taprc's 120 s per file.
t.setTimeout(300_000);

const KEY = 'publish-key-0123456789abcdef';
const CONTROL_KEY = 'control-key-0123456789abcdef';
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

/**
 * An HTTP listener that only counts what reaches it (and answers 500): a usage error
 * pointed at it must leave the count at 0.
 */
async function requestCounter(t: Test): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server = createServer((_req, res) => {
    requests++;
    res.writeHead(500).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
}

/** Runs a control or presence command whose answer must be 2xx, and parses the JSON it prints. */
async function answer(t: Test, args: string[], env: Record<string, string>, cwd: string): Promise<Record<string, unknown>> {
  const run = await cli(t, args, env, cwd);
  // Stop the test here, with the reason, rather than at JSON.parse('').
  if (run.code !== 0) throw new Error(`herald ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  t.match(run.stdout, /^\{.*\}\n$/, `herald ${args[0]}: one JSON line on stdout`);
  return JSON.parse(run.stdout) as Record<string, unknown>;
}

/** A token issued `agoS` seconds ago: revocation spares tokens issued in its own second. */
function issuedAgo(sub: string, agoS: number): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(now - agoS)
    .setExpirationTime(now + 3600)
    .sign(SECRET);
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

t.test('usage errors exit 64 with the usage text, and the HTTP commands send no request', async (t) => {
  const cwd = tempDir(t);
  const counter = await requestCounter(t);
  const at = ['--url', counter.url];
  const env = { ...PATH_ONLY, HERALD_JWT_SECRET: TEST_SECRET, HERALD_PUBLISH_KEY: KEY, HERALD_CONTROL_KEY: CONTROL_KEY };
  const tooMany = Array.from({ length: 101 }, (_, i) => (i % 2 === 0 ? ['--user', `u${i}`] : ['--topic', `t${i}`])).flat();
  const rows: Array<[string, string[], RegExp]> = [
    ['no such command', ['frobnicate'], /unknown command "frobnicate"/],
    ['token without --sub', ['token', '--roles', 'admin'], /--sub is required/],
    ['token with an unknown option', ['token', '--sub', 'alice', '--bogus'], /--bogus/],
    ['token with a ttl that is not a number', ['token', '--sub', 'alice', '--ttl', 'soon'], /--ttl/],
    [
      'token living longer than the gateway accepts',
      ['token', '--sub', 'alice', '--ttl', '604801'],
      /HERALD_JWT_MAX_LIFETIME_S \(604800\)/,
    ],
    ['token with a colon in --sub', ['token', '--sub', 'alice:billing'], /--sub: expected/],
    ['token with a colon in a role', ['token', '--sub', 'alice', '--roles', 'ops,ops:eu'], /--roles: "ops:eu"/],
    ['publish with a bad topic', ['publish', '--topic', 'user:a b', '--data', '1'], /--topic/],
    ['publish without --topic', ['publish', '--data', '1'], /--topic/],
    ['publish without --data', ['publish', '--topic', 'user:alice'], /--data is required/],
    [
      'publish with an --url that is not http',
      ['publish', '--topic', 'user:alice', '--data', '1', '--url', 'ftp://x'],
      /--url: expected an http/,
    ],
    ['presence asking nothing', ['presence', ...at], /at least one --user or --topic/],
    ['presence with a colon in --user', ['presence', '--user', 'alice:billing', ...at], /--user: "alice:billing" is not 1-123/],
    ['presence with an empty --user', ['presence', '--user', '', ...at], /--user: "" is not/],
    ['presence with a bad topic', ['presence', '--user', 'alice', '--topic', 'news feed', ...at], /--topic: "news feed" is not 1-128/],
    ['presence asking 101 users and topics', ['presence', ...tooMany, ...at], /at most 100 --user and --topic in all \(got 101\)/],
    ['presence with a bare argument', ['presence', 'alice', ...at], /alice/],
    ['presence with --user lacking its value', ['presence', ...at, '--user'], /--user/],
    ['disconnect without --user', ['disconnect', '--reconnect', ...at], /--user is required/],
    ['disconnect with --user twice', ['disconnect', '--user', 'alice', '--user', 'bob', ...at], /--user: give it once \(got 2\)/],
    [
      'disconnect with a connection id over 64 characters',
      ['disconnect', '--user', 'alice', '--connection', 'c'.repeat(65), ...at],
      /--connection: expected 1-64/,
    ],
    ['disconnect with an empty connection id', ['disconnect', '--user', 'alice', '--connection', '', ...at], /--connection: expected 1-64/],
    ['disconnect with a value for --reconnect', ['disconnect', '--user', 'alice', '--reconnect=yes', ...at], /--reconnect/],
    ['subscribe without --topic', ['subscribe', '--user', 'alice', ...at], /--topic is required/],
    [
      'subscribe with a grant pattern for a topic',
      ['subscribe', '--user', 'alice', '--topic', 'feed:*', ...at],
      /--topic: "feed:\*" is not/,
    ],
    ['subscribe with a topic over 128 characters', ['subscribe', '--user', 'alice', '--topic', 't'.repeat(129), ...at], /--topic: /],
    ['unsubscribe with two topics', ['unsubscribe', '--user', 'alice', '--topic', 'a', '--topic', 'b', ...at], /--topic: give it once/],
    [
      'unsubscribe with a Cyrillic letter in --user',
      ['unsubscribe', '--user', 'аlice', '--topic', 'news', ...at],
      /--user: "аlice" is not/,
    ],
    ['revoke without --user', ['revoke', ...at], /--user is required/],
    ['revoke with an unknown option', ['revoke', '--user', 'alice', '--all', ...at], /--all/],
    ['revoke with an --url that is not a URL', ['revoke', '--user', 'alice', '--url', '127.0.0.1:8080 gateway'], /--url: not a valid URL/],
    ['revoke with an --url that is not http', ['revoke', '--user', 'alice', '--url', 'ws://127.0.0.1:8080'], /--url: expected an http/],
  ];
  const runs: CliRun[] = [];
  for (let i = 0; i < rows.length; i += 8) {
    runs.push(...(await Promise.all(rows.slice(i, i + 8).map(([, args]) => cli(t, args, env, cwd)))));
  }
  for (const [i, [what, , message]] of rows.entries()) {
    const run = runs[i] as CliRun;
    t.equal(run.code, 64, `${what}: exit 64`);
    t.match(run.stderr, message, `${what}: says what is wrong`);
    t.match(run.stderr, /usage:\n\s+herald token --sub/, `${what}: prints the usage`);
    t.equal(run.stdout, '', `${what}: nothing on stdout`);
  }
  t.equal(counter.requests(), 0, 'no usage error sent a request');
  const help = await cli(t, ['--help'], env, cwd);
  t.equal(help.code, 0, '--help is not an error');
  t.match(help.stdout, /usage:\n\s+herald token --sub/);
  for (const command of ['presence', 'disconnect', 'subscribe', 'unsubscribe', 'revoke']) {
    t.match(help.stdout, new RegExp(`\\n\\s+herald ${command} `), `the usage shows herald ${command}`);
  }
});

t.test('the control commands without a usable control key are usage errors naming HERALD_CONTROL_KEY, and send nothing', async (t) => {
  const cwd = tempDir(t);
  const counter = await requestCounter(t);
  const at = ['--url', counter.url];
  const rows: Array<[string, string[], Record<string, string>, RegExp]> = [
    [
      'revoke with no key and no dev.json',
      ['revoke', '--user', 'alice', ...at],
      PATH_ONLY,
      /HERALD_CONTROL_KEY is not set \(and no \.herald\/dev\.json/,
    ],
    [
      'disconnect with the publish key only (it cannot act on connections)',
      ['disconnect', '--user', 'alice', ...at],
      { ...PATH_ONLY, HERALD_PUBLISH_KEY: KEY },
      /HERALD_CONTROL_KEY is not set/,
    ],
    [
      'presence with neither key',
      ['presence', '--user', 'alice', ...at],
      PATH_ONLY,
      /HERALD_CONTROL_KEY \(or HERALD_PUBLISH_KEY\) is not set/,
    ],
    [
      'subscribe with a control key the gateway would refuse',
      ['subscribe', '--user', 'alice', '--topic', 'news', ...at],
      { ...PATH_ONLY, HERALD_CONTROL_KEY: 'short-key\n' },
      /^herald: HERALD_CONTROL_KEY: must be at least 16 bytes/,
    ],
  ];
  const runs = await Promise.all(rows.map(([, args, env]) => cli(t, args, env, cwd)));
  for (const [i, [what, , , message]] of rows.entries()) {
    const run = runs[i] as CliRun;
    t.equal(run.code, 64, `${what}: exit 64`);
    t.match(run.stderr, message, `${what}: says so`);
    t.notOk(run.stderr.includes('short-key'), `${what}: no key printed`);
  }

  // A dev.json from before the control API has no controlKey: control commands say
  // how to get one; presence makes do with the dev publish key (no gateway: exit 1).
  mkdirSync(join(cwd, '.herald'));
  writeFileSync(join(cwd, '.herald', 'dev.json'), JSON.stringify({ jwtSecret: TEST_SECRET, publishKey: 'dev-publish-key-0123456789' }));
  const old = await cli(t, ['revoke', '--user', 'alice', ...at], PATH_ONLY, cwd);
  t.equal(old.code, 64);
  t.match(old.stderr, /HERALD_CONTROL_KEY is not set \(and \.herald\/dev\.json has no controlKey: run `make run` once\)/);
  t.equal(counter.requests(), 0, 'no request was sent');
});

t.test('a control command with no gateway at --url fails with exit 1 saying it cannot reach it', async (t) => {
  const cwd = tempDir(t);
  const url = `http://127.0.0.1:${await freePort()}`;
  const run = await cli(t, ['revoke', '--user', 'alice', '--url', url], { ...PATH_ONLY, HERALD_CONTROL_KEY: CONTROL_KEY }, cwd);
  t.equal(run.code, 1);
  t.match(run.stderr, `herald: cannot reach a gateway at ${url} (ECONNREFUSED)`);
  t.notOk(run.stderr.includes(CONTROL_KEY), 'the key is not printed');
  t.equal(run.stdout, '');
  // Without --url: HERALD_URL, as for herald publish.
  const viaEnv = await cli(
    t,
    ['presence', '--user', 'alice'],
    { ...PATH_ONLY, HERALD_CONTROL_KEY: CONTROL_KEY, HERALD_URL: `${url}\n` },
    cwd,
  );
  t.equal(viaEnv.code, 1);
  t.match(viaEnv.stderr, `herald: cannot reach a gateway at ${url} (ECONNREFUSED)`);
});

// The round trips below need the gateway's /presence and /control/* (issue 17).

t.test('herald presence counts a connected user and its topic, with the control key or the publish key', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_CONTROL_KEY: CONTROL_KEY, HERALD_PUBLISH_KEY: KEY }));
  t.teardown(() => gw.stop());
  await connect(t, gw.ws, await token({ sub: 'alice' }));
  const cwd = tempDir(t);
  const args = ['presence', '--user', 'alice', '--user', 'bob', '--topic', 'user:alice', '--url', gw.http];

  const body = await answer(t, args, { ...PATH_ONLY, HERALD_CONTROL_KEY: CONTROL_KEY }, cwd);
  const users = body['users'] as Record<string, unknown>;
  t.same(users['alice'], { online: true, connections: 1 }, 'alice: one connection');
  t.match(users['bob'], { online: false }, 'bob, asked and absent, is in the answer');
  t.same(body['topics'], { 'user:alice': { connections: 1 } });

  const publisher = await answer(t, args, { ...PATH_ONLY, HERALD_PUBLISH_KEY: KEY }, cwd);
  t.same((publisher['users'] as Record<string, unknown>)['alice'], { online: true, connections: 1 }, 'the publish key may ask too');
});

t.test(
  'herald disconnect closes one connection with 4001 given --connection and --reconnect, then every connection of the user with 4000',
  async (t) => {
    const gw = await startGateway(baseEnv({ HERALD_CONTROL_KEY: CONTROL_KEY }));
    t.teardown(() => gw.stop());
    const jwt = await token({ sub: 'alice' });
    const first = await connect(t, gw.ws, jwt);
    const second = await connect(t, gw.ws, jwt);
    const bob = await connect(t, gw.ws, await token({ sub: 'bob' }));
    const cwd = tempDir(t);
    const env = { ...PATH_ONLY, HERALD_CONTROL_KEY: CONTROL_KEY };

    const one = await answer(
      t,
      ['disconnect', '--user', 'alice', '--connection', String(first.welcome['connectionId']), '--reconnect', '--url', gw.http],
      env,
      cwd,
    );
    t.same(one, { user: 'alice', gateways: 1 });
    t.same(await first.closed, { code: 4001, reason: 'reconnect' }, 'the one named, told to come back');
    t.equal((await second.request({ type: 'ping', id: 1 }))['type'], 'pong', 'the other connection of alice is still open');

    t.same(await answer(t, ['disconnect', '--user', 'alice', '--url', gw.http], env, cwd), { user: 'alice', gateways: 1 });
    t.same(await second.closed, { code: 4000, reason: 'disconnected' }, 'every connection of alice, not to come back');
    t.equal((await bob.request({ type: 'ping', id: 2 }))['type'], 'pong', 'bob is untouched');
  },
);

t.test('herald subscribe and unsubscribe move the open connections of the user in and out of a topic', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_CONTROL_KEY: CONTROL_KEY, HERALD_PUBLISH_KEY: KEY }));
  t.teardown(() => gw.stop());
  const c = await connect(t, gw.ws, await token({ sub: 'alice' }));
  const cwd = tempDir(t);
  const env = { ...PATH_ONLY, HERALD_CONTROL_KEY: CONTROL_KEY };
  const publish = async (topic: string, data: string): Promise<void> => {
    const res = await fetch(`${gw.http}/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ topic, data }),
      signal: AbortSignal.timeout(3000),
    });
    t.equal(res.status, 202, `published ${data}`);
  };

  t.same(await answer(t, ['subscribe', '--user', 'alice', '--topic', 'news', '--url', gw.http], env, cwd), { user: 'alice', gateways: 1 });
  t.same(await c.next('subscribed'), { type: 'subscribed', topic: 'news', server: true });
  await publish('news', 'first');
  t.match(await c.next('notification'), { topic: 'news', data: 'first' }, 'delivered on the topic it was put in');

  t.same(await answer(t, ['unsubscribe', '--user', 'alice', '--topic', 'news', '--url', gw.http], env, cwd), {
    user: 'alice',
    gateways: 1,
  });
  t.same(await c.next('unsubscribed'), { type: 'unsubscribed', topic: 'news', server: true });
  await publish('news', 'second');
  await publish('user:alice', 'barrier');
  t.match(await c.next('*'), { topic: 'user:alice', data: 'barrier' }, 'nothing more on news');
  t.same(c.inbox, []);
});

t.test('herald revoke closes connections on older tokens with 1008 and the gateway refuses those tokens afterwards', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_CONTROL_KEY: CONTROL_KEY }));
  t.teardown(() => gw.stop());
  const old = await issuedAgo('alice', 60);
  const c = await connect(t, gw.ws, old);
  const cwd = tempDir(t);

  const before = Math.floor(Date.now() / 1000);
  const body = await answer(t, ['revoke', '--user', 'alice', '--url', gw.http], { ...PATH_ONLY, HERALD_CONTROL_KEY: CONTROL_KEY }, cwd);
  const after = Math.floor(Date.now() / 1000);
  t.match(body, { user: 'alice', gateways: 1, revokedBefore: Number });
  const revokedBefore = body['revokedBefore'] as number;
  t.ok(revokedBefore >= before && revokedBefore <= after, `revokedBefore ${revokedBefore} is the time of the request (${before}-${after})`);
  t.same(await c.closed, { code: 1008, reason: 'token_revoked' });
  await t.rejects(TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${old}` } }), /upgrade refused with 401/);
});

t.test(
  'refusals exit 1 with the status and body: a wrong key 401, the publish key on a control command 403, a gateway without a control key 404',
  async (t) => {
    const gw = await startGateway(baseEnv({ HERALD_CONTROL_KEY: CONTROL_KEY, HERALD_PUBLISH_KEY: KEY }));
    t.teardown(() => gw.stop());
    const c = await connect(t, gw.ws, await token({ sub: 'alice' }));
    const cwd = tempDir(t);
    const wrongKey = 'wrong-key-0123456789abcdef';
    const args = ['disconnect', '--user', 'alice', '--url', gw.http];

    const wrong = await cli(t, args, { ...PATH_ONLY, HERALD_CONTROL_KEY: wrongKey }, cwd);
    t.equal(wrong.code, 1);
    t.match(wrong.stderr, /^herald: 401 \{.*"invalid_control_key".*\}\n$/);
    t.notOk(wrong.stderr.includes(wrongKey), 'the key is not printed');
    t.equal(wrong.stdout, '');
    const wrongPresence = await cli(
      t,
      ['presence', '--user', 'alice', '--url', gw.http],
      { ...PATH_ONLY, HERALD_CONTROL_KEY: wrongKey },
      cwd,
    );
    t.equal(wrongPresence.code, 1);
    t.match(wrongPresence.stderr, /^herald: 401 /);

    const publisher = await cli(t, args, { ...PATH_ONLY, HERALD_CONTROL_KEY: KEY }, cwd);
    t.equal(publisher.code, 1);
    t.match(publisher.stderr, /^herald: 403 \{.*"control_key_required".*\}\n$/);
    t.equal((await c.request({ type: 'ping', id: 1 }))['type'], 'pong', 'alice is still connected');

    const plain = await startGateway(baseEnv());
    t.teardown(() => plain.stop());
    const off = await cli(t, ['revoke', '--user', 'alice', '--url', plain.http], { ...PATH_ONLY, HERALD_CONTROL_KEY: CONTROL_KEY }, cwd);
    t.equal(off.code, 1);
    t.match(off.stderr, /^herald: 404/);
  },
);

t.test('with no HERALD_CONTROL_KEY the control commands use the controlKey of .herald/dev.json, and say so', async (t) => {
  const devControlKey = 'dev-control-key-0123456789';
  const gw = await startGateway(baseEnv({ HERALD_CONTROL_KEY: devControlKey }));
  t.teardown(() => gw.stop());
  const c = await connect(t, gw.ws, await token({ sub: 'alice' }));
  const cwd = tempDir(t);
  mkdirSync(join(cwd, '.herald'));
  writeFileSync(
    join(cwd, '.herald', 'dev.json'),
    JSON.stringify({ jwtSecret: TEST_SECRET, publishKey: 'dev-publish-key-0123456789', controlKey: devControlKey }),
  );
  const run = await cli(t, ['disconnect', '--user', 'alice', '--url', gw.http], PATH_ONLY, cwd);
  if (run.code !== 0) throw new Error(`herald disconnect exited ${run.code}: ${run.stderr}`);
  t.match(run.stderr, /HERALD_CONTROL_KEY is not set; using the dev value from \.herald\/dev\.json/);
  t.same(JSON.parse(run.stdout), { user: 'alice', gateways: 1 });
  t.equal((await c.closed).code, 4000);
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

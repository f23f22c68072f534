import { readFileSync } from 'node:fs';
import t from 'tap';
import { type Config, ConfigError, type Env, loadConfig, PLACEHOLDER_MARKERS, read, workerId } from '../../dist/config.js';

const SECRET = 's'.repeat(32);
const PEM = '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----';
/** The smallest valid env: a secret and nothing else. */
const base: Env = { HERALD_JWT_SECRET: SECRET };

function errorOf(env: Env): unknown {
  try {
    loadConfig(env);
  } catch (err) {
    return err;
  }
  return undefined;
}

t.test('an env with only a secret yields the documented default for every setting', async (t) => {
  const c = loadConfig(base);
  const expected: Config = {
    host: '0.0.0.0',
    port: 8080,
    wsPath: '/ws',
    redisUrl: undefined,
    namespace: 'herald',
    channelPrefix: 'notifications',
    jwt: {
      key: { kind: 'secret', secret: SECRET },
      algorithms: ['HS256'],
      issuer: undefined,
      audience: undefined,
      maxTokenBytes: 8192,
      maxLifetimeS: 604800,
    },
    allowedOrigins: undefined,
    maxPayloadBytes: 10240,
    idleTimeoutS: 60,
    rateLimit: { messages: 100, windowMs: 60_000 },
    publishKey: undefined,
    publishMaxBodyBytes: 1048576,
    publishMaxBatch: 1000,
    maxNotificationBytes: 65536,
    dedup: { windowMs: 60_000, maxEntries: 100000 },
    maxTopicsPerConnection: 100,
    events: { stream: 'herald:events', maxLen: 100000 },
    logLevel: 'info',
    shutdownTimeoutMs: 10_000,
    admission: { maxConnections: 0, maxConnectionsPerIp: 0, upgradeRatePerIp: 0, ipv6PrefixBits: 64 },
    trustProxy: false,
    maxBackpressureBytes: 1048576,
    closeOnBackpressure: true,
    workers: 1,
    tls: undefined,
    demo: false,
    history: undefined,
    recorders: 2,
    recorderMaxWaitingBytes: 33_554_432,
    replayBudget: 2000,
    controlKey: undefined,
    maxConnectionsPerUser: 100,
    presence: true,
    presenceTtlMs: 5000,
    connectionEvents: true,
  };
  t.strictSame(c, expected);
});

t.test('empty and whitespace-only values mean unset', async (t) => {
  const c = loadConfig({
    ...base,
    HERALD_PORT: '',
    HERALD_HOST: '   ',
    HERALD_WS_PATH: '\t',
    HERALD_REDIS_URL: '',
    HERALD_ALLOWED_ORIGINS: ' ',
    HERALD_LOG_LEVEL: '',
    HERALD_PUBLISH_KEY: '',
    HERALD_JWT_PUBLIC_KEY: '  ',
    HERALD_JWT_JWKS: '',
  });
  t.equal(c.port, 8080);
  t.equal(c.host, '0.0.0.0');
  t.equal(c.wsPath, '/ws');
  t.equal(c.redisUrl, undefined);
  t.equal(c.allowedOrigins, undefined);
  t.equal(c.logLevel, 'info');
  t.equal(c.publishKey, undefined);
  t.equal(c.jwt.key.kind, 'secret');
});

t.test('valid values for every setting are parsed into their units', async (t) => {
  const c = loadConfig({
    ...base,
    HERALD_HOST: '127.0.0.1',
    HERALD_PORT: ' 0 ',
    HERALD_WS_PATH: '/v1/socket',
    HERALD_REDIS_URL: 'rediss://user:pw@redis.internal:6380/2',
    HERALD_CHANNEL_PREFIX: 'app:notify',
    HERALD_JWT_ALGORITHMS: 'HS256, HS512,HS256',
    HERALD_JWT_ISSUER: 'https://id.example.com',
    HERALD_JWT_AUDIENCE: 'herald, other',
    HERALD_ALLOWED_ORIGINS: 'https://App.Example.com, https://*.example.org:8443',
    HERALD_MAX_PAYLOAD_BYTES: '128',
    HERALD_IDLE_TIMEOUT_S: '0',
    HERALD_RATE_LIMIT_MESSAGES: '0',
    HERALD_RATE_LIMIT_WINDOW_S: '2',
    HERALD_PUBLISH_KEY: 'k'.repeat(16),
    HERALD_DEDUP_WINDOW_S: '0',
    HERALD_LOG_LEVEL: 'DEBUG',
    HERALD_SHUTDOWN_TIMEOUT_S: '3',
    HERALD_IPV6_PREFIX: ' 48 ',
  });
  t.equal(c.host, '127.0.0.1');
  t.equal(c.port, 0);
  t.equal(c.wsPath, '/v1/socket');
  t.equal(c.redisUrl, 'rediss://user:pw@redis.internal:6380/2');
  // ioredis turns on TLS only for a lower-case scheme: an upper-case one must not go in clear.
  t.equal(loadConfig({ HERALD_JWT_SECRET: 'x'.repeat(32), HERALD_REDIS_URL: 'REDISS://Host:6380/2' }).redisUrl, 'rediss://Host:6380/2');
  t.equal(loadConfig({ HERALD_JWT_SECRET: 'x'.repeat(32), HERALD_REDIS_URL: 'Redis://127.0.0.1:6379' }).redisUrl, 'redis://127.0.0.1:6379');
  t.equal(c.channelPrefix, 'app:notify');
  t.strictSame(c.jwt.algorithms, ['HS256', 'HS512'], 'duplicates removed, order kept');
  t.equal(c.jwt.issuer, 'https://id.example.com');
  t.strictSame(c.jwt.audience, ['herald', 'other']);
  t.strictSame(c.allowedOrigins, ['https://app.example.com', 'https://*.example.org:8443'], 'lower-cased');
  t.equal(c.maxPayloadBytes, 128);
  t.equal(c.idleTimeoutS, 0);
  t.strictSame(c.rateLimit, { messages: 0, windowMs: 2000 });
  t.equal(c.publishKey, 'k'.repeat(16));
  t.equal(c.dedup.windowMs, 0);
  t.equal(c.logLevel, 'debug');
  t.equal(c.shutdownTimeoutMs, 3000);
  t.equal(c.admission.ipv6PrefixBits, 48);
});

t.test('each key source is recognised', async (t) => {
  const rows: Array<{ env: Env; kind: string }> = [
    { env: { HERALD_JWT_SECRET: SECRET }, kind: 'secret' },
    { env: { HERALD_JWT_PUBLIC_KEY: PEM }, kind: 'pem' },
    { env: { HERALD_JWT_PUBLIC_KEY: '/etc/herald/key.pem' }, kind: 'pem' },
    { env: { HERALD_JWT_JWKS: '/etc/herald/jwks.json' }, kind: 'jwks-file' },
    { env: { HERALD_JWT_JWKS: 'https://id.example.com/.well-known/jwks.json' }, kind: 'jwks-url' },
    { env: { HERALD_JWT_JWKS: 'http://127.0.0.1:9000/jwks' }, kind: 'jwks-url' },
    { env: { HERALD_JWT_JWKS: 'http://localhost/jwks' }, kind: 'jwks-url' },
    { env: { HERALD_JWT_JWKS: 'http://[::1]:9000/jwks' }, kind: 'jwks-url' },
  ];
  for (const { env, kind } of rows) {
    const c = loadConfig(env);
    t.equal(c.jwt.key.kind, kind, JSON.stringify(env));
  }
  t.equal(loadConfig({ HERALD_JWT_PUBLIC_KEY: PEM }).jwt.algorithms, undefined, 'a public key derives its algorithm later');
  t.strictSame(loadConfig({ HERALD_JWT_PUBLIC_KEY: PEM, HERALD_JWT_ALGORITHMS: 'ES256,RS256' }).jwt.algorithms, ['ES256', 'RS256']);
});

t.test('every bad value throws a ConfigError whose message starts with the variable name', async (t) => {
  const rows: Array<{ name: string; env: Env; variable: string }> = [
    { name: 'port not a number', env: { HERALD_PORT: 'abc' }, variable: 'HERALD_PORT' },
    { name: 'port above 65535', env: { HERALD_PORT: '70000' }, variable: 'HERALD_PORT' },
    { name: 'port negative', env: { HERALD_PORT: '-1' }, variable: 'HERALD_PORT' },
    { name: 'port with a fraction', env: { HERALD_PORT: '8080.5' }, variable: 'HERALD_PORT' },
    { name: 'port in hex', env: { HERALD_PORT: '0x1F90' }, variable: 'HERALD_PORT' },
    { name: 'port in exponent form', env: { HERALD_PORT: '8e3' }, variable: 'HERALD_PORT' },
    { name: 'port in full-width digits', env: { HERALD_PORT: '８０８０' }, variable: 'HERALD_PORT' },
    { name: 'port beyond a safe integer', env: { HERALD_PORT: '99999999999999999999999' }, variable: 'HERALD_PORT' },
    { name: 'port with a unit', env: { HERALD_PORT: '8080tcp' }, variable: 'HERALD_PORT' },
    { name: 'idle timeout 5 s (uWS aborts below 8)', env: { HERALD_IDLE_TIMEOUT_S: '5' }, variable: 'HERALD_IDLE_TIMEOUT_S' },
    { name: 'idle timeout 1 s', env: { HERALD_IDLE_TIMEOUT_S: '1' }, variable: 'HERALD_IDLE_TIMEOUT_S' },
    { name: 'idle timeout 961 s', env: { HERALD_IDLE_TIMEOUT_S: '961' }, variable: 'HERALD_IDLE_TIMEOUT_S' },
    { name: 'algorithms with none', env: { HERALD_JWT_ALGORITHMS: 'none' }, variable: 'HERALD_JWT_ALGORITHMS' },
    { name: 'algorithms with NONE', env: { HERALD_JWT_ALGORITHMS: 'HS256,NONE' }, variable: 'HERALD_JWT_ALGORITHMS' },
    { name: 'algorithms with None padded', env: { HERALD_JWT_ALGORITHMS: ' None ' }, variable: 'HERALD_JWT_ALGORITHMS' },
    { name: 'algorithms with an unknown alg', env: { HERALD_JWT_ALGORITHMS: 'HS1024' }, variable: 'HERALD_JWT_ALGORITHMS' },
    { name: 'algorithms in lower case', env: { HERALD_JWT_ALGORITHMS: 'hs256' }, variable: 'HERALD_JWT_ALGORITHMS' },
    { name: 'algorithms only commas', env: { HERALD_JWT_ALGORITHMS: ' , ,' }, variable: 'HERALD_JWT_ALGORITHMS' },
    { name: 'RS256 with a secret', env: { HERALD_JWT_ALGORITHMS: 'RS256' }, variable: 'HERALD_JWT_ALGORITHMS' },
    { name: 'EdDSA with a secret', env: { HERALD_JWT_ALGORITHMS: 'HS256,EdDSA' }, variable: 'HERALD_JWT_ALGORITHMS' },
    {
      name: 'HS256 with a public key',
      env: { HERALD_JWT_SECRET: undefined, HERALD_JWT_PUBLIC_KEY: PEM, HERALD_JWT_ALGORITHMS: 'HS256' },
      variable: 'HERALD_JWT_ALGORITHMS',
    },
    {
      name: 'HS512 with a JWKS',
      env: { HERALD_JWT_SECRET: undefined, HERALD_JWT_JWKS: '/tmp/jwks.json', HERALD_JWT_ALGORITHMS: 'RS256,HS512' },
      variable: 'HERALD_JWT_ALGORITHMS',
    },
    { name: 'secret of 31 bytes', env: { HERALD_JWT_SECRET: 's'.repeat(31) }, variable: 'HERALD_JWT_SECRET' },
    { name: 'secret short in bytes though not in characters', env: { HERALD_JWT_SECRET: 'x' }, variable: 'HERALD_JWT_SECRET' },
    { name: 'no key at all', env: { HERALD_JWT_SECRET: undefined }, variable: 'HERALD_JWT_SECRET' },
    { name: 'empty secret and nothing else', env: { HERALD_JWT_SECRET: '' }, variable: 'HERALD_JWT_SECRET' },
    { name: 'secret and public key', env: { HERALD_JWT_PUBLIC_KEY: PEM }, variable: 'HERALD_JWT_SECRET' },
    {
      name: 'public key and JWKS',
      env: { HERALD_JWT_SECRET: undefined, HERALD_JWT_PUBLIC_KEY: PEM, HERALD_JWT_JWKS: '/tmp/jwks.json' },
      variable: 'HERALD_JWT_PUBLIC_KEY',
    },
    {
      name: 'JWKS over plain http to a remote host',
      env: { HERALD_JWT_SECRET: undefined, HERALD_JWT_JWKS: 'http://id.example.com/jwks' },
      variable: 'HERALD_JWT_JWKS',
    },
    {
      name: 'JWKS over http to a host that only starts like loopback',
      env: { HERALD_JWT_SECRET: undefined, HERALD_JWT_JWKS: 'http://127.0.0.1.evil.com/jwks' },
      variable: 'HERALD_JWT_JWKS',
    },
    {
      name: 'JWKS from a file: URL',
      env: { HERALD_JWT_SECRET: undefined, HERALD_JWT_JWKS: 'file:///etc/jwks.json' },
      variable: 'HERALD_JWT_JWKS',
    },
    { name: 'redis url with http', env: { HERALD_REDIS_URL: 'http://localhost:6379' }, variable: 'HERALD_REDIS_URL' },
    { name: 'redis url not a url', env: { HERALD_REDIS_URL: 'localhost:6379' }, variable: 'HERALD_REDIS_URL' },
    { name: 'redis url garbage', env: { HERALD_REDIS_URL: '::::' }, variable: 'HERALD_REDIS_URL' },
    { name: 'origin with a path', env: { HERALD_ALLOWED_ORIGINS: 'https://example.com/app' }, variable: 'HERALD_ALLOWED_ORIGINS' },
    { name: 'origin with a trailing slash', env: { HERALD_ALLOWED_ORIGINS: 'https://example.com/' }, variable: 'HERALD_ALLOWED_ORIGINS' },
    { name: 'origin without a scheme', env: { HERALD_ALLOWED_ORIGINS: 'example.com' }, variable: 'HERALD_ALLOWED_ORIGINS' },
    { name: 'origin a bare star', env: { HERALD_ALLOWED_ORIGINS: '*' }, variable: 'HERALD_ALLOWED_ORIGINS' },
    { name: 'origin with a star mid-host', env: { HERALD_ALLOWED_ORIGINS: 'https://a.*.example.com' }, variable: 'HERALD_ALLOWED_ORIGINS' },
    { name: 'origin with a ws scheme', env: { HERALD_ALLOWED_ORIGINS: 'ws://example.com' }, variable: 'HERALD_ALLOWED_ORIGINS' },
    { name: 'origin with a Cyrillic е', env: { HERALD_ALLOWED_ORIGINS: 'https://\u0435xample.com' }, variable: 'HERALD_ALLOWED_ORIGINS' },
    { name: 'one bad origin among good ones', env: { HERALD_ALLOWED_ORIGINS: 'https://a.com,null' }, variable: 'HERALD_ALLOWED_ORIGINS' },
    { name: 'ws path /metrics', env: { HERALD_WS_PATH: '/metrics' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path /healthz', env: { HERALD_WS_PATH: '/healthz' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path /readyz', env: { HERALD_WS_PATH: '/readyz' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path /publish', env: { HERALD_WS_PATH: '/publish' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path /demo', env: { HERALD_WS_PATH: '/demo' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path /stats', env: { HERALD_WS_PATH: '/stats' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path without leading slash', env: { HERALD_WS_PATH: 'ws' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path with a query', env: { HERALD_WS_PATH: '/ws?x=1' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path with a double slash', env: { HERALD_WS_PATH: '//ws' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path with a space', env: { HERALD_WS_PATH: '/w s' }, variable: 'HERALD_WS_PATH' },
    { name: 'ws path with a wildcard', env: { HERALD_WS_PATH: '/*' }, variable: 'HERALD_WS_PATH' },
    { name: 'channel prefix with *', env: { HERALD_CHANNEL_PREFIX: 'notifications*' }, variable: 'HERALD_CHANNEL_PREFIX' },
    { name: 'channel prefix with ?', env: { HERALD_CHANNEL_PREFIX: 'notif?' }, variable: 'HERALD_CHANNEL_PREFIX' },
    { name: 'channel prefix with [', env: { HERALD_CHANNEL_PREFIX: 'n[a]' }, variable: 'HERALD_CHANNEL_PREFIX' },
    { name: 'channel prefix ending in :', env: { HERALD_CHANNEL_PREFIX: 'notifications:' }, variable: 'HERALD_CHANNEL_PREFIX' },
    { name: 'channel prefix of 65 chars', env: { HERALD_CHANNEL_PREFIX: 'p'.repeat(65) }, variable: 'HERALD_CHANNEL_PREFIX' },
    { name: 'log level bogus', env: { HERALD_LOG_LEVEL: 'bogus' }, variable: 'HERALD_LOG_LEVEL' },
    { name: 'log level numeric', env: { HERALD_LOG_LEVEL: '30' }, variable: 'HERALD_LOG_LEVEL' },
    { name: 'publish key of 15 bytes', env: { HERALD_PUBLISH_KEY: 'k'.repeat(15) }, variable: 'HERALD_PUBLISH_KEY' },
    { name: 'max payload below 128', env: { HERALD_MAX_PAYLOAD_BYTES: '127' }, variable: 'HERALD_MAX_PAYLOAD_BYTES' },
    { name: 'rate limit negative', env: { HERALD_RATE_LIMIT_MESSAGES: '-5' }, variable: 'HERALD_RATE_LIMIT_MESSAGES' },
    { name: 'rate window 0', env: { HERALD_RATE_LIMIT_WINDOW_S: '0' }, variable: 'HERALD_RATE_LIMIT_WINDOW_S' },
    { name: 'shutdown timeout 0', env: { HERALD_SHUTDOWN_TIMEOUT_S: '0' }, variable: 'HERALD_SHUTDOWN_TIMEOUT_S' },
    { name: 'dedup window words', env: { HERALD_DEDUP_WINDOW_S: 'one minute' }, variable: 'HERALD_DEDUP_WINDOW_S' },
    { name: 'dedup max entries 0', env: { HERALD_DEDUP_MAX_ENTRIES: '0' }, variable: 'HERALD_DEDUP_MAX_ENTRIES' },
    { name: 'dedup max entries over a million', env: { HERALD_DEDUP_MAX_ENTRIES: '1000001' }, variable: 'HERALD_DEDUP_MAX_ENTRIES' },
    { name: 'workers 0', env: { HERALD_WORKERS: '0' }, variable: 'HERALD_WORKERS' },
    { name: 'workers not a number', env: { HERALD_WORKERS: 'many' }, variable: 'HERALD_WORKERS' },
    { name: 'workers 2 in embedded mode', env: { HERALD_WORKERS: '2' }, variable: 'HERALD_WORKERS' },
    {
      name: 'workers 2 on port 0',
      env: { HERALD_WORKERS: '2', HERALD_REDIS_URL: 'redis://127.0.0.1:6379', HERALD_PORT: '0' },
      variable: 'HERALD_WORKERS',
    },
    { name: 'tls cert without key', env: { HERALD_TLS_CERT_FILE: '/c.pem' }, variable: 'HERALD_TLS_KEY_FILE' },
    { name: 'tls key without cert', env: { HERALD_TLS_KEY_FILE: '/k.pem' }, variable: 'HERALD_TLS_CERT_FILE' },
    { name: 'tls passphrase alone', env: { HERALD_TLS_PASSPHRASE: 'x' }, variable: 'HERALD_TLS_PASSPHRASE' },
    { name: 'tls CA alone', env: { HERALD_TLS_CA_FILE: '/ca.pem' }, variable: 'HERALD_TLS_CA_FILE' },
    { name: 'publish batch 0', env: { HERALD_PUBLISH_MAX_BATCH: '0' }, variable: 'HERALD_PUBLISH_MAX_BATCH' },
    { name: 'max token bytes tiny', env: { HERALD_MAX_TOKEN_BYTES: '10' }, variable: 'HERALD_MAX_TOKEN_BYTES' },
    { name: 'host with a space', env: { HERALD_HOST: 'local host' }, variable: 'HERALD_HOST' },
    { name: 'host with a scheme', env: { HERALD_HOST: 'http://0.0.0.0' }, variable: 'HERALD_HOST' },
    { name: 'events stream with a space', env: { HERALD_EVENTS_STREAM: 'herald events' }, variable: 'HERALD_EVENTS_STREAM' },
    { name: 'IPv6 prefix 0 (every IPv6 client one address)', env: { HERALD_IPV6_PREFIX: '0' }, variable: 'HERALD_IPV6_PREFIX' },
    { name: 'IPv6 prefix 129', env: { HERALD_IPV6_PREFIX: '129' }, variable: 'HERALD_IPV6_PREFIX' },
    { name: 'IPv6 prefix written as /64', env: { HERALD_IPV6_PREFIX: '/64' }, variable: 'HERALD_IPV6_PREFIX' },
  ];
  for (const row of rows) {
    const err = errorOf({ ...base, ...row.env });
    t.type(err, ConfigError, `${row.name}: ConfigError`);
    t.match((err as Error | undefined)?.message ?? '', new RegExp(`^${row.variable}[:,]`), `${row.name}: names ${row.variable}`);
  }
});

t.test('a key that is a documented placeholder stops the start, naming the variable and never echoing the value', async (t) => {
  // The first two are the values k8s/secret.example.yaml shipped (and git history keeps).
  const rows: Array<{ name: string; env: Env; variable: string; value: string }> = [
    {
      name: 'the old example JWT secret',
      env: { HERALD_JWT_SECRET: 'REPLACE-ME-placeholder-jwt-secret-not-secret-at-all' },
      variable: 'HERALD_JWT_SECRET',
      value: 'REPLACE-ME-placeholder-jwt-secret-not-secret-at-all',
    },
    {
      name: 'the old example publish key',
      env: { HERALD_PUBLISH_KEY: 'REPLACE-ME-placeholder-publish-key' },
      variable: 'HERALD_PUBLISH_KEY',
      value: 'REPLACE-ME-placeholder-publish-key',
    },
    {
      name: 'a secret with replace-me in lower case',
      env: { HERALD_JWT_SECRET: 'replace-me-with-a-real-secret-of-32-bytes' },
      variable: 'HERALD_JWT_SECRET',
      value: 'replace-me-with-a-real-secret',
    },
    {
      name: 'a secret with CHANGEME',
      env: { HERALD_JWT_SECRET: 'CHANGEME-CHANGEME-CHANGEME-CHANGEME' },
      variable: 'HERALD_JWT_SECRET',
      value: 'CHANGEME',
    },
    {
      name: 'a publish key with change_me',
      env: { HERALD_PUBLISH_KEY: 'change_me_publish_key_0123' },
      variable: 'HERALD_PUBLISH_KEY',
      value: 'change_me',
    },
    {
      name: 'the ACL example password in the Redis URL',
      env: { HERALD_REDIS_URL: 'redis://herald:LONG-RANDOM-PASSWORD@redis:6379' },
      variable: 'HERALD_REDIS_URL',
      value: 'LONG-RANDOM-PASSWORD',
    },
    {
      name: 'a percent-encoded placeholder password',
      env: { HERALD_REDIS_URL: 'rediss://herald:%43hangeme-now@redis:6379' },
      variable: 'HERALD_REDIS_URL',
      value: 'hangeme-now',
    },
  ];
  for (const row of rows) {
    const err = errorOf({ ...base, ...row.env });
    t.type(err, ConfigError, `${row.name}: ConfigError`);
    t.match(
      (err as Error | undefined)?.message ?? '',
      new RegExp(`^${row.variable}: looks like a documented placeholder`),
      `${row.name}: names ${row.variable}`,
    );
    t.notOk(((err as Error | undefined)?.message ?? '').includes(row.value), `${row.name}: the value is not in the message`);
  }
  const fine: Env[] = [
    { HERALD_JWT_SECRET: 'uQ0m3v6l6k3YzP2Hq8s0W1x9cR5tB7nJ4aF2dG6hK8mL0pS3vX5zC7eN9rT1wY3b' },
    { HERALD_PUBLISH_KEY: '3f9a1c7e5b2d8f4a6c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d' },
    { HERALD_REDIS_URL: 'redis://herald:s3cr3t-but-real@redis:6379' },
    { HERALD_REDIS_URL: 'redis://redis:6379' },
  ];
  for (const env of fine)
    t.doesNotThrow(() => loadConfig({ ...base, ...env }), `${Object.keys(env).join()}: a real-looking value is accepted`);
});

t.test('every document that lists the placeholder markers lists exactly those the gateway refuses', async (t) => {
  // docs/CONFIGURATION.md must; the README (or docs/OPERATIONS.md) may say it again.
  const files = ['docs/CONFIGURATION.md', 'README.md', 'docs/OPERATIONS.md'];
  const found: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');
    } catch {
      continue;
    }
    const line = /looks like a documented\s+placeholder: it contains, in\s+any case, one of ([^.]+)\./.exec(text)?.[1];
    if (line === undefined) continue;
    found.push(file);
    const listed = [...line.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    t.strictSame(listed, [...PLACEHOLDER_MARKERS], file);
  }
  t.ok(found.includes('docs/CONFIGURATION.md'), `docs/CONFIGURATION.md lists them (found in: ${found.join(', ')})`);
});

t.test('a ConfigError carries its class name for the fatal message', async (t) => {
  const err = errorOf({ ...base, HERALD_PORT: 'abc' });
  t.equal((err as Error).name, 'ConfigError');
  t.equal((err as Error).message, 'HERALD_PORT: expected an integer 0-65535, got "abc"');
});

t.test('a rejected secret never appears in the error message', async (t) => {
  const secret = 'short-secret';
  const err = errorOf({ HERALD_JWT_SECRET: secret });
  t.type(err, ConfigError);
  t.notMatch((err as Error).message, secret);
  const key = 'pk-1234567';
  const perr = errorOf({ ...base, HERALD_PUBLISH_KEY: key });
  t.type(perr, ConfigError);
  t.notMatch((perr as Error).message, key);
});

t.test('settings at the edges of their ranges are accepted', async (t) => {
  const rows: Array<{ env: Env; get: (c: Config) => unknown; want: unknown }> = [
    { env: { HERALD_PORT: '65535' }, get: (c) => c.port, want: 65535 },
    { env: { HERALD_PORT: '0' }, get: (c) => c.port, want: 0 },
    { env: { HERALD_IDLE_TIMEOUT_S: '8' }, get: (c) => c.idleTimeoutS, want: 8 },
    { env: { HERALD_IDLE_TIMEOUT_S: '960' }, get: (c) => c.idleTimeoutS, want: 960 },
    { env: { HERALD_JWT_SECRET: 'é'.repeat(16) }, get: (c) => c.jwt.key.kind, want: 'secret' },
    { env: { HERALD_PUBLISH_KEY: 'k'.repeat(16) }, get: (c) => c.publishKey, want: 'k'.repeat(16) },
    { env: { HERALD_CHANNEL_PREFIX: 'p'.repeat(64) }, get: (c) => c.channelPrefix, want: 'p'.repeat(64) },
    { env: { HERALD_WS_PATH: '/metrics/ws' }, get: (c) => c.wsPath, want: '/metrics/ws' },
    { env: { HERALD_LOG_LEVEL: 'silent' }, get: (c) => c.logLevel, want: 'silent' },
    { env: { HERALD_HOST: '::' }, get: (c) => c.host, want: '::' },
    { env: { HERALD_IPV6_PREFIX: '1' }, get: (c) => c.admission.ipv6PrefixBits, want: 1 },
    { env: { HERALD_IPV6_PREFIX: '128' }, get: (c) => c.admission.ipv6PrefixBits, want: 128 },
  ];
  for (const row of rows) t.strictSame(row.get(loadConfig({ ...base, ...row.env })), row.want, JSON.stringify(row.env));
});

t.test('a JWKS URL keeps its URL form', async (t) => {
  const c = loadConfig({ HERALD_JWT_JWKS: 'https://id.example.com/jwks.json' });
  t.ok(c.jwt.key.kind === 'jwks-url' && c.jwt.key.url === 'https://id.example.com/jwks.json');
});

t.test('prototype-named keys in the env do not disturb parsing', async (t) => {
  const env = JSON.parse(`{"__proto__":"x","constructor":"y","toString":"z","HERALD_JWT_SECRET":"${SECRET}"}`) as Env;
  const c = loadConfig(env);
  t.equal(c.port, 8080);
  t.equal(c.jwt.key.kind, 'secret');
});

/** Paths of every object or array reachable from `value` that is not frozen. */
function unfrozen(value: unknown, path: string): string[] {
  if (value === null || typeof value !== 'object') return [];
  const own = Object.isFrozen(value) ? [] : [path];
  return own.concat(...Object.entries(value).map(([k, v]) => unfrozen(v, `${path}.${k}`)));
}

t.test('the result is deeply frozen', async (t) => {
  const c = loadConfig({
    ...base,
    HERALD_JWT_AUDIENCE: 'a,b',
    HERALD_ALLOWED_ORIGINS: 'https://a.com',
    HERALD_PUBLISH_KEY: 'k'.repeat(16),
  });
  t.strictSame(unfrozen(c, 'config'), [], 'every object and array is frozen');
  t.throws(
    () => {
      (c as { port: number }).port = 1;
    },
    TypeError,
    'assigning a top-level field throws in strict mode',
  );
  t.throws(
    () => {
      (c.rateLimit as { messages: number }).messages = 1;
    },
    TypeError,
    'assigning a nested field throws',
  );
  t.throws(
    () => {
      (c.allowedOrigins as string[]).push('https://evil.com');
    },
    TypeError,
    'lists cannot grow',
  );
  t.throws(
    () => {
      (c.jwt.key as { secret: string }).secret = 'x';
    },
    TypeError,
    'the key source cannot change',
  );
  t.equal(c.port, 8080);
});

t.test('a JWKS URL in the config cannot be redirected through the config object', async (t) => {
  const c = loadConfig({ HERALD_JWT_JWKS: 'https://id.example.com/jwks.json' });
  t.equal(c.jwt.key.kind, 'jwks-url');
  if (c.jwt.key.kind !== 'jwks-url') return;
  const key = c.jwt.key;
  t.throws(
    () => {
      (key as { url: string }).url = 'https://evil.example/jwks.json';
    },
    TypeError,
    'the frozen key source refuses the write',
  );
  t.equal(key.url, 'https://id.example.com/jwks.json', 'the configured JWKS location is unchanged');
});

t.test('loadConfig does not mutate or freeze the env it is given', async (t) => {
  const env: Record<string, string> = { HERALD_JWT_SECRET: SECRET, HERALD_PORT: '9000' };
  loadConfig(env);
  t.notOk(Object.isFrozen(env));
  t.strictSame(env, { HERALD_JWT_SECRET: SECRET, HERALD_PORT: '9000' });
});

t.test('HERALD_WORKERS: a number, or auto for one per CPU; more than one needs Redis', async (t) => {
  const redis = { HERALD_JWT_SECRET: SECRET, HERALD_REDIS_URL: 'redis://127.0.0.1:6379' };
  t.equal(loadConfig({ HERALD_JWT_SECRET: SECRET }).workers, 1, 'default 1');
  t.equal(loadConfig({ ...redis, HERALD_WORKERS: '3' }).workers, 3);
  t.equal(loadConfig({ ...redis, HERALD_WORKERS: 'auto' }, 6).workers, 6, 'auto = the CPU count given');
  t.equal(loadConfig({ ...redis, HERALD_WORKERS: 'AUTO' }, 2).workers, 2);
  t.equal(loadConfig({ HERALD_JWT_SECRET: SECRET, HERALD_WORKERS: 'auto' }, 1).workers, 1, 'auto on one CPU is fine in embedded mode');
});

t.test('HERALD_TLS_*: cert and key together make a TLS config; passphrase and CA are optional', async (t) => {
  const c = loadConfig({ HERALD_JWT_SECRET: SECRET, HERALD_TLS_CERT_FILE: '/c.pem', HERALD_TLS_KEY_FILE: '/k.pem' });
  t.strictSame(c.tls, { certFile: '/c.pem', keyFile: '/k.pem', passphrase: undefined, caFile: undefined });
  const full = loadConfig({
    HERALD_JWT_SECRET: SECRET,
    HERALD_TLS_CERT_FILE: '/c.pem',
    HERALD_TLS_KEY_FILE: '/k.pem',
    HERALD_TLS_PASSPHRASE: ' s p ',
    HERALD_TLS_CA_FILE: '/ca.pem',
  });
  t.strictSame(
    full.tls,
    { certFile: '/c.pem', keyFile: '/k.pem', passphrase: ' s p ', caFile: '/ca.pem' },
    'a passphrase is taken verbatim',
  );
});

t.test('HERALD_NAMESPACE names the deployment; the channel prefix may not reach into it', async (t) => {
  t.equal(loadConfig({ ...base, HERALD_NAMESPACE: 'acme_2' }).namespace, 'acme_2');
  t.equal(loadConfig({ ...base, HERALD_NAMESPACE: ' acme\n' }).namespace, 'acme', 'trimmed');
  t.equal(
    loadConfig({ ...base, HERALD_NAMESPACE: 'acme' }).events.stream,
    'acme:events',
    'the events stream follows the namespace unless set',
  );
  for (const bad of ['2acme', 'a-b', 'a:b', 'a b', 'a'.repeat(33), 'héllo', '{x}', '*']) {
    const err = errorOf({ ...base, HERALD_NAMESPACE: bad });
    t.type(err, ConfigError, JSON.stringify(bad));
    t.match((err as Error).message, /^HERALD_NAMESPACE: /);
  }
  for (const [ns, prefix] of [
    ['herald', 'herald'],
    ['herald', 'herald:x'],
    ['acme', 'acme:notify'],
  ]) {
    const err = errorOf({ ...base, HERALD_NAMESPACE: ns, HERALD_CHANNEL_PREFIX: prefix });
    t.type(err, ConfigError, `${prefix} in namespace ${ns}`);
    t.match((err as Error).message, /^HERALD_CHANNEL_PREFIX: .*overlaps the internal channels of HERALD_NAMESPACE/);
  }
  t.equal(
    loadConfig({ ...base, HERALD_CHANNEL_PREFIX: 'heraldry' }).channelPrefix,
    'heraldry',
    'a prefix that merely starts with the namespace is fine',
  );
});

t.test('HERALD_RECORDERS: 1-16 recorder slots, 2 by default', async (t) => {
  t.equal(loadConfig({ ...base, HERALD_RECORDERS: '1' }).recorders, 1);
  t.equal(loadConfig({ ...base, HERALD_RECORDERS: '16' }).recorders, 16);
  for (const bad of ['0', '17', '-1', 'two', '1.5']) {
    t.match((errorOf({ ...base, HERALD_RECORDERS: bad }) as Error).message, /^HERALD_RECORDERS: expected an integer 1-16/, bad);
  }
});

t.test('HERALD_WORKER_ID: the index the supervisor gave, 0 to workers - 1; anything else names the variable', async (t) => {
  t.equal(workerId({}, 4), undefined, 'unset: not a worker');
  t.equal(workerId({ HERALD_WORKER_ID: '' }, 4), undefined, 'empty: not a worker');
  t.equal(workerId({ HERALD_WORKER_ID: '0' }, 4), 0);
  t.equal(workerId({ HERALD_WORKER_ID: '3' }, 4), 3);
  t.equal(workerId({ HERALD_WORKER_ID: ' 2\n' }, 4), 2, 'trimmed like every setting');
  t.equal(workerId({ HERALD_WORKER_ID: '0' }, 1), 0, 'one worker: index 0');
  const hostile = ['4', '-1', '1.0', '1e0', '0x1', '+1', 'NaN', 'Infinity', 'one', '２', '99999999999999999999', '1 2', '0\u0000'];
  for (const raw of hostile) {
    let err: unknown;
    try {
      workerId({ HERALD_WORKER_ID: raw }, 4);
    } catch (e) {
      err = e;
    }
    t.type(err, ConfigError, `${JSON.stringify(raw)}: ConfigError`);
    t.match(
      (err as Error | undefined)?.message ?? '',
      /^HERALD_WORKER_ID: expected an integer 0-3 /,
      `${JSON.stringify(raw)}: names the variable and the range`,
    );
  }
  const env = JSON.parse('{"__proto__":"1"}') as Env;
  t.equal(workerId(env, 4), undefined, 'a prototype-named key is not the variable');
});

t.test('read() gives the CLI what the gateway reads: trimmed, checked, defaulted', async (t) => {
  // A value mounted from a file ends in a newline; the CLI must publish to and sign
  // for what the gateway listens on and checks.
  t.equal(read({ HERALD_CHANNEL_PREFIX: 'notifications\n' }, 'HERALD_CHANNEL_PREFIX'), 'notifications');
  t.equal(read({ HERALD_JWT_ISSUER: ' https://id.example\r\n' }, 'HERALD_JWT_ISSUER'), 'https://id.example');
  t.equal(read({ HERALD_NAMESPACE: 'acme\n' }, 'HERALD_NAMESPACE'), 'acme');
  t.equal(read({}, 'HERALD_CHANNEL_PREFIX'), 'notifications', 'the default');
  t.equal(read({}, 'HERALD_JWT_ISSUER'), undefined, 'no default: unset');
  t.equal(read({}, 'HERALD_PORT'), 8080);
  t.equal(read({ HERALD_URL: 'http://gw:9000' }, 'HERALD_URL'), 'http://gw:9000/');
  t.equal(read({ HERALD_JWT_SECRET: ` ${SECRET}\n` }, 'HERALD_JWT_SECRET'), ` ${SECRET}\n`, 'a secret is verbatim');
  for (const [name, raw] of [
    ['HERALD_URL', 'ftp://gw'],
    ['HERALD_URL', 'gw:9000:x'],
    ['HERALD_PORT', '80 80'],
    ['HERALD_CHANNEL_PREFIX', 'notifications\nother'],
  ] as const) {
    t.throws(() => read({ [name]: raw }, name), new RegExp(`^${name}: `), `${name}=${JSON.stringify(raw)} refused, naming it`);
  }
});

t.test('booleans take true/false, 1/0, yes/no, on/off in any case; nothing else', async (t) => {
  for (const raw of ['true', 'TRUE', '1', 'yes', 'On']) t.equal(loadConfig({ ...base, HERALD_DEMO: raw }).demo, true, raw);
  for (const raw of ['false', 'False', '0', 'no', 'OFF']) t.equal(loadConfig({ ...base, HERALD_TRUST_PROXY: raw }).trustProxy, false, raw);
  for (const raw of ['2', 'y', 'enabled', 'tru', '1.0']) {
    t.match(
      (errorOf({ ...base, HERALD_CLOSE_ON_BACKPRESSURE: raw }) as Error).message,
      /^HERALD_CLOSE_ON_BACKPRESSURE: expected true or false/,
      raw,
    );
  }
});

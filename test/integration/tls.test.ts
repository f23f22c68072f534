// TLS: the gateway serves https:// and wss:// through uWS SSLApp with a certificate
// made here with openssl (a private CA, a server certificate for localhost and
// 127.0.0.1). Plain http and ws to the TLS port fail; bad TLS files stop the start
// with exit code 2 and a message naming the variable. Every wait has a deadline.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { baseEnv, type GatewayProcess, type SpawnResult, spawnMain, startGateway } from '../support/gateway.js';
import { token } from '../support/tokens.js';

const PUBLISH_KEY = 'tls-test-publish-key-0123456789';
const PASSPHRASE = 'correct horse battery staple';

interface Pki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** The server key, encrypted with PASSPHRASE. */
  serverKeyEncrypted: string;
  /** A key that does not belong to serverCert. */
  otherKey: string;
  /** A client certificate (and its key) signed by the test CA. */
  clientCert: string;
  clientKey: string;
  /** A client certificate (and its key) signed by another CA, which the gateway does not know. */
  strangerCert: string;
  strangerKey: string;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) throw new Error(`openssl is not installed (apt-get install openssl): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** A private CA and a server certificate signed by it (CN localhost, SAN DNS:localhost, IP:127.0.0.1). */
function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'herald-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Herald Test CA']);
  openssl(dir, ['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.crt',
    '-days',
    '2',
    '-extfile',
    'server.ext',
  ]);
  openssl(dir, ['pkey', '-in', 'server.key', '-aes-256-cbc', '-passout', `pass:${PASSPHRASE}`, '-out', 'server.enc.key']);
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', 'other.key']);
  // Client certificates: one from the test CA, one from a CA of its own.
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl(dir, ['req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=herald-test-client']);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'client.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'client.crt',
    '-days',
    '2',
    '-extfile',
    'client.ext',
  ]);
  openssl(dir, [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'stranger-ca.key',
    '-out',
    'stranger-ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=Some Other CA',
  ]);
  openssl(dir, ['req', ...ec, '-keyout', 'stranger.key', '-out', 'stranger.csr', '-subj', '/CN=herald-test-client']);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'stranger.csr',
    '-CA',
    'stranger-ca.crt',
    '-CAkey',
    'stranger-ca.key',
    '-CAcreateserial',
    '-out',
    'stranger.crt',
    '-days',
    '2',
    '-extfile',
    'client.ext',
  ]);
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    serverKeyEncrypted: join(dir, 'server.enc.key'),
    otherKey: join(dir, 'other.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
    strangerCert: join(dir, 'stranger.crt'),
    strangerKey: join(dir, 'stranger.key'),
  };
}

const pki = makePki();
t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));
const CA = readFileSync(pki.caCert);

function tlsEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  return baseEnv({ HERALD_TLS_CERT_FILE: pki.serverCert, HERALD_TLS_KEY_FILE: pki.serverKey, ...extra });
}

async function startTls(t: Test, extra: Record<string, string | undefined> = {}): Promise<GatewayProcess & { https: string; wss: string }> {
  const gw = await startGateway(tlsEnv(extra));
  t.teardown(() => gw.stop());
  return Object.assign(gw, { https: `https://127.0.0.1:${gw.port}`, wss: `wss://127.0.0.1:${gw.port}/ws` });
}

/** An https request trusting only the test CA; rejects on any TLS or socket error. */
function httpsCall(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string; ca?: Buffer | undefined; client?: ClientIdentity } = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, {
      method: opts.method ?? 'GET',
      headers: opts.headers ?? {},
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      ...(opts.client !== undefined ? { cert: opts.client.cert, key: opts.client.key } : {}),
      agent: false, // a fresh TLS handshake per call: the certificate sent is this call's
      timeout: 3000,
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 3 s`)));
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.end(opts.body);
  });
}

interface Frame {
  type: string;
  [key: string]: unknown;
}

/** A client certificate and its key, PEM. */
interface ClientIdentity {
  cert: Buffer;
  key: Buffer;
}

/** A minimal wss client: TestClient has no `ca` option, so this one opens `ws` itself. */
async function wssConnect(
  t: Test,
  url: string,
  sub: string,
  client?: ClientIdentity,
): Promise<{ ws: WebSocket; welcome: Frame; next(type: string): Promise<Frame> }> {
  const ws = new WebSocket(url, {
    ca: CA,
    headers: { authorization: `Bearer ${await token({ sub })}` },
    ...(client !== undefined ? { cert: client.cert, key: client.key } : {}),
  });
  t.teardown(() => ws.terminate());
  const inbox: Frame[] = [];
  let wake: (() => void) | undefined;
  ws.on('message', (data) => {
    inbox.push(JSON.parse(data.toString()) as Frame);
    wake?.();
  });
  async function next(type: string): Promise<Frame> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const i = inbox.findIndex((f) => f.type === type);
      if (i !== -1) return inbox.splice(i, 1)[0] as Frame;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${type}" frame within 3000 ms; inbox: ${JSON.stringify(inbox).slice(0, 300)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
  });
  return { ws, welcome: await next('connected'), next };
}

/** What a WebSocket attempt came to first: 'open', or the error/close that ended it. */
function firstOutcome(ws: WebSocket): Promise<{ outcome: 'open' | 'error' | 'close'; detail: string }> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ outcome: 'close', detail: 'no outcome within 3 s' }), 3000);
    const done = (outcome: 'open' | 'error' | 'close', detail: string): void => {
      clearTimeout(timer);
      resolve({ outcome, detail });
    };
    ws.once('open', () => done('open', ''));
    ws.once('error', (err) => done('error', err.message));
    ws.once('close', (code) => done('close', String(code)));
    ws.once('unexpected-response', (_req, res) => done('error', `HTTP ${res.statusCode}`));
  });
}

t.test('a TLS gateway says so in its listening line and answers https /healthz 200 to a client trusting the CA', async (t) => {
  const gw = await startTls(t);
  const listening = await gw.waitForLog((l) => l.msg === 'herald listening');
  t.equal(listening['tls'], true);
  const r = await httpsCall(`${gw.https}/healthz`, { ca: CA });
  t.equal(r.status, 200);
  t.same(JSON.parse(r.text), { status: 'ok' });
  const byName = await httpsCall(`https://localhost:${gw.port}/readyz`, { ca: CA });
  t.equal(byName.status, 200, 'the certificate is valid for the name localhost too');
});

t.test('a wss client trusting the CA authenticates and receives a notification sent with POST /publish over https', async (t) => {
  const gw = await startTls(t, { HERALD_PUBLISH_KEY: PUBLISH_KEY });
  const alice = await wssConnect(t, gw.wss, 'alice');
  t.equal(alice.welcome['userId'], 'alice');
  t.same(alice.welcome['topics'], ['user:alice', 'system']);

  const r = await httpsCall(`${gw.https}/publish`, {
    ca: CA,
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ topic: 'user:alice', data: { over: 'tls' } }),
  });
  t.equal(r.status, 202);
  const n = await alice.next('notification');
  t.equal(n['topic'], 'user:alice');
  t.same(n['data'], { over: 'tls' });

  alice.ws.send(JSON.stringify({ type: 'ping', id: 1 }));
  t.equal((await alice.next('pong'))['id'], 1, 'client frames travel over wss too');
});

t.test('a wss client that does not trust the CA refuses the server certificate', async (t) => {
  const gw = await startTls(t);
  const ws = new WebSocket(gw.wss, { headers: { authorization: `Bearer ${await token({ sub: 'alice' })}` } });
  t.teardown(() => ws.terminate());
  const r = await firstOutcome(ws);
  t.equal(r.outcome, 'error');
  t.match(r.detail, /self[- ]signed|unable to (get|verify)/i, 'the error is certificate verification');
});

t.test('a plain ws:// client to the TLS port fails without ever opening', async (t) => {
  const gw = await startTls(t);
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { authorization: `Bearer ${await token({ sub: 'alice' })}` } });
  t.teardown(() => ws.terminate());
  const r = await firstOutcome(ws);
  t.not(r.outcome, 'open', `the attempt ended with ${r.outcome} ${r.detail}`);
  t.not(r.detail, 'no outcome within 3 s', 'it failed rather than hung');
});

t.test('a plain http GET to the TLS port fails', async (t) => {
  const gw = await startTls(t);
  let failure: Error | undefined;
  try {
    const res = await fetch(`http://127.0.0.1:${gw.port}/healthz`, { signal: AbortSignal.timeout(3000) });
    t.fail(`plain http got an answer: ${res.status}`);
  } catch (err) {
    failure = err as Error;
  }
  t.ok(failure !== undefined, 'the request failed');
  t.not(failure?.name, 'TimeoutError', 'it failed rather than hung');
});

const CLIENT: ClientIdentity = { cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) };
const STRANGER: ClientIdentity = { cert: readFileSync(pki.strangerCert), key: readFileSync(pki.strangerKey) };

/** How an https call ended: its status, or the error that ended it. */
async function outcome(call: Promise<{ status: number }>): Promise<string> {
  try {
    return `status ${(await call).status}`;
  } catch (err) {
    return `error ${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`;
  }
}

t.test(
  'with HERALD_TLS_CA_FILE set, clients are asked for a certificate: none or one from that CA is accepted, one from another CA fails the handshake',
  async (t) => {
    const gw = await startTls(t, { HERALD_TLS_CA_FILE: pki.caCert });
    t.equal(await outcome(httpsCall(`${gw.https}/healthz`, { ca: CA })), 'status 200', 'https without a client certificate');
    const alice = await wssConnect(t, gw.wss, 'alice');
    t.equal(alice.welcome['userId'], 'alice', 'wss without a client certificate');

    t.equal(
      await outcome(httpsCall(`${gw.https}/healthz`, { ca: CA, client: CLIENT })),
      'status 200',
      'https with a certificate the CA signed',
    );
    const bob = await wssConnect(t, gw.wss, 'bob', CLIENT);
    t.equal(bob.welcome['userId'], 'bob', 'wss with a certificate the CA signed; identity still from the JWT');

    const stranger = await outcome(httpsCall(`${gw.https}/healthz`, { ca: CA, client: STRANGER }));
    t.match(stranger, /^error /, `https with another CA's certificate fails (${stranger.trim()})`);
    t.notMatch(stranger, /no answer .* within 3 s/, 'the handshake fails rather than hangs');
    const ws = new WebSocket(gw.wss, {
      ca: CA,
      cert: STRANGER.cert,
      key: STRANGER.key,
      headers: { authorization: `Bearer ${await token({ sub: 'carol' })}` },
    });
    t.teardown(() => ws.terminate());
    const r = await firstOutcome(ws);
    t.not(r.outcome, 'open', `wss with another CA's certificate never opens (${r.outcome} ${r.detail})`);
    t.not(r.detail, 'no outcome within 3 s', 'it failed rather than hung');
  },
);

t.test("without HERALD_TLS_CA_FILE no certificate is asked for, so even another CA's is never checked", async (t) => {
  const gw = await startTls(t);
  t.equal(await outcome(httpsCall(`${gw.https}/healthz`, { ca: CA, client: STRANGER })), 'status 200');
});

t.test('an encrypted key starts with the right HERALD_TLS_PASSPHRASE', async (t) => {
  const gw = await startTls(t, { HERALD_TLS_KEY_FILE: pki.serverKeyEncrypted, HERALD_TLS_PASSPHRASE: PASSPHRASE });
  t.equal((await httpsCall(`${gw.https}/healthz`, { ca: CA })).status, 200);
  const alice = await wssConnect(t, gw.wss, 'alice');
  t.equal(alice.welcome['userId'], 'alice');
});

async function exitWithin(what: string, child: SpawnResult, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(`${what}: still running after ${ms} ms; stderr: ${child.stderr().slice(-300)}; stdout: ${child.stdout().slice(-300)}`),
        ),
      ms,
    );
  });
  return Promise.race([child.exited, deadline]).finally(() => clearTimeout(timer));
}

async function inBatches<T>(items: readonly T[], size: number, run: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(run));
}

t.test('bad TLS settings stop the start with exit code 2 and a message naming the variable', async (t) => {
  const notPem = join(pki.dir, 'not-a-cert.pem');
  writeFileSync(notPem, 'this is not a certificate\n');
  const aDirectory = join(pki.dir, 'a-directory');
  mkdirSync(aDirectory);
  const missing = join(pki.dir, 'missing.crt');
  const rows: Array<{ what: string; env: Record<string, string | undefined>; variable: string; mentions?: string }> = [
    {
      what: 'wrong passphrase',
      env: { HERALD_TLS_KEY_FILE: pki.serverKeyEncrypted, HERALD_TLS_PASSPHRASE: 'wrong passphrase' },
      variable: 'HERALD_TLS_KEY_FILE',
      mentions: 'HERALD_TLS_PASSPHRASE',
    },
    {
      what: 'encrypted key, no passphrase',
      env: { HERALD_TLS_KEY_FILE: pki.serverKeyEncrypted },
      variable: 'HERALD_TLS_KEY_FILE',
      mentions: 'HERALD_TLS_PASSPHRASE',
    },
    { what: 'cert file does not exist', env: { HERALD_TLS_CERT_FILE: missing }, variable: 'HERALD_TLS_CERT_FILE', mentions: missing },
    { what: 'cert path is a directory', env: { HERALD_TLS_CERT_FILE: aDirectory }, variable: 'HERALD_TLS_CERT_FILE', mentions: aDirectory },
    { what: 'cert file is not a certificate', env: { HERALD_TLS_CERT_FILE: notPem }, variable: 'HERALD_TLS_CERT_FILE', mentions: notPem },
    { what: 'key file does not exist', env: { HERALD_TLS_KEY_FILE: join(pki.dir, 'missing.key') }, variable: 'HERALD_TLS_KEY_FILE' },
    {
      what: 'key does not match the cert',
      env: { HERALD_TLS_KEY_FILE: pki.otherKey },
      variable: 'HERALD_TLS_KEY_FILE',
      mentions: pki.otherKey,
    },
    { what: 'only the cert is set', env: { HERALD_TLS_KEY_FILE: undefined }, variable: 'HERALD_TLS_KEY_FILE' },
    { what: 'only the key is set', env: { HERALD_TLS_CERT_FILE: undefined }, variable: 'HERALD_TLS_CERT_FILE' },
    { what: 'CA file is not a certificate', env: { HERALD_TLS_CA_FILE: notPem }, variable: 'HERALD_TLS_CA_FILE', mentions: notPem },
    { what: 'CA file does not exist', env: { HERALD_TLS_CA_FILE: join(pki.dir, 'missing-ca.crt') }, variable: 'HERALD_TLS_CA_FILE' },
  ];
  // Two at a time: each start loads Node and the gateway's modules, and a dozen at once
  // on a busy machine can take longer than any sensible deadline.
  await inBatches(rows, 2, async (row) => {
    const child = spawnMain(t, [], tlsEnv(row.env));
    const { code } = await exitWithin(row.what, child, 20_000);
    t.equal(code, 2, `${row.what}: exit code 2`);
    const stderr = child.stderr();
    t.match(
      stderr,
      new RegExp(`^herald: configuration error: ${row.variable}:`, 'm'),
      `${row.what}: stderr starts by naming ${row.variable}`,
    );
    if (row.mentions !== undefined) t.match(stderr, row.mentions, `${row.what}: stderr mentions ${row.mentions}`);
    t.notMatch(stderr, PASSPHRASE, `${row.what}: no passphrase in the message`);
    t.notMatch(stderr, 'wrong passphrase', `${row.what}: no passphrase in the message`);
    t.notMatch(child.stdout(), 'herald listening', `${row.what}: never listened`);
  });
});

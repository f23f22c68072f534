// The demo page's HTTP side: served from memory under /demo only when HERALD_DEMO is
// on (which --dev turns on), with a strict CSP; nothing outside the known files is
// reachable. The page itself is driven in a real browser by browser.test.ts.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError } from '../../dist/config.js';
import { loadDemoAssets } from '../../dist/demo.js';
import { rawExchange } from '../support/fuzz.js';
import { baseEnv, ROOT, spawnMain, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';

/** GET `path` exactly as written (no normalisation), over a raw socket. */
async function rawGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await rawExchange({ port, head: Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 'latin1'), deadlineMs: 5000 });
  if (r.response === undefined) throw new Error(`no answer to GET ${path} (${r.end})`);
  return { status: r.response.status, body: r.response.body.toString() };
}

async function get(url: string): Promise<{ status: number; headers: Headers; body: string }> {
  const r = await fetch(url);
  return { status: r.status, headers: r.headers, body: await r.text() };
}

t.test('with HERALD_DEMO on, /demo serves the page, its script and the SDK modules', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_DEMO: 'true' }));
  t.teardown(() => gw.stop());
  const page = await get(`${gw.http}/demo`);
  t.equal(page.status, 200);
  t.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
  t.equal(
    page.body,
    readFileSync(join(ROOT, 'client', 'demo', 'index.html'), 'utf8'),
    'the page, byte for byte (HERALD_WS_PATH is the default /ws)',
  );
  t.match(page.headers.get('content-security-policy'), /script-src 'self'/);
  // Sockets only to the page's own origin: a pasted token cannot be sent elsewhere.
  t.match(page.headers.get('content-security-policy'), /(?:^|; )connect-src 'self';/);
  t.notMatch(page.headers.get('content-security-policy'), /\b(?:ws|wss):/, 'no ws: or wss: source that would allow any host');
  t.match(page.headers.get('content-security-policy'), /frame-ancestors 'none'/);
  t.equal(page.headers.get('x-content-type-options'), 'nosniff');

  for (const path of ['/demo/', '/demo/demo.js', '/demo/sdk/index.js', '/demo/sdk/client.js']) {
    const r = await get(`${gw.http}${path}`);
    t.equal(r.status, 200, path);
  }
  const sdk = await get(`${gw.http}/demo/sdk/index.js`);
  t.equal(sdk.headers.get('content-type'), 'text/javascript; charset=utf-8', 'modules are served as JavaScript');
  t.equal(sdk.body, readFileSync(join(ROOT, 'client', 'dist', 'index.js'), 'utf8'));

  // Each request line is sent as written, over a raw socket: fetch() (like a browser)
  // resolves `..` and `%2e%2e` before sending, so it could never send these.
  const rows = [
    '/demo/nope.js',
    '/demo/sdk/index.d.ts',
    '/demo/sdk/.build-stamp',
    '/demo/index.html',
    '/demo/sdk/../../package.json',
    '/demo/../package.json',
    '/demo/%2e%2e/package.json',
    '/demo/sdk/%2e%2e/%2e%2e/package.json',
    '/demo/%2E%2E/%2E%2E/package.json',
    '/demo/..%2f..%2fpackage.json',
    '/demo/sdk/..%5c..%5cpackage.json',
    '/demo/sdk/..\\..\\package.json',
    '/demo/sdk/%252e%252e/%252e%252e/package.json',
    '/demo/./demo.js',
    '/demo//demo.js',
    '/demo/sdk/index.js%00',
    '/demo/sdk/../../../../etc/passwd',
  ];
  const pkg = readFileSync(join(ROOT, 'package.json'), 'utf8');
  for (const path of rows) {
    const r = await rawGet(gw.port, path);
    t.equal(r.status, 404, `${path} is not served`);
    t.notOk(r.body.includes('"name"') || r.body === pkg, `${path}: no file in the answer`);
  }
  const control = await rawGet(gw.port, '/demo/demo.js');
  t.equal(control.status, 200, 'the same raw request for a real file is served (so the 404s above are the paths, not the method)');
});

t.test('the page is told the WebSocket path of HERALD_WS_PATH, and its script takes no URL from the address', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_DEMO: 'true', HERALD_WS_PATH: '/v1/socket' }));
  t.teardown(() => gw.stop());
  const page = await get(`${gw.http}/demo`);
  t.match(page.body, '<meta name="herald-ws-path" content="/v1/socket">');
  const script = await get(`${gw.http}/demo/demo.js`);
  t.notMatch(script.body, /params\.get\('ws'\)/, 'no ?ws= override');
});

t.test('with HERALD_DEMO unset (production) /demo is 404', async (t) => {
  const gw = await startGateway(baseEnv());
  t.teardown(() => gw.stop());
  for (const path of ['/demo', '/demo/demo.js', '/demo/sdk/index.js']) {
    const r = await fetch(`${gw.http}${path}`);
    t.equal(r.status, 404, path);
    await r.arrayBuffer();
  }
});

t.test('--dev turns the demo on and prints its URL with a token that the page reads from the fragment', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'herald-demo-dev-'));
  const env = baseEnv({ HERALD_JWT_SECRET: undefined });
  const child = spawnMain(t, ['--dev'], env, cwd);
  await waitFor('the dev banner', () => child.stderr().includes('HERALD DEV MODE') && child.stderr().includes('=====\n'), 10_000);
  const url = /demo page: (\S+)/.exec(child.stderr())?.[1];
  t.ok(url, 'the banner has a demo page line');
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/demo#token=[\w-]+\.[\w-]+\.[\w-]+$/);
  const r = await get((url as string).replace(/#.*/, ''));
  t.equal(r.status, 200);
  t.match(r.body, /<title>Herald demo<\/title>/);
});

t.test('loadDemoAssets without a built client fails naming HERALD_DEMO', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'herald-no-client-'));
  let caught: unknown;
  try {
    loadDemoAssets(empty);
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof ConfigError, 'a ConfigError (main exits 2 with it)');
  t.match((caught as Error).message, /^HERALD_DEMO: .*make build/);
});

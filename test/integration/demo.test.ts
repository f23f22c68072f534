// The demo page's HTTP side: served from memory under /demo only when HERALD_DEMO is
// on (which --dev turns on), with a strict CSP; nothing outside the known files is
// reachable. The page itself is driven in a real browser by browser.test.ts.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError } from '../../dist/config.js';
import { loadDemoAssets } from '../../dist/demo.js';
import { ROOT, baseEnv, spawnMain, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';

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
  t.equal(page.body, readFileSync(join(ROOT, 'client', 'demo', 'index.html'), 'utf8'), 'the page, byte for byte (HERALD_WS_PATH is the default /ws)');
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

  const rows = ['/demo/nope.js', '/demo/sdk/index.d.ts', '/demo/sdk/../../package.json', '/demo/%2e%2e/package.json', '/demo/sdk/.build-stamp', '/demo/index.html'];
  for (const path of rows) {
    const r = await fetch(`${gw.http}${path}`);
    t.equal(r.status, 404, `${path} is not served`);
    await r.arrayBuffer();
  }
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

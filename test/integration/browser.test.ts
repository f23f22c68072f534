// The demo page in a real headless Chromium (Debian's `chromium`, driven by
// playwright-core; `make test` installs it when missing): the SDK's browser build
// against the real gateway and a private redis-server. Notifications published
// through Redis appear as cards (payload text as text, never markup); mark-read
// reaches herald:events; the gateway is stopped and started again on the same port
// and the page reconnects by itself and shows the recovery; a second page shows the
// topic's history on load, and in embedded mode says it has none. The reload test is
// browser-reload.test.ts.
// The README screenshot comes from here: HERALD_SCREENSHOT=docs/demo.png (make screenshot).
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import t from 'tap';
import { baseEnv, type GatewayProcess, ROOT, startGateway } from '../support/gateway.js';
import { freePort, waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const CHROMIUM = process.env['HERALD_CHROMIUM'] ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  throw new Error(`no Chromium at ${CHROMIUM}: \`make test\` installs it as root (apt-get install chromium); or set HERALD_CHROMIUM`);
}

const redis = await startRedis();
t.teardown(() => redis.close());
const pub = redis.client();
const port = await freePort();
const CONTROL_KEY = 'browser-test-control-key-0123456789';
const env = baseEnv({
  HERALD_REDIS_URL: redis.url,
  HERALD_PORT: String(port),
  HERALD_DEMO: 'true',
  HERALD_LOG_LEVEL: 'info',
  HERALD_CONTROL_KEY: CONTROL_KEY,
});

async function gateway(): Promise<GatewayProcess> {
  const gw = await startGateway(env);
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  return gw;
}
let gw = await gateway();
t.teardown(() => gw.stop());

const browser: Browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // Root in a container has no user namespaces for Chromium's sandbox.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
t.teardown(() => browser.close());
const page: Page = await browser.newPage({ viewport: { width: 900, height: 760 } });
const consoleErrors: string[] = [];
page.on('pageerror', (err) => consoleErrors.push(err.message));

const sub = 'maria';
const jwt = await token({ sub, roles: ['ops'], topics: ['org:*'] });
const state = (s: string) => page.locator(`#state[data-state="${s}"]`).waitFor({ timeout: 15_000 });
const notification = (id: string) => page.locator(`#notifications li[data-id="${id}"]`);

async function publish(topic: string, id: string, title: string, body?: string): Promise<void> {
  await pub.publish(`notifications:${topic}`, JSON.stringify({ id, title, ...(body === undefined ? {} : { body }) }));
}

t.test('the page opens with a token from the fragment and shows the user and its topics', async (t) => {
  await page.goto(`http://127.0.0.1:${port}/demo#token=${jwt}`);
  await state('open');
  t.equal(await page.locator('#user').textContent(), sub);
  const topics = await page.locator('#topics li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-topic')));
  t.same([...topics].sort(), ['role:ops', 'system', `user:${sub}`]);
  t.notMatch(page.url(), /token=/, 'the token is removed from the address bar');
  await page.locator('#quality[data-rtt]').waitFor({ timeout: 10_000 });
  t.match(await page.locator('#quality').getAttribute('data-level'), /^(good|fair|poor)$/, 'quality measured from ping/pong');
});

t.test('a notification published through Redis appears as a card: title, body, time, topic', async (t) => {
  await publish(`user:${sub}`, 'n-1', 'Your report is ready', 'Q3 revenue, 12 pages: open it from Reports.');
  await notification('n-1').waitFor({ timeout: 10_000 });
  const card = notification('n-1');
  t.equal(await card.locator('.title').textContent(), 'Your report is ready');
  t.equal(await card.locator('.body').textContent(), 'Q3 revenue, 12 pages: open it from Reports.');
  t.equal(await card.locator('.topic').textContent(), `user:${sub}`);
  t.match(await card.locator('time').getAttribute('datetime'), /^\d{4}-\d\d-\d\dT/);
  t.equal(await card.getAttribute('data-topic'), `user:${sub}`);
  t.equal(await card.getAttribute('data-source'), 'live');
});

t.test('a payload without title or body shows a summary, and its JSON behind a toggle', async (t) => {
  await pub.publish(`notifications:user:${sub}`, JSON.stringify({ id: 'n-raw', type: 'invoice.paid', amount: 42, lines: [1, 2] }));
  const card = notification('n-raw');
  await card.waitFor({ timeout: 10_000 });
  t.equal(await card.locator('.title').textContent(), 'type: invoice.paid · amount: 42');
  t.equal(await card.locator('.body').count(), 0, 'no body');
  t.notOk(await card.locator('pre.data').isVisible(), 'the JSON is folded away');
  await card.locator('summary').click();
  t.ok(await card.locator('pre.data').isVisible(), 'and shown on a click');
  t.same(JSON.parse((await card.locator('pre.data').textContent()) ?? ''), {
    id: 'n-raw',
    type: 'invoice.paid',
    amount: 42,
    lines: [1, 2],
  });
  await card.locator('summary').click();
});

t.test('the same id published twice is shown once', async (t) => {
  await publish(`user:${sub}`, 'n-dup', 'Build 412 passed');
  await publish(`user:${sub}`, 'n-dup', 'Build 412 passed');
  await publish(`user:${sub}`, 'n-barrier', 'Weekly digest', 'Three new comments on your report.');
  await notification('n-barrier').waitFor({ timeout: 10_000 });
  t.equal(await notification('n-dup').count(), 1);
});

t.test('mark-read marks the item and reaches the herald:events stream', async (t) => {
  await notification('n-1').locator('button.mark-read').click();
  await page.locator('#notifications li[data-id="n-1"][data-read="true"]').waitFor({ timeout: 10_000 });
  const entries = (await pub.xrange('herald:events', '-', '+')) as Array<[string, string[]]>;
  const fields = entries.map(([, f]) => Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i], f[2 * i + 1]])));
  t.ok(
    fields.some((e) => e['type'] === 'mark_read' && e['notificationId'] === 'n-1' && e['userId'] === sub),
    'a mark_read event for n-1 by maria',
  );
});

t.test('the subscribe box subscribes to a granted topic, and its notifications arrive', async (t) => {
  await page.fill('#subscribe-input', 'org:rio');
  await page.click('#subscribe-button');
  await page.locator('#topics li[data-topic="org:rio"]').waitFor({ timeout: 10_000 });
  await publish('org:rio', 'n-org', 'Rio office news');
  await notification('n-org').waitFor({ timeout: 10_000 });
  t.pass('org:rio notification shown');
});

t.test('a topic the token does not grant is refused, and the page says so', async (t) => {
  await page.fill('#subscribe-input', 'billing:42');
  await page.click('#subscribe-button');
  await page.locator('#error').filter({ hasText: 'forbidden' }).waitFor({ timeout: 10_000 });
  t.match(await page.locator('#error').textContent(), /^subscribe billing:42: forbidden/);
  t.equal(await page.locator('#topics li[data-topic="billing:42"]').count(), 0);
});

async function control(action: string, body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/control/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CONTROL_KEY}` },
    body: JSON.stringify({ user: sub, ...body }),
  });
  if (res.status !== 200) throw new Error(`control ${action}: ${res.status} ${await res.text()}`);
}

t.test('the page shows what a backend does to the connection: a server-side subscribe, unsubscribe and disconnect', async (t) => {
  await control('subscribe', { topic: 'news:all' }); // not granted by the token: the server's call
  await page.locator('#events li[data-kind="server-subscribed"][data-topic="news:all"]').waitFor({ timeout: 10_000 });
  await page.locator('#topics li[data-topic="news:all"]').waitFor({ timeout: 10_000 });
  t.pass('the event log and the topic list show the server-side subscription');
  await publish('news:all', 'n-news', 'Server-side news');
  await notification('n-news').waitFor({ timeout: 10_000 });
  t.pass("and the topic's notifications arrive");
  await control('unsubscribe', { topic: 'news:all' });
  await page.locator('#events li[data-kind="server-unsubscribed"][data-topic="news:all"]').waitFor({ timeout: 10_000 });
  await page.locator('#topics li[data-topic="news:all"]').waitFor({ state: 'detached', timeout: 10_000 });
  t.pass('a server-side unsubscribe is shown, and the topic leaves the list');
  await control('disconnect', { reconnect: true });
  await page.locator('#events li[data-kind="server-disconnect"][data-code="4001"]').waitFor({ timeout: 10_000 });
  await state('open');
  t.pass('a disconnect asking to reconnect is shown, and the page is connected again');
});

t.test('a gateway restart: the state turns to reconnecting, then open, and new notifications arrive', async (t) => {
  const recovered = page.locator(`#events li[data-kind="recovery"][data-topic="user:${sub}"][data-recovered="true"]`);
  const recoveredBefore = await recovered.count(); // earlier reconnects have their own
  await gw.stop();
  await state('reconnecting');
  t.pass('reconnecting while the gateway is down');
  gw = await gateway();
  await state('open');
  t.pass('open again, by itself');
  await publish('org:rio', 'n-after', 'After the restart', 'org:rio was re-subscribed by the SDK.');
  await notification('n-after').waitFor({ timeout: 10_000 });
  t.pass('a notification on the re-subscribed topic arrives after the restart');
  await recovered.nth(recoveredBefore).waitFor({ timeout: 10_000 });
  t.pass('the page shows the resume of its topics as recovered');

  const dir = process.env['HERALD_SCREENSHOT'] !== undefined ? undefined : mkdtempSync(join(tmpdir(), 'herald-shot-'));
  const file =
    process.env['HERALD_SCREENSHOT'] !== undefined ? resolve(ROOT, process.env['HERALD_SCREENSHOT']) : join(dir as string, 'demo.png');
  await page.screenshot({ path: file, fullPage: true });
  t.ok(statSync(file).size > 10_000, `screenshot written to ${file}`);
});

t.test('payload text is shown as text, never as markup', async (t) => {
  const hostile = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>';
  await publish(`user:${sub}`, 'n-html', hostile, '<script>document.title="pwned"</script>');
  const card = notification('n-html');
  await card.waitFor({ timeout: 10_000 });
  t.equal(await card.locator('.title').textContent(), hostile);
  t.equal(await card.locator('.body').textContent(), '<script>document.title="pwned"</script>');
  t.equal(await card.locator('img, b, script').count(), 0, 'no element made from the payload');
  t.equal(await page.title(), 'Herald demo');
});

t.test('a new page shows the topic history on load, each notification once', async (t) => {
  const other = await browser.newPage();
  t.teardown(() => other.close());
  other.on('pageerror', (err) => consoleErrors.push(err.message));
  await other.goto(`http://127.0.0.1:${port}/demo#token=${jwt}`);
  const card = (id: string) => other.locator(`#notifications li[data-id="${id}"]`);
  await card('n-1').waitFor({ timeout: 10_000 });
  t.equal(await card('n-1').getAttribute('data-source'), 'history');
  t.equal(await card('n-1').locator('.title').textContent(), 'Your report is ready');
  t.equal(await card('n-dup').count(), 1, 'an id published twice is one card');
  await other
    .locator('#history-status')
    .filter({ hasText: `from user:${sub}` })
    .waitFor({ timeout: 10_000 });
  t.match(await other.locator('#history-status').textContent(), /History on load: \d+ from /);
});

t.test('the page connects only to its own origin: ?ws= naming another host is ignored, and the CSP blocks a socket to it', async (t) => {
  // A TCP listener standing in for an attacker's host: it counts who connects (a
  // WebSocket to it would carry the token in its handshake).
  const sockets: string[] = [];
  const evil: Server = createServer((s) => {
    sockets.push(`${s.remoteAddress ?? ''}:${s.remotePort ?? ''}`);
    s.destroy();
  });
  const evilPort = await freePort();
  await new Promise<void>((resolve) => evil.listen(evilPort, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => evil.close(() => resolve())));

  const other = await browser.newPage();
  t.teardown(() => other.close());
  const violations: string[] = [];
  await other.exposeFunction('reportViolation', (v: string) => violations.push(v));
  await other.addInitScript({
    content:
      "document.addEventListener('securitypolicyviolation', (e) => window.reportViolation(e.violatedDirective + ' ' + e.blockedURI));",
  });
  await other.goto(`http://127.0.0.1:${port}/demo?ws=ws://127.0.0.1:${evilPort}/ws#token=${jwt}`);
  await other.locator('#state[data-state="open"]').waitFor({ timeout: 15_000 });
  t.equal(await other.locator('#ws-url').textContent(), `ws://127.0.0.1:${port}/ws`, 'the page shows its own origin');
  t.equal(await other.locator('#user').textContent(), sub, 'and is connected there');

  // Even a script on the page (say, one injected) cannot open a socket to another host.
  const outcome = await other.evaluate(async (url) => {
    try {
      const ws = new WebSocket(url);
      return await new Promise<string>((resolve) => {
        ws.onopen = () => resolve('open');
        ws.onerror = () => resolve('error');
        setTimeout(() => resolve('nothing'), 2000);
      });
    } catch (err) {
      return `threw ${(err as Error).name}`;
    }
  }, `ws://127.0.0.1:${evilPort}/ws`);
  t.not(outcome, 'open', `a WebSocket to another host does not open (${outcome})`);
  await waitFor(
    'the CSP violation report',
    () => violations.some((v) => v.startsWith('connect-src') && v.includes(String(evilPort))),
    5000,
  );
  t.pass(`the CSP reported it: ${JSON.stringify(violations)}`);
  t.strictSame(sockets, [], 'the other host never saw a connection');
});

t.test('in embedded mode (no history) the page says so, and notifications still arrive live', async (t) => {
  const key = 'demo-publish-key-0123456789abcdef';
  const embedded = await startGateway(baseEnv({ HERALD_DEMO: 'true', HERALD_PUBLISH_KEY: key, HERALD_LOG_LEVEL: 'info' }));
  t.teardown(() => embedded.stop());
  const other = await browser.newPage();
  t.teardown(() => other.close());
  other.on('pageerror', (err) => consoleErrors.push(err.message));
  await other.goto(`${embedded.http}/demo#token=${jwt}`);
  await other.locator('#history-status').filter({ hasText: 'keeps none' }).waitFor({ timeout: 10_000 });
  const res = await fetch(`${embedded.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}` },
    body: JSON.stringify({ topic: `user:${sub}`, data: 'Deploy finished' }),
    signal: AbortSignal.timeout(5000),
  });
  t.equal(res.status, 202);
  // A string payload has no id of its own: the reply says which one the gateway gave it.
  const reply = (await res.json()) as { notifications: Array<{ id: string }> };
  const id = reply.notifications[0]?.id ?? '';
  const card = other.locator(`#notifications li[data-id="${id}"]`);
  await card.waitFor({ timeout: 10_000 });
  t.equal(await card.locator('.title').textContent(), 'Deploy finished', 'a string payload is its own title');
  t.equal(await card.getAttribute('data-source'), 'live');
});

t.test('the page raised no script errors', async (t) => {
  t.strictSame(consoleErrors, []);
});

// The demo page reloaded while notifications are being published, in a real headless
// Chromium (as browser.test.ts) against a gateway in Redis mode with history on and a
// private redis-server. 300 notifications go out at a steady pace, each with its own
// id and sequence number; the page is reloaded in the middle, and its script is held
// back while 160 more go out (a slow page load: what the issue says a reload lost).
// When the publishing is over, the reloaded page shows every notification exactly once:
//   - the ones the first page had shown come back through `history` (the page asks for
//     the entries up to the position the SDK's localStorage store kept: `data-source=history`);
//   - the ones published while the page was loading come back through the SDK's resume
//     from that stored position (`replayed`), with a `recovery` event saying recovered;
//   - the rest arrive live (`live`).
// The control row runs the same reload with the page told not to keep positions
// (`?positions=memory`): the page no longer knows where it stood, can only show the
// newest entries of its history depth, and notifications are missing, so the first
// row fails without the position store.
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Browser, chromium } from 'playwright-core';
import t from 'tap';
import { baseEnv, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const CHROMIUM = process.env['HERALD_CHROMIUM'] ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  throw new Error(`no Chromium at ${CHROMIUM}: \`make test\` installs it as root (apt-get install chromium); or set HERALD_CHROMIUM`);
}

/** Notifications published per run, one every PACE_MS (4.5 s in all). */
const TOTAL = 300;
const PACE_MS = 15;
/** The page reloads once this many are published (and it shows them). */
const RELOAD_AT = 60;
/** The reloaded page's script is held back until this many are published; the rest arrive live. */
const LOADED_AT = 220;
/**
 * History depth the page asks for (`?history=`, two requests of at most 100): enough
 * for what the first page had shown (RELOAD_AT and the few dozen after it on a busy
 * machine), short of that plus what went out while it loaded (LOADED_AT), so that only
 * the stored position can tell the page where to take its history from.
 */
const HISTORY = 150;

const redis = await startRedis();
t.teardown(() => redis.close());
const pub = redis.client();
const gw = await startGateway(
  baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_DEMO: 'true', HERALD_HISTORY_SIZE: '1000', HERALD_LOG_LEVEL: 'info' }),
);
t.teardown(() => gw.stop());
await gw.waitForLog((l) => l.msg === 'redis subscription active', 10_000);
// Plain PUBLISHes are recorded (and so delivered) by a recorder once it listens.
await gw.waitForLog((l) => l.msg === 'recording', 10_000);

const browser: Browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // Root in a container has no user namespaces for Chromium's sandbox.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
t.teardown(() => browser.close());

interface Card {
  id: string;
  topic: string;
  source: string;
}

interface Outcome {
  /** Ids the first page showed just before the reload. */
  shownBefore: string[];
  /** The reloaded page's list, top (newest) first. */
  cards: Card[];
  recoveries: Array<{ topic: string; recovered: string }>;
  errors: string[];
}

const seqOf = (id: string): number => Number(id.slice('n-'.length));

/**
 * Publishes TOTAL notifications to `topic` at a steady pace (deadlines, not sleeps that
 * drift); `reached(n)` resolves once n are published.
 */
function publishAll(topic: string): { done: Promise<void>; reached(n: number): Promise<void> } {
  let published = 0;
  const done = (async () => {
    const start = Date.now();
    for (let seq = 1; seq <= TOTAL; seq++) {
      const payload = { id: `n-${seq}`, title: `Notification ${seq}`, body: `number ${seq} of ${TOTAL}`, seq };
      await pub.publish(`notifications:${topic}`, JSON.stringify(payload));
      published = seq;
      await sleep(Math.max(0, start + seq * PACE_MS - Date.now()));
    }
  })();
  return { done, reached: (n) => waitFor(`${n} published`, () => published >= n, 15_000, 5) };
}

/** Rejects after `ms` naming `what`: every wait in this file is bounded. */
async function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function reloadWhilePublishing(user: string, query: string): Promise<Outcome> {
  const topic = `user:${user}`;
  const context = await browser.newContext({ viewport: { width: 900, height: 760 } });
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    const jwt = await token({ sub: user });
    await page.goto(`${gw.http}/demo?history=${HISTORY}${query}#token=${jwt}`);
    await page.locator('#state[data-state="open"]').waitFor({ timeout: 15_000 });
    await page.locator('#history-status').filter({ hasText: /\S/ }).waitFor({ timeout: 10_000 });

    const publishing = publishAll(topic);
    await publishing.reached(RELOAD_AT);
    await page.locator(`#notifications li[data-id="n-${RELOAD_AT}"]`).waitFor({ timeout: 10_000 });
    const shownBefore = await page.locator('#notifications li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-id') ?? ''));

    // The reload: the HTML comes at once, the page's script once LOADED_AT are published.
    await page.route('**/demo/demo.js', async (route) => {
      await publishing.reached(LOADED_AT);
      await route.continue();
    });
    await page.reload({ timeout: 20_000 });
    await page.locator('#state[data-state="open"]').waitFor({ timeout: 15_000 });
    await within('the publishing', 20_000, publishing.done);

    // Done when the last one is shown, the history asked on load has come, and (with
    // the store) the resume has ended: the SDK emits `recovery` after the replays.
    await page.locator(`#notifications li[data-id="n-${TOTAL}"]`).waitFor({ timeout: 10_000 });
    await page.locator('#history-status').filter({ hasText: /\S/ }).waitFor({ timeout: 10_000 });
    if (query === '') {
      // Soft: without it the assertions below say what is missing, not just "timeout".
      await page
        .locator(`#events li[data-kind="recovery"][data-topic="${topic}"]`)
        .waitFor({ timeout: 10_000 })
        .catch(() => undefined);
    }
    const cards = await page.locator('#notifications li').evaluateAll((lis) =>
      lis.map((li) => ({
        id: li.getAttribute('data-id') ?? '',
        topic: li.getAttribute('data-topic') ?? '',
        source: li.getAttribute('data-source') ?? '',
      })),
    );
    const recoveries = await page
      .locator('#events li[data-kind="recovery"]')
      .evaluateAll((lis) =>
        lis.map((li) => ({ topic: li.getAttribute('data-topic') ?? '', recovered: li.getAttribute('data-recovered') ?? '' })),
      );
    return { shownBefore, cards, recoveries, errors };
  } finally {
    await context.close();
  }
}

/** Ids n-1..n-TOTAL missing from the cards, and those shown more than once. */
function tally(cards: Card[]): { missing: string[]; repeated: string[] } {
  const counts = new Map<string, number>();
  for (const c of cards) counts.set(c.id, (counts.get(c.id) ?? 0) + 1);
  const missing: string[] = [];
  for (let seq = 1; seq <= TOTAL; seq++) if (!counts.has(`n-${seq}`)) missing.push(`n-${seq}`);
  const repeated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  return { missing, repeated };
}

t.test('reloaded while 300 notifications are published, the page shows every one exactly once', async (t) => {
  const user = 'reload-store';
  const { shownBefore, cards, recoveries, errors } = await reloadWhilePublishing(user, '');
  const { missing, repeated } = tally(cards);
  t.strictSame(missing, [], 'none missing');
  t.strictSame(repeated, [], 'none twice');
  t.equal(cards.length, TOTAL, 'nothing else on the page');
  t.ok(
    cards.every((c) => c.topic === `user:${user}`),
    'every card is on the user topic',
  );
  t.strictSame(
    cards.map((c) => c.id),
    Array.from({ length: TOTAL }, (_, i) => `n-${TOTAL - i}`),
    'newest first',
  );

  const bySource = (s: string) => cards.filter((c) => c.source === s).map((c) => seqOf(c.id));
  const history = bySource('history');
  const replayed = bySource('replayed');
  const live = bySource('live');
  t.comment(
    `first page showed ${shownBefore.length}; after the reload: ${history.length} from history, ${replayed.length} replayed by the resume, ${live.length} live`,
  );
  t.equal(history.length + replayed.length + live.length, TOTAL, 'every card says where it came from');
  const source = new Map(cards.map((c) => [c.id, c.source]));
  t.strictSame(
    shownBefore.filter((id) => source.get(id) !== 'history'),
    [],
    'what the first page showed comes back through history (up to the stored position)',
  );
  t.ok(replayed.length > 0, 'what went out while the page loaded comes back through the resume from the stored position');
  t.ok(Math.min(...replayed) > Math.max(...history), 'the resume takes over where the history ends');
  // The rest arrive live: how many depends on how fast the reloaded page connects
  // once its script comes (about 60 here), so no bound is asserted on it.
  t.strictSame(recoveries, [{ topic: `user:${user}`, recovered: 'true' }], 'the page shows the recovery');
  t.strictSame(errors, [], 'no script errors');
});

t.test('control: without the position store (?positions=memory) the same reload loses notifications', async (t) => {
  const { cards, recoveries, errors } = await reloadWhilePublishing('reload-memory', '&positions=memory');
  const { missing, repeated } = tally(cards);
  t.comment(`without the store: ${cards.length} shown, ${missing.length} missing (${missing.slice(0, 5).join(', ')}…)`);
  t.ok(missing.length > 0, 'notifications are missing: the row above depends on the position store');
  t.strictSame(repeated, [], 'still none twice');
  t.strictSame(recoveries, [], 'nothing to resume from, so no recovery');
  t.strictSame(errors, [], 'no script errors');
});

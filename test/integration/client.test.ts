// The SDK (client/dist) against the real gateway: a private redis-server, gateways as
// child processes, `ws` as the WebSocket (Node 20 has no global one). Each test uses
// its own user ids. The shared gateway runs with HERALD_DEDUP_WINDOW_S=0 so that a
// repeated id reaches the client and the SDK's own dedup is what is tested.
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import {
  type AuthResult,
  HeraldClient,
  type HeraldClientOptions,
  type HeraldError,
  type Notification,
  type StateChange,
} from '../../client/dist/index.js';
import { baseEnv, type GatewayProcess, startGateway } from '../support/gateway.js';
import { freePort, waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const redis = await startRedis();
t.teardown(() => redis.close());
const port = await freePort();
// A fixed port, so a restarted gateway is where the client expects it.
const env = baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_PORT: String(port), HERALD_DEDUP_WINDOW_S: '0' });

async function startShared(): Promise<GatewayProcess> {
  const g = await startGateway(env);
  await g.waitForLog((l) => l.msg === 'redis subscription active');
  return g;
}
let gw = await startShared();
t.teardown(() => gw.stop()); // whichever gateway is current at the end
const pub = redis.client();

const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

function publish(topic: string, payload: unknown): Promise<number> {
  return pub.publish(`notifications:${topic}`, JSON.stringify(payload));
}

/** Every event a client emitted, and waits on them with deadlines. */
class Recorder {
  readonly states: StateChange[] = [];
  readonly notifications: Notification[] = [];
  readonly errors: HeraldError[] = [];
  readonly reauths: AuthResult[] = [];
  #waiters: Array<() => void> = [];

  constructor(readonly client: HeraldClient) {
    client.on('state', (s) => this.#push(this.states, s));
    client.on('notification', (n) => this.#push(this.notifications, n));
    client.on('error', (e) => this.#push(this.errors, e));
    client.on('reauth', (r) => this.#push(this.reauths, r));
  }

  #push<T>(list: T[], item: T): void {
    list.push(item);
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves with the first item of `list` from index `from` matching `pred`, seen or future. */
  until<T>(what: string, list: T[], pred: (x: T) => boolean, from = 0, timeoutMs = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = list.slice(from).find(pred);
        if (found === undefined) return false;
        done();
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        done();
        const gateway = `shared gateway: exit ${gw.proc.exitCode ?? '-'} signal ${gw.proc.signalCode ?? '-'}; stderr: ${gw.stderr().slice(-500)}`;
        reject(new Error(`no ${what} within ${timeoutMs} ms; states: ${this.states.map(brief).join(' | ')}; ${gateway}`));
      }, timeoutMs);
      const waiter = (): void => void check();
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
      };
      this.#waiters.push(waiter);
      check();
    });
  }

  state(state: StateChange['state'], pred: (s: StateChange) => boolean = () => true, from = 0, timeoutMs?: number): Promise<StateChange> {
    return this.until(`state ${state}`, this.states, (s) => s.state === state && pred(s), from, timeoutMs);
  }

  notification(pred: (n: Notification) => boolean, timeoutMs?: number): Promise<Notification> {
    return this.until('notification', this.notifications, pred, 0, timeoutMs);
  }
}

const brief = (s: StateChange): string =>
  [s.state, s.reason, s.code, s.status, s.delayMs === undefined ? undefined : `+${Math.round(s.delayMs)}ms`]
    .filter((x) => x !== undefined)
    .join(' ');

type Claims = { sub: string; roles?: string[]; topics?: string[] };

/** A client with `ws`, a token function counting its calls, closed at teardown. */
function connect(t: Test, claims: Claims, opts: Partial<HeraldClientOptions> = {}, url = gw.ws): Recorder & { tokenCalls: () => number } {
  let calls = 0;
  const client = new HeraldClient({
    url,
    token: async () => {
      calls++;
      return token(claims);
    },
    WebSocket,
    backoffInitialMs: 100,
    backoffMaxMs: 500,
    ...opts,
  });
  t.teardown(() => client.close());
  return Object.assign(new Recorder(client), { tokenCalls: () => calls });
}

t.test(
  'notifications arrive as {topic, id, ts, data}; an id delivered twice on a topic is shown once, on another topic it is another notification',
  async (t) => {
    const sub = uid('dup');
    const c = connect(t, { sub, roles: [sub] });
    const open = await c.state('open');
    t.equal(open.session?.userId, sub);
    t.same(open.session?.topics, [`user:${sub}`, `role:${sub}`, 'system']);
    t.same(c.client.session, open.session);

    const before = await scrape(gw.http);
    const id = `n-${randomUUID()}`;
    await publish(`user:${sub}`, { id, title: 'hi' });
    await publish(`user:${sub}`, { id, title: 'hi again' }); // a publisher retry
    await publish(`role:${sub}`, { id, title: 'hi' }); // the same notification for the role
    const marker = randomUUID();
    await publish(`user:${sub}`, { marker });
    await c.notification((n) => (n.data as { marker?: string }).marker === marker);
    const after = await scrape(gw.http);
    // The retry on the same topic is recorded once (history on), so never announced twice;
    // the copy on the role topic is another notification on another topic.
    t.equal(
      after.value('herald_notifications_published_total') - before.value('herald_notifications_published_total'),
      3,
      'the gateway sent three (its own dedup is off)',
    );
    t.same(
      c.notifications.map((x) => x.topic),
      [`user:${sub}`, `role:${sub}`, `user:${sub}`],
      'the client showed three: the first copy, the copy on the role topic (dedup is per topic), the marker',
    );
    const [n] = c.notifications;
    t.equal(n?.topic, `user:${sub}`);
    t.equal(n?.id, id);
    t.same(n?.data, { id, title: 'hi' }, 'the first copy wins');
    t.type(n?.ts, 'number');
  },
);

t.test('subscribe resolves once the gateway confirms; a topic the token does not grant fails with forbidden and is not kept', async (t) => {
  const sub = uid('grants');
  const c = connect(t, { sub, topics: [`org:${sub}`] });
  await c.state('open');
  await c.client.subscribe(`org:${sub}`).ready;
  await t.rejects(c.client.subscribe('org:someone-else').ready, {
    name: 'HeraldError',
    code: 'forbidden',
    topic: 'org:someone-else',
    sent: true,
  });
  t.same(c.client.topics, [`org:${sub}`]);
  await publish(`org:${sub}`, { n: 1 });
  t.same((await c.notification((n) => n.topic === `org:${sub}`)).data, { n: 1 });
});

t.test(
  'after a gateway restart on the same port the client reconnects by itself, re-subscribes, and sends an ack queued offline',
  async (t) => {
    const sub = uid('restart');
    const topic = `org:${sub}`;
    const c = connect(t, { sub, topics: [topic] });
    const first = await c.state('open');
    await c.client.subscribe(topic).ready;
    await publish(topic, { n: 1 });
    await c.notification((n) => n.topic === topic);

    const from = c.states.length;
    await gw.stop();
    const down = await c.state('reconnecting', () => true, from);
    t.same([down.code, down.reason], [1001, 'shutting_down'], 'graceful shutdown: 1001 shutting_down, and the client will come back');
    t.not(c.client.state, 'open');
    const notificationId = `n-${randomUUID()}`;
    const acked = c.client.ack(notificationId); // no connection: waits in the queue

    gw = await startShared();
    const again = await c.state('open', () => true, from);
    t.not(again.session?.connectionId, first.session?.connectionId, 'a new connection');
    await acked;
    const entries = await pub.xrange('herald:events', '-', '+');
    const fields = entries.map(([, f]) => Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i], f[2 * i + 1]])));
    const mine = fields.filter((f) => f['notificationId'] === notificationId);
    t.equal(mine.length, 1, 'the queued ack reached the events stream once');
    t.match(mine[0], { type: 'ack', userId: sub, connectionId: again.session?.connectionId });

    // The gateway handles a connection's frames in order, so once this pong is back the
    // re-subscribe sent before it has been applied.
    await c.client.ping();
    t.same(c.client.topics, [topic]);
    const marker = randomUUID();
    await publish(topic, { marker });
    const n = await c.notification((x) => (x.data as { marker?: string }).marker === marker);
    t.equal(n.topic, topic, 'a notification on the re-subscribed topic arrives');

    const m = await scrape(gw.http);
    t.equal(m.value('herald_connections_opened_total'), 1, 'the restarted gateway saw exactly one connection from the client');
    t.equal(m.value('herald_connections'), 1);
  },
);

t.test('an expired token refused with 401 at the upgrade: the token function is called again and the next attempt succeeds', async (t) => {
  const sub = uid('expired');
  const calls: string[] = [];
  const client = new HeraldClient({
    url: gw.ws,
    token: async () => {
      calls.push(calls.length === 0 ? 'expired' : 'fresh');
      return token({ sub }, { expiresIn: calls.length === 1 ? -60 : 3600 });
    },
    WebSocket,
    backoffInitialMs: 5000, // a backoff would show as a 5 s gap: the fresh-token retry is immediate
  });
  t.teardown(() => client.close());
  const c = new Recorder(client);
  await c.state('open');
  // This uWS build may drop a freshly upgraded socket (uWebSockets#1928, PROTOCOL.md's
  // 1006 row): a close 1006 with no HTTP status after the 401. The SDK then backs off
  // and asks for a token again; allowed once, and said.
  const isDrop = (s: StateChange): boolean => s.state === 'reconnecting' && s.code === 1006 && s.status === undefined;
  const drops = c.states.slice(2).filter(isDrop).length;
  if (drops > 0) t.comment(`a fresh socket dropped by uWS (uWebSockets#1928) ${drops} time(s)`);
  t.ok(drops <= 1, 'at most one drop');
  t.same(calls, ['expired', ...Array.from({ length: 1 + drops }, () => 'fresh')]);
  t.same(
    c.states.filter((s, i) => i < 2 || !isDrop(s)).map(brief),
    ['connecting connect', 'reconnecting refused 1006 401 +0ms', 'open connected'],
    'ws shows the 401; retried at once',
  );
});

/**
 * `ws` with only what a browser's WebSocket offers (no 'unexpected-response', no
 * terminate): a refused upgrade is then just an error and a close 1006.
 */
class BrowserApiWebSocket {
  readonly #ws: WebSocket;
  constructor(url: string, protocols: string[]) {
    this.#ws = new WebSocket(url, protocols);
  }
  get readyState(): number {
    return this.#ws.readyState;
  }
  send(data: string): void {
    this.#ws.send(data);
  }
  close(code?: number, reason?: string): void {
    this.#ws.close(code, reason);
  }
  addEventListener(type: 'open' | 'message' | 'close' | 'error', fn: (ev: unknown) => void): void {
    this.#ws.addEventListener(type, fn);
  }
}

t.test(
  'with only the browser WebSocket API, a 401 (seen as close 1006 before open) also gets one immediate retry with a fresh token',
  async (t) => {
    const sub = uid('browser');
    let calls = 0;
    const client = new HeraldClient({
      url: gw.ws,
      token: () => token({ sub }, { expiresIn: ++calls === 1 ? -60 : 3600 }),
      WebSocket: BrowserApiWebSocket,
      backoffInitialMs: 5000,
    });
    t.teardown(() => client.close());
    const c = new Recorder(client);
    await c.state('open');
    t.equal(calls, 2);
    t.same(c.states.map(brief), ['connecting connect', 'reconnecting refused 1006 +0ms', 'open connected'], 'no status, same outcome');
  },
);

t.test('a token that keeps being refused backs off after the one immediate retry', async (t) => {
  const sub = uid('refused');
  let calls = 0;
  const client = new HeraldClient({
    url: gw.ws,
    token: () => {
      calls++;
      return token({ sub }, { expiresIn: -60 });
    },
    WebSocket,
    backoffInitialMs: 100,
    backoffMaxMs: 200,
  });
  t.teardown(() => client.close());
  const c = new Recorder(client);
  await c.until('three failed attempts', c.states, () => c.states.filter((s) => s.state === 'reconnecting').length >= 3);
  const delays = c.states.filter((s) => s.state === 'reconnecting').map((s) => s.delayMs ?? -1);
  t.equal(delays[0], 0, 'the first retry is immediate');
  t.ok(
    delays.slice(1).every((d) => d >= 0 && d <= 200),
    `then jittered backoff within the cap: ${delays.join(', ')}`,
  );
  t.ok(c.states.slice(1).every((s) => s.status === 401));
  t.ok(calls >= 3, `a token was asked for before each attempt (${calls})`);
});

t.test("at its token's exp the gateway closes with 1008 token_expired, and the client comes back at once with a fresh token", async (t) => {
  const sub = uid('exp');
  let calls = 0;
  const client = new HeraldClient({
    url: gw.ws,
    token: () => token({ sub }, { expiresIn: ++calls === 1 ? 2 : 3600 }),
    WebSocket,
    backoffInitialMs: 5000,
  });
  t.teardown(() => client.close());
  const c = new Recorder(client);
  const first = await c.state('open');
  const expired = await c.state('reconnecting', () => true, 0, 5000);
  t.same([expired.code, expired.reason, expired.delayMs], [1008, 'token_expired', 0]);
  const again = await c.state('open', () => true, 2);
  t.not(again.session?.connectionId, first.session?.connectionId);
  t.equal(calls, 2, 'a fresh token for the new connection');
});

t.test('reauthBeforeExpiryMs renews the token in place: the connection outlives its first token', async (t) => {
  const sub = uid('reauth');
  let calls = 0;
  const client = new HeraldClient({
    url: gw.ws,
    token: () => token({ sub }, { expiresIn: ++calls === 1 ? 3 : 3600 }),
    WebSocket,
    reauthBeforeExpiryMs: 2000,
  });
  t.teardown(() => client.close());
  const c = new Recorder(client);
  const open = await c.state('open');
  const firstExp = Date.now() + 3000;
  const renewed = await c.until('reauth', c.reauths, () => true);
  t.ok(renewed.expiresAt > Date.now() + 3_000_000, "the new expiry is the new token's");
  t.same(renewed.revoked, []);
  await waitFor("the first token to be past its exp and the gateway's 250 ms sweep", () => Date.now() > firstExp + 1000, 5000);
  await client.ping();
  t.equal(client.session?.connectionId, open.session?.connectionId, 'still the same connection');
  t.same(
    c.states.map((s) => s.state),
    ['connecting', 'open'],
  );
});

t.test('reauth() with a token that no longer grants a topic: the topic is revoked and not re-subscribed', async (t) => {
  const sub = uid('revoke');
  // Which token a call gets depends on the step, not on how many were asked for: a
  // connection dropped at its start (and retried) must not change the story.
  let revoked = false;
  const client = new HeraldClient({
    url: gw.ws,
    token: () => token({ sub, topics: revoked ? ['org:a'] : ['org:a', 'org:b'] }),
    WebSocket,
  });
  t.teardown(() => client.close());
  const c = new Recorder(client);
  await c.state('open');
  await client.subscribe('org:a').ready;
  await client.subscribe('org:b').ready;
  revoked = true;
  const r = await client.reauth();
  t.same(r.revoked, ['org:b']);
  t.same(client.topics, ['org:a']);
  t.ok(r.topics?.includes('org:a') && !r.topics.includes('org:b'));
});

t.test('a 1008 rate_limited close is not the end: the client backs off, comes back to a fresh window, and does not loop', async (t) => {
  const g = await startGateway(baseEnv({ HERALD_RATE_LIMIT_MESSAGES: '3', HERALD_RATE_LIMIT_WINDOW_S: '60' }));
  t.teardown(() => g.stop());
  const sub = uid('flood');
  const c = connect(t, { sub }, { backoffInitialMs: 200, backoffMaxMs: 400 }, g.ws);
  await c.state('open'); // the ping at open is frame 1 of 3
  const outcomes = await Promise.all(
    Array.from({ length: 8 }, () =>
      c.client.ping().then(
        () => 'pong',
        (e: HeraldError) => e.code,
      ),
    ),
  );
  t.same(
    outcomes,
    ['pong', 'pong', 'rate_limited', 'rate_limited', 'rate_limited', 'disconnected', 'disconnected', 'disconnected'],
    'frames 1-3 answered, 4-6 refused, the 7th closes (pings in flight are not sent again)',
  );
  const lost = await c.state('reconnecting');
  t.match(lost, { state: 'reconnecting', reason: 'rate_limited', code: 1008 });
  t.ok((lost.delayMs ?? -1) >= 0 && (lost.delayMs ?? 0) <= 200, 'after a jittered backoff delay');
  await c.state('open', () => true, 2);
  const ack = c.client.ack('n-1'); // frame 2 of the new window: answered
  await ack;
  await new Promise((r) => setTimeout(r, 1000));
  const m = await scrape(g.http);
  t.equal(m.value('herald_connections_opened_total'), 2, 'one reconnect, no loop');
  t.equal(c.client.state, 'open');
});

/** `ws`, counting the sockets alive at once (made and not yet closed or given up by the SDK). */
class CountingWebSocket extends WebSocket {
  static live = 0;
  static maxLive = 0;
  static made = 0;
  #counted = true;
  constructor(url: string, protocols: string[]) {
    super(url, protocols);
    CountingWebSocket.made++;
    CountingWebSocket.maxLive = Math.max(CountingWebSocket.maxLive, ++CountingWebSocket.live);
    this.once('close', () => this.#release());
  }
  #release(): void {
    if (this.#counted) CountingWebSocket.live--;
    this.#counted = false;
  }
  override terminate(): void {
    this.#release();
    super.terminate();
  }
  override close(code?: number, reason?: string): void {
    this.#release();
    super.close(code, reason);
  }
}

t.test(
  'a frozen gateway (SIGSTOP): the missing pong triggers a reconnect, slow opens are given up one at a time, and one connection remains',
  async (t) => {
    const g = await startGateway(baseEnv());
    let frozen = false;
    t.teardown(async () => {
      if (frozen) g.proc.kill('SIGCONT');
      await g.stop();
    });
    const sub = uid('frozen');
    const c = connect(
      t,
      { sub },
      {
        WebSocket: CountingWebSocket,
        pingIntervalMs: 200,
        pongTimeoutMs: 600,
        connectTimeoutMs: 800,
        backoffInitialMs: 100,
        backoffMaxMs: 300,
      },
      g.ws,
    );
    const first = await c.state('open');

    g.proc.kill('SIGSTOP');
    frozen = true;
    const from = c.states.length;
    const lost = await c.state('reconnecting', () => true, from, 5000);
    t.equal(lost.reason, 'pong_timeout', 'no pong within 600 ms: the connection is taken as dead');
    // The kernel still accepts TCP connections for the frozen process, so the next
    // upgrade hangs: the client must wait it out, give up, and only then try again.
    const slow = await c.state('reconnecting', (s) => s.reason === 'connect_timeout', from, 5000);
    t.ok(slow, 'a hanging upgrade is given up after connectTimeoutMs');
    const madeWhileFrozen = CountingWebSocket.made;
    t.ok(madeWhileFrozen >= 2, `sockets made so far: ${madeWhileFrozen}`);
    t.equal(CountingWebSocket.maxLive, 1, 'never two sockets at once');

    g.proc.kill('SIGCONT');
    frozen = false;
    const back = await c.state('open', () => true, from, 10_000);
    t.not(back.session?.connectionId, first.session?.connectionId);
    t.equal(CountingWebSocket.maxLive, 1, 'still never two sockets at once');
    await waitFor(
      'the gateway to hold only the live connection',
      async () => (await scrape(g.http)).value('herald_connections') === 1,
      10_000,
      50,
    );
    const m = await scrape(g.http);
    t.equal(m.value('herald_connections'), 1);
    t.equal(m.value('herald_connections_opened_total') - m.sum('herald_connections_closed_total'), 1);
  },
);

t.test('close() closes the connection normally and for good', async (t) => {
  const sub = uid('bye');
  const c = connect(t, { sub });
  await c.state('open');
  const before = await scrape(gw.http);
  c.client.close();
  t.same(c.states.at(-1), { state: 'closed', reason: 'client_closed' });
  await waitFor(
    'the gateway to count the close',
    async () => {
      const m = await scrape(gw.http);
      return (
        m.value('herald_connections_closed_total', { reason: 'normal' }) -
          before.value('herald_connections_closed_total', { reason: 'normal' }) ===
        1
      );
    },
    5000,
    25,
  );
  t.equal(c.client.session, undefined);
  t.same(c.client.quality, { level: 'offline', rttMs: undefined });
});

// ---- issue 16: per-topic dedup, re-subscribe after rate_limited, history ----

/** herald_publish: records in the topic's history (and delivers), like POST /publish. */
const record = async (topic: string, id: string): Promise<void> => {
  await pub.call('FCALL', 'herald_publish', '1', topic, JSON.stringify({ id, title: id }));
};

t.test('the same id on two topics is two notifications: both delivered, each once', async (t) => {
  const sub = uid('pertopic');
  const [a, b] = [`org:${sub}-a`, `org:${sub}-b`];
  const c = connect(t, { sub, topics: [a, b] });
  const [sa, sb] = [c.client.subscribe(a), c.client.subscribe(b)];
  await Promise.all([sa.ready, sb.ready]);
  const onA: string[] = [];
  sa.on('notification', (n) => onA.push(n.id));
  await publish(a, { id: 'order-1' });
  await publish(b, { id: 'order-1' });
  await publish(a, { id: 'order-1' }); // a repeat on the same topic (the gateway's dedup is off)
  const marker = randomUUID();
  await publish(a, { marker });
  await c.notification((n) => (n.data as { marker?: string }).marker === marker);
  t.same(
    c.notifications.filter((n) => n.id === 'order-1').map((n) => n.topic),
    [a, b],
    'once per topic',
  );
  t.equal(onA.filter((id) => id === 'order-1').length, 1, "the handle of a hears a's copy once");
});

/** `ws` whose latest socket a test can cut (terminate: the SDK sees a 1006). */
class CuttableSocket extends WebSocket {
  static latest: CuttableSocket | undefined;
  static sent: string[] = [];
  constructor(url: string, protocols: string[]) {
    super(url, protocols);
    CuttableSocket.latest = this;
  }
  override send(data: string): void {
    CuttableSocket.sent.push(data);
    super.send(data);
  }
}

t.test(
  'a re-subscribe refused with rate_limited after a reconnect: the event fires with the topic, and a later retry succeeds',
  async (t) => {
    // 3 frames a second: a new connection sends its 4 subscribes, then its ping, so the 4th subscribe
    // (and the ping) are refused; the 7th frame would close it, and there is no 6th.
    // Redis mode, for the notification at the end; resume off: this test counts frames.
    const g = await startGateway({ ...env, HERALD_PORT: '0', HERALD_RATE_LIMIT_MESSAGES: '3', HERALD_RATE_LIMIT_WINDOW_S: '1' });
    t.teardown(() => g.stop());
    await g.waitForLog((l) => l.msg === 'redis subscription active');
    const sub = uid('resub');
    const topics = [1, 2, 3, 4].map((i) => `org:${sub}-${i}`);
    const c = connect(
      t,
      { sub, topics },
      { WebSocket: CuttableSocket as never, backoffInitialMs: 100, backoffMaxMs: 200, resume: false },
      g.ws,
    );
    const events: Array<{ topic: string; code: string; at: number }> = [];
    c.client.on('subscriptionError', ({ topic, error }) => events.push({ topic, code: error.code, at: Date.now() }));
    const subs = topics.map((topic) => c.client.subscribe(topic));
    await c.client.ready(); // the first connection may be limited too: ready() waits for the retries
    t.ok(subs.every((s) => s.state === 'subscribed'));
    await new Promise((r) => setTimeout(r, 1100)); // a fresh window before the cut

    const before = events.length;
    const from = c.states.length;
    CuttableSocket.latest?.terminate();
    await c.state('open', () => true, from);
    await waitFor('a rate_limited re-subscribe', () => events.slice(before).some((e) => e.code === 'rate_limited'), 10_000);
    const refused = events.slice(before).filter((e) => e.code === 'rate_limited');
    t.ok(refused.length >= 1, `refused: ${refused.map((e) => e.topic).join(', ')}`);
    const topic = refused[0]?.topic ?? '';
    t.ok(topics.includes(topic), 'the event names the topic');
    t.equal(c.client.subscription(topic)?.state, 'subscribing', 'still wanted, waiting for its retry');
    await c.client.ready();
    t.equal(c.client.subscription(topic)?.state, 'subscribed', 'the retry succeeded');
    await publish(topic, { id: 'after-retry' });
    await c.notification((n) => n.id === 'after-retry' && n.topic === topic);
    t.equal(c.client.state, 'open', 'never closed');
  },
);

t.test(
  'history(): the newest page, then the page before it, the one after an offset; refused locally or by the gateway as documented',
  async (t) => {
    const sub = uid('history');
    const topic = `org:${sub}`;
    for (let i = 0; i < 30; i++) await record(topic, `h-${String(i).padStart(2, '0')}`);
    const c = connect(t, { sub, topics: [topic] });
    await c.state('open');
    const ids = (p: { notifications: Notification[] }) => p.notifications.map((n) => n.id);
    const newest = await c.client.history(topic, { limit: 20 }); // granted, not subscribed: allowed
    t.same(
      ids(newest),
      Array.from({ length: 20 }, (_, i) => `h-${String(i + 10).padStart(2, '0')}`),
      'the newest 20, oldest first',
    );
    t.match(newest, { topic, epoch: /^[0-9a-f]+$/ });
    const first = newest.notifications[0];
    const older = await c.client.history(topic, { limit: 20, before: first?.offset ?? '' });
    t.same(
      ids(older),
      Array.from({ length: 10 }, (_, i) => `h-${String(i).padStart(2, '0')}`),
      'the 10 before it',
    );
    const after = await c.client.history(topic, { limit: 5, after: older.notifications[9]?.offset ?? '' });
    t.same(ids(after), ['h-10', 'h-11', 'h-12', 'h-13', 'h-14']);
    t.same((await c.client.history(topic)).notifications.length, 20, 'default limit 20');
    t.equal(c.notifications.length, 0, 'a read: no notification events');
    await t.rejects(c.client.history(topic, { limit: 101 }), { code: 'invalid_argument', sent: false });
    await t.rejects(c.client.history('org:someone-else'), { code: 'forbidden', sent: true });
  },
);

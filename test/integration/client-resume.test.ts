// The SDK's recovery of missed notifications (client/dist) against the real gateway
// in Redis mode (history on by default) and private redis-servers: a client cut off
// while notifications are published gets each missed one exactly once, in order, after
// it reconnects; a duplicate between live and replayed delivery is shown once; after
// Redis lost its data the client is told recovered: false; a quiet topic held longer
// than the history TTL still recovers. Each test has its own user ids; the shared
// gateway runs with HERALD_DEDUP_WINDOW_S=0 so that the SDK's own dedup is what is tested.
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import {
  HeraldClient,
  type HeraldClientOptions,
  memoryPositions,
  type Notification,
  type Recovery,
  type StateChange,
} from '../../client/dist/index.js';
import { TestClient } from '../support/client.js';
import { baseEnv, type GatewayProcess, startGateway } from '../support/gateway.js';
import { freePort, waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const redis = await startRedis();
t.teardown(() => redis.close());
const pub = redis.client();
const port = await freePort();
// A fixed port, so a restarted gateway is where the client expects it.
const env = baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_PORT: String(port), HERALD_DEDUP_WINDOW_S: '0', HERALD_LOG_LEVEL: 'info' });

async function up(g: GatewayProcess, times = 1): Promise<GatewayProcess> {
  await waitFor(
    `the gateway's redis subscription (${times})`,
    () => g.logs.filter((l) => l.msg === 'redis subscription active').length >= times,
    15_000,
    10,
  );
  return g;
}
let gw = await up(await startGateway(env));
t.teardown(() => gw.stop()); // whichever gateway is current at the end

const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

/** A plain PUBLISH: recorded by a gateway, so only while one is up. */
const publish = (topic: string, id: string, r = pub): Promise<number> =>
  r.publish(`notifications:${topic}`, JSON.stringify({ id, title: id }));
/** herald_publish: records in Redis itself, with or without a gateway. */
const record = async (topic: string, id: string): Promise<void> => {
  await pub.call('FCALL', 'herald_publish', '1', topic, JSON.stringify({ id, title: id }));
};
const historyLength = (topic: string, r = pub): Promise<number> => r.xlen(`herald:history:{${topic}}`);

/**
 * `ws`, with what a test needs to play the network: the latest socket can be cut
 * (terminate: the SDK sees a 1006), and resume frames can be held back and let go later.
 */
class TestSocket extends WebSocket {
  static latest: TestSocket | undefined;
  static holdResumes = false;
  static held: Array<() => void> = [];
  /** Every frame received, raw. */
  static received: Array<Record<string, unknown>> = [];

  constructor(url: string, protocols: string[]) {
    super(url, protocols);
    TestSocket.latest = this;
    this.on('message', (data) => TestSocket.received.push(JSON.parse(String(data)) as Record<string, unknown>));
  }

  /** `ack` frames sent, by every socket. */
  static sentAcks = 0;

  override send(data: string): void {
    if (data.startsWith('{"type":"ack"')) TestSocket.sentAcks++;
    if (TestSocket.holdResumes && data.includes('"type":"resume"')) TestSocket.held.push(() => super.send(data));
    else super.send(data);
  }

  static release(): void {
    TestSocket.holdResumes = false;
    for (const send of TestSocket.held.splice(0)) send();
  }
}

/** Every event a client emitted, and waits on them. */
class Recorder {
  readonly states: StateChange[] = [];
  readonly notifications: Notification[] = [];
  readonly recoveries: Recovery[] = [];
  /** notification and recovery events, in order. */
  readonly events: string[] = [];
  #waiters: Array<() => void> = [];
  /** Attempts wait here while closed: the test decides when the client may come back. */
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => undefined;

  readonly client: HeraldClient;

  constructor(
    t: Test,
    readonly claims: { sub: string; topics?: string[] },
    opts: Partial<HeraldClientOptions> = {},
    url = gw.ws,
  ) {
    this.client = new HeraldClient({
      url,
      token: async () => {
        await this.#gate;
        return token(claims);
      },
      WebSocket: TestSocket,
      backoffInitialMs: 100,
      backoffMaxMs: 500,
      ...opts,
    });
    t.teardown(() => this.client.close());
    this.client.on('state', (s) => this.#push(this.states, s));
    this.client.on('notification', (n) => {
      this.events.push(`notification ${n.id}`);
      this.#push(this.notifications, n);
    });
    this.client.on('recovery', (r) => {
      this.events.push(`recovery ${r.topic} ${r.recovered}`);
      this.#push(this.recoveries, r);
    });
  }

  #push<T>(list: T[], item: T): void {
    list.push(item);
    for (const w of [...this.#waiters]) w();
  }

  until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
      };
      const waiter = (): void => {
        if (!check()) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `no ${what} within ${timeoutMs} ms; events: ${this.events.join(' | ')}; states: ${this.states.map((s) => `${s.state} ${s.reason}`).join(' | ')}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.push(waiter);
      waiter();
    });
  }

  opens(): number {
    return this.states.filter((s) => s.state === 'open').length;
  }

  ids(): string[] {
    return this.notifications.map((n) => n.id);
  }

  /** Waits for a recovery event for each of `topics` past the first `from` ones. */
  recovered(topics: string[], from = 0): Promise<void> {
    return this.until(`recovery of ${topics.join(', ')}`, () =>
      topics.every((topic) => this.recoveries.slice(from).some((r) => r.topic === topic)),
    );
  }

  /** Cuts the socket from the network's side; the client cannot reconnect until `letBack()`. */
  async cut(): Promise<void> {
    this.#gate = new Promise((resolve) => {
      this.#open = resolve;
    });
    const before = this.states.length;
    TestSocket.latest?.terminate();
    await this.until('the loss', () => this.states.slice(before).some((s) => s.state === 'reconnecting'));
  }

  letBack(): void {
    this.#open();
  }
}

t.test('a gateway restart: what was published meanwhile arrives once, in order, replayed, and every topic is recovered', async (t) => {
  const sub = uid('restart');
  const [user, org] = [`user:${sub}`, `org:${sub}`];
  const c = new Recorder(t, { sub, topics: [org] });
  await c.until('open', () => c.opens() === 1);
  await c.client.subscribe(org).ready;
  await publish(user, 'n-0');
  await c.until('n-0', () => c.ids().includes('n-0'));
  t.match(c.notifications[0], { id: 'n-0', offset: /^\d+-\d+$/, epoch: /^[0-9a-f]+$/ }, 'live notifications carry their position');
  t.notOk('replayed' in (c.notifications[0] ?? {}));

  await gw.stop();
  await c.until('the loss', () => c.states.some((s) => s.state === 'reconnecting'));
  // No gateway to record a plain PUBLISH: herald_publish records in Redis itself.
  for (const id of ['m-1', 'm-2', 'm-3', 'm-4']) await record(user, id);
  for (const id of ['o-1', 'o-2']) await record(org, id); // a topic with no position yet: resumed by time
  gw = await up(await startGateway(env));

  await c.recovered([user, org, 'system']);
  t.same(
    c.recoveries,
    [user, 'system', org].map((topic) => ({ topic, recovered: true })),
    'every held topic recovered, none false',
  );
  t.same(c.ids(), ['n-0', 'm-1', 'm-2', 'm-3', 'm-4', 'o-1', 'o-2'], 'each missed notification once, in order');
  t.ok(
    c.notifications.slice(1).every((n) => n.replayed === true && n.epoch === c.notifications[0]?.epoch),
    'replayed, in the same epoch',
  );
  t.equal(
    c.events.findIndex((e) => e.startsWith('recovery')),
    7,
    'the replays come before the recovery events',
  );
  t.equal(c.client.topics.length, 1);

  await publish(user, 'n-5');
  await c.until('n-5', () => c.ids().includes('n-5'));
  t.notOk('replayed' in (c.notifications.at(-1) ?? {}), 'live again');
  t.equal(c.recoveries.length, 3, 'no more recovery events');
});

t.test('a socket cut while the gateway stays up: plain PUBLISHes recorded meanwhile are replayed', async (t) => {
  const sub = uid('cut');
  const user = `user:${sub}`;
  const c = new Recorder(t, { sub });
  await c.until('open', () => c.opens() === 1);
  await publish(user, 'n-0');
  await c.until('n-0', () => c.ids().includes('n-0'));
  await c.cut();
  for (const id of ['p-1', 'p-2', 'p-3']) await publish(user, id);
  await waitFor('the gateway to record them', async () => (await historyLength(user)) === 4);
  c.letBack();
  await c.recovered([user, 'system']);
  t.same(c.ids(), ['n-0', 'p-1', 'p-2', 'p-3']);
  t.same(
    c.notifications.slice(1).map((n) => n.replayed),
    [true, true, true],
  );
  t.ok(
    c.recoveries.every((r) => r.recovered),
    'recovered',
  );
});

t.test('a notification delivered live and then again in the replay is shown once', async (t) => {
  const sub = uid('dup');
  const user = `user:${sub}`;
  const c = new Recorder(t, { sub });
  await c.until('open', () => c.opens() === 1);
  await publish(user, 'n-0');
  await c.until('n-0', () => c.ids().includes('n-0'));
  await c.cut();
  await publish(user, 'p-1'); // missed
  await waitFor('p-1 recorded', async () => (await historyLength(user)) === 2);
  // The next connection's resume is held back until p-2 has arrived live on it: the
  // replay (after n-0) then holds p-2 too, as when a notification races a resume.
  TestSocket.holdResumes = true;
  TestSocket.received = [];
  c.letBack();
  await c.until('the second connection', () => c.opens() === 2);
  await waitFor('the resume to be held', () => TestSocket.held.length === 1);
  await publish(user, 'p-2');
  await c.until('p-2 live', () => c.ids().includes('p-2'));
  TestSocket.release();
  await c.recovered([user, 'system']);
  const sent = TestSocket.received
    .filter((f) => f['type'] === 'notification')
    .map((f) => `${String(f['id'])}${f['replayed'] === true ? ' replayed' : ''}`);
  t.same(sent, ['p-2', 'p-1 replayed', 'p-2 replayed'], 'the gateway sent p-2 twice: live, then in the replay');
  t.same(c.ids(), ['n-0', 'p-2', 'p-1'], 'the app saw it once');
  t.same(
    c.notifications.map((n) => n.replayed ?? false),
    [false, false, true],
  );
  t.ok(c.recoveries.every((r) => r.recovered));
});

t.test('after Redis lost its data (a new epoch) the client is told recovered: false, and recovers normally afterwards', async (t) => {
  const own = await startRedis();
  t.teardown(() => own.close());
  const g = await up(await startGateway(baseEnv({ HERALD_REDIS_URL: own.url, HERALD_LOG_LEVEL: 'info' })));
  t.teardown(() => g.stop());
  const ownPub = own.client(); // reconnects by itself after the restart
  const sub = uid('lost');
  const [user, org] = [`user:${sub}`, `org:${sub}`];
  const topics = [user, 'system', org];
  const c = new Recorder(t, { sub, topics: [org] }, {}, g.ws);
  await c.until('open', () => c.opens() === 1);
  await c.client.subscribe(org).ready;
  await publish(user, 'n-0', ownPub);
  await c.until('n-0', () => c.ids().includes('n-0'));
  const before = c.notifications[0]?.epoch;
  t.equal(c.client.session?.epoch, before);

  await own.kill(); // no persistence: the history and the epoch are gone
  await own.start();
  await up(g, 2);
  // The gateway may already have said so itself (its gap fill); a reconnect resumes in the old epoch either way.
  const cutAt = c.recoveries.length;
  await c.cut();
  c.letBack();
  await c.until('the reconnect', () => c.opens() === 2);
  await c.until('recovered false for every topic after the reconnect', () =>
    topics.every((topic) => c.recoveries.slice(cutAt).some((r) => r.topic === topic && !r.recovered)),
  );
  t.ok(
    c.recoveries.every((r) => !r.recovered),
    `never true: ${JSON.stringify(c.recoveries)}`,
  );
  t.not(c.client.session?.epoch, before, 'the new connection names the new epoch');
  t.same(c.ids(), ['n-0'], 'nothing replayed');

  // In the new dataset: live notifications carry the new epoch, and a later cut recovers.
  await publish(user, 'n-1', ownPub);
  await c.until('n-1', () => c.ids().includes('n-1'));
  t.equal(c.notifications.at(-1)?.epoch, c.client.session?.epoch);
  const from = c.recoveries.length;
  await c.cut();
  await publish(user, 'n-2', ownPub);
  await waitFor('n-2 recorded', async () => (await historyLength(user, ownPub)) === 2);
  c.letBack();
  await c.recovered(topics, from);
  t.same(
    c.recoveries.slice(from).map((r) => r.recovered),
    [true, true, true],
  );
  t.same(c.ids(), ['n-0', 'n-1', 'n-2']);
});

t.test(
  'a quiet topic held longer than the history TTL still recovers: the resume starts at the last frame, not the connection',
  async (t) => {
    // Its own Redis: the function library carries the TTL of the gateway that loaded it last.
    const own = await startRedis();
    t.teardown(() => own.close());
    const ownPub = own.client();
    const g = await up(await startGateway(baseEnv({ HERALD_REDIS_URL: own.url, HERALD_HISTORY_TTL_S: '5', HERALD_LOG_LEVEL: 'info' })));
    t.teardown(() => g.stop());
    const sub = uid('quiet');
    const [user, org] = [`user:${sub}`, `org:${sub}`];
    const c = new Recorder(t, { sub, topics: [org] }, { pingIntervalMs: 1000 }, g.ws);
    await c.until('open', () => c.opens() === 1);
    await c.client.subscribe(org).ready;
    const first = c.client.session;
    await new Promise((r) => setTimeout(r, 6500)); // quiet for longer than the TTL; pongs keep arriving

    // What resuming from the connection's start would get: the gateway cannot tell an
    // expired history from a trimmed one.
    const raw = await TestClient.connect(g.ws, { headers: { authorization: `Bearer ${await token({ sub, topics: [org] })}` } });
    t.teardown(() => raw.close());
    const answer = await raw.request({
      type: 'resume',
      epoch: first?.epoch,
      topics: { [user]: { since: (first?.serverTime ?? 0) - 2000 } },
      id: 1,
    });
    t.same(answer['topics'], { [user]: { recovered: false } }, 'a point older than the TTL is refused');
    await raw.close();

    await c.cut();
    await publish(org, 'q-1', ownPub);
    await waitFor('q-1 recorded', async () => (await historyLength(org, ownPub)) === 1);
    c.letBack();
    await c.recovered([user, org, 'system']);
    t.same(
      c.recoveries,
      [user, 'system', org].map((topic) => ({ topic, recovered: true })),
    );
    t.same(c.ids(), ['q-1']);
    t.equal(c.notifications[0]?.replayed, true);
  },
);

// ---- issue 16: positions that survive a reload, acks of a whole replay ----

t.test('a stored position survives a reload: a new client on the same store gets exactly what was published in between', async (t) => {
  const sub = uid('reload');
  const org = `org:${sub}`;
  const store = memoryPositions(); // what localStoragePositions() keeps across a page reload
  const first = new Recorder(t, { sub, topics: [org] }, { positions: store });
  await first.client.subscribe(org).ready;
  for (const id of ['r-1', 'r-2']) await publish(org, id);
  await first.until('r-2', () => first.ids().includes('r-2'));
  t.same(store.get(org), { offset: first.notifications[1]?.offset, epoch: first.notifications[1]?.epoch }, 'saved as it arrived');
  first.client.close(); // the page goes away
  for (const id of ['r-3', 'r-4', 'r-5']) await record(org, id); // published while it reloads

  const second = new Recorder(t, { sub, topics: [org] }, { positions: store });
  const handle = second.client.subscribe(org);
  const heard: string[] = [];
  handle.on('recovered', (r) => heard.push(`${r.topic} ${r.recovered}`));
  await second.recovered([org]);
  t.same(second.ids(), ['r-3', 'r-4', 'r-5'], 'each one missed, once, and nothing seen before the reload');
  t.ok(second.notifications.every((n) => n.replayed === true));
  t.same(heard, [`${org} true`], "the topic's handle is told too");
  t.equal(store.get(org)?.offset, second.notifications[2]?.offset, 'the store moved on');
});

t.test(
  'acking every notification of a 300-notification replay does not trip the rate limit: a few frames, the connection stays',
  async (t) => {
    // History must hold the 300 missed and the one seen before them (the default keeps 100): its own
    // Redis, as a library is built for one size. 300 is HERALD_RECOVERY_MAX: the most one resume replays.
    const r = await startRedis();
    t.teardown(() => r.close());
    const envBig = baseEnv({ HERALD_REDIS_URL: r.url, HERALD_DEDUP_WINDOW_S: '0', HERALD_HISTORY_SIZE: '301' });
    const g = await up(await startGateway(envBig));
    t.teardown(() => g.stop());
    const rpub = r.client();
    t.teardown(() => rpub.quit());
    const sub = uid('acks');
    const user = `user:${sub}`;
    const c = new Recorder(t, { sub }, {}, g.ws);
    const acks: Array<Promise<void>> = [];
    c.client.on('notification', (n) => acks.push(c.client.ack(n.id)));
    await c.until('open', () => c.opens() === 1);
    await publish(user, 'n-0', rpub);
    await c.until('n-0', () => c.ids().includes('n-0'));
    await c.cut();
    for (let i = 1; i <= 300; i++) await publish(user, `m-${i}`, rpub);
    await waitFor('the gateway to record them', async () => (await historyLength(user, rpub)) === 301, 15_000);
    const sentBefore = TestSocket.sentAcks;
    c.letBack();
    await c.recovered([user, 'system']);
    t.ok(
      c.recoveries.every((x) => x.recovered),
      'recovered',
    );
    t.equal(c.ids().length, 301);
    await Promise.all(acks);
    const frames = TestSocket.sentAcks - sentBefore;
    t.ok(frames >= 3 && frames <= 20, `300 acks in ${frames} frames (at most 100 ids each)`);
    t.equal(c.opens(), 2, 'no close: the connection after the cut stayed');
    t.same(
      c.states.map((s) => s.state),
      ['connecting', 'open', 'reconnecting', 'open'],
    );
    await waitFor('every ack in the events stream', async () => (await rpub.xlen('herald:events')) >= 301, 10_000);
  },
);

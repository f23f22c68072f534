// HeraldClient's recovery of missed notifications against scripted sockets and a
// ManualClock: which resume frames go out on a reconnect and with what, replays and
// live copies shown once, `recovery` events, retries when the gateway cannot read
// Redis, and points that stay pending across a lost connection. The same client
// against the real gateway: test/integration/client-resume.test.ts.
import t, { type Test } from 'tap';
import {
  HeraldClient,
  type HeraldClientOptions,
  type HeraldError,
  memoryPositions,
  type Notification,
  type PositionStore,
  type Recovery,
} from '../../client/dist/index.js';
import { ManualClock, settle } from '../support/manual-clock.js';
import { ScriptedSocket } from '../support/scripted-socket.js';

const S1 = 1_795_450_000_000; // serverTime of the first connection
const E1 = '18a2f3c4b5d6e7';
const E2 = '18a2ffffffffff';

interface Harness {
  clock: ManualClock;
  client: HeraldClient;
  notifications: Notification[];
  recoveries: Recovery[];
  /** notification and recovery events in the order they came. */
  events: string[];
  errors: HeraldError[];
  socket(): ScriptedSocket;
}

function harness(t: Test, opts: Partial<HeraldClientOptions> = {}): Harness {
  ScriptedSocket.all = [];
  ScriptedSocket.autoPong = true;
  const clock = new ManualClock();
  const client = new HeraldClient({
    url: 'ws://gateway.test/ws',
    token: 'tok',
    WebSocket: ScriptedSocket,
    clock,
    random: () => 0.5,
    backoffInitialMs: 1000,
    backoffMaxMs: 8000,
    ...opts,
  });
  const h: Harness = {
    clock,
    client,
    notifications: [],
    recoveries: [],
    events: [],
    errors: [],
    socket: () => {
      const s = ScriptedSocket.all[ScriptedSocket.all.length - 1];
      if (s === undefined) throw new Error('no socket yet');
      return s;
    },
  };
  client.on('notification', (n) => {
    h.notifications.push(n);
    h.events.push(`notification ${n.id}`);
  });
  client.on('recovery', (r) => {
    h.recoveries.push(r);
    h.events.push(`recovery ${r.topic} ${r.recovered}`);
  });
  client.on('error', (e) => h.errors.push(e));
  t.teardown(() => client.close());
  return h;
}

async function step(h: Harness, ms = 0): Promise<void> {
  await settle();
  await h.clock.advance(ms);
  await settle();
}

/**
 * Drops the current socket and lets the next one open (backoff: 0.5 x 1000 ms); the
 * gateway confirms the re-subscribes (the resume waits for them).
 */
async function reconnect(h: Harness, session: Parameters<ScriptedSocket['accept']>[0]): Promise<ScriptedSocket> {
  h.socket().drop(1006);
  await step(h, 1000);
  const s = h.socket();
  s.accept(session);
  await step(h);
  s.answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await step(h);
  return s;
}

function notification(topic: string, id: string, offset?: string, epoch = E1, replayed = false): Record<string, unknown> {
  const position = offset === undefined ? {} : { offset, epoch, ...(replayed ? { replayed: true } : {}) };
  return { type: 'notification', topic, id, ts: offset === undefined ? S1 : Number(offset.split('-')[0]), ...position, data: { id } };
}

t.test('the first connection sends no resume; the next one resumes every held topic, by offset or by time, in the old epoch', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  const sub = h.client.subscribe('org:a').ready;
  await step(h);
  h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await sub;
  t.same(h.socket().of('resume'), [], 'nothing to resume on the first connection');
  t.equal(h.client.session?.epoch, E1, 'the session shows the epoch');

  await h.clock.advance(2000);
  h.socket().receive(notification('user:alice', 'n-1', `${S1 + 1999}-0`));
  await h.clock.advance(1000);
  h.socket().receive(notification('org:a', 'n-2', `${S1 + 2999}-4`));
  await h.clock.advance(500);
  h.socket().receive({ type: 'pong', ts: S1 + 3500 }); // a server timestamp: what was sent before it has arrived
  t.same(
    h.notifications.at(-1),
    { topic: 'org:a', id: 'n-2', ts: S1 + 2999, offset: `${S1 + 2999}-4`, epoch: E1, data: { id: 'n-2' } },
    'the position is in the event',
  );

  // The new connection names another epoch and an extra initial topic.
  const s = await reconnect(h, { serverTime: S1 + 10_000, epoch: E2, topics: ['user:alice', 'role:ops', 'system'] });
  t.same(
    s.sent.filter((f) => f['type'] !== 'ping').map((f) => f['type']),
    ['subscribe', 'resume'],
    'the re-subscribe goes first, then the resume',
  );
  const [resume] = s.of('resume');
  t.same(resume, {
    type: 'resume',
    epoch: E1, // the previous connection's: the gateway answers recovered false since it changed
    topics: {
      'user:alice': { offset: `${S1 + 1999}-0` },
      'role:ops': { since: S1 + 3500 - 2000 }, // the previous connection's latest server timestamp, less the margin
      system: { since: S1 + 3500 - 2000 },
      'org:a': { offset: `${S1 + 2999}-4` },
    },
    id: resume?.['id'],
  });
});

t.test('replays are shown like live notifications, once per id; a recovery event per topic follows them', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  h.socket().receive(notification('user:alice', 'n-1', `${S1}-0`));
  const s = await reconnect(h, { serverTime: S1 + 5000, epoch: E1 });
  s.receive(notification('user:alice', 'n-3', `${S1 + 4000}-0`)); // live, before the replay
  const [resume] = s.of('resume');
  s.receive(notification('user:alice', 'n-2', `${S1 + 3000}-0`, E1, true));
  s.receive(notification('user:alice', 'n-3', `${S1 + 4000}-0`, E1, true)); // seen live: dropped
  s.receive({ type: 'resumed', topics: { 'user:alice': { recovered: true }, system: { recovered: true } }, id: resume?.['id'] });
  await step(h);
  t.same(h.events, ['notification n-1', 'notification n-3', 'notification n-2', 'recovery user:alice true', 'recovery system true']);
  t.same(h.notifications[2], {
    topic: 'user:alice',
    id: 'n-2',
    ts: S1 + 3000,
    offset: `${S1 + 3000}-0`,
    epoch: E1,
    replayed: true,
    data: { id: 'n-2' },
  });
  t.same(h.client.session?.epoch, E1);

  // The next resume starts after the highest offset seen (n-3), not the last one received (n-2).
  const s3 = await reconnect(h, { serverTime: S1 + 9000, epoch: E1 });
  t.same(s3.of('resume')[0]?.['topics'], { 'user:alice': { offset: `${S1 + 4000}-0` }, system: { since: S1 + 5000 - 2000 } });
});

t.test('an unsolicited resumed (a gateway that lost its own gap) is a recovery event, and that topic next resumes by time', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  h.socket().receive(notification('user:alice', 'n-1', `${S1}-0`));
  h.socket().receive(notification('system', 'n-2', `${S1}-1`));
  await h.clock.advance(4000);
  h.socket().receive({ type: 'pong', ts: S1 + 4000 });
  h.socket().receive({ type: 'resumed', topics: { 'user:alice': { recovered: false } } });
  await step(h);
  t.same(h.recoveries, [{ topic: 'user:alice', recovered: false }]);
  const s = await reconnect(h, { serverTime: S1 + 9000, epoch: E1 });
  t.same(
    s.of('resume')[0]?.['topics'],
    { 'user:alice': { since: S1 + 4000 - 2000 }, system: { offset: `${S1}-1` } },
    'its old position is forgotten',
  );
});

t.test('no resume when the previous connection had no epoch (history off), nor with resume: false', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1 });
  await step(h);
  h.socket().receive(notification('user:alice', 'n-1'));
  t.same(h.notifications, [{ topic: 'user:alice', id: 'n-1', ts: S1, data: { id: 'n-1' } }], 'no position fields without history');
  t.equal(h.client.session?.epoch, undefined);
  const s = await reconnect(h, { serverTime: S1 + 5000, epoch: E1 });
  t.same(s.of('resume'), [], 'the previous connection had no history');
  const s3 = await reconnect(h, { serverTime: S1 + 9000, epoch: E1 });
  t.equal(s3.of('resume').length, 1, 'the one after does');

  const off = harness(t, { resume: false });
  await step(off);
  off.socket().accept({ serverTime: S1, epoch: E1 });
  await step(off);
  off.socket().receive(notification('user:alice', 'n-1', `${S1}-0`));
  const o2 = await reconnect(off, { serverTime: S1 + 5000, epoch: E1 });
  t.same(o2.of('resume'), [], 'resume: false sends none');
  o2.receive({ type: 'resumed', topics: { system: { recovered: false } } });
  t.same(off.recoveries, [{ topic: 'system', recovered: false }], "the gateway's own signal is still an event");
});

t.test('points not answered before the connection drops are sent again unchanged on the next one', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  h.socket().receive(notification('user:alice', 'n-1', `${S1}-0`));
  const s2 = await reconnect(h, { serverTime: S1 + 5000, epoch: E1 });
  const first = s2.of('resume')[0]?.['topics'];
  s2.receive(notification('user:alice', 'n-9', `${S1 + 5500}-0`)); // live, newer than the gap
  const s3 = await reconnect(h, { serverTime: S1 + 9000, epoch: E1 });
  t.same(s3.of('resume')[0]?.['topics'], first, 'the gap behind the first point is still open');
  t.same(first, { 'user:alice': { offset: `${S1}-0` }, system: { since: S1 - 2000 } });
});

t.test(
  'unavailable (Redis unreadable at the gateway): the resume is asked again after a delay, for the topics still unanswered',
  async (t) => {
    const h = harness(t);
    await step(h);
    h.socket().accept({ serverTime: S1, epoch: E1 });
    await step(h);
    h.socket().receive(notification('user:alice', 'n-1', `${S1}-0`));
    const s = await reconnect(h, { serverTime: S1 + 5000, epoch: E1 });
    const [first] = s.of('resume');
    s.receive({ type: 'resumed', topics: { system: { recovered: true } } }); // unsolicited, for one of them
    s.receive({ type: 'error', code: 'unavailable', message: 'history could not be read; retry later', id: first?.['id'] });
    await step(h, 499);
    t.equal(s.of('resume').length, 1, 'not before the delay (0.5 x 1000 ms)');
    await step(h, 1);
    const again = s.of('resume')[1];
    t.same(again?.['topics'], { 'user:alice': { offset: `${S1}-0` } }, 'the same point, only for the topic still unanswered');
    t.not(again?.['id'], first?.['id']);
    s.receive({ type: 'error', code: 'rate_limited', message: 'too many messages', id: again?.['id'], retryAfterMs: 3000 });
    await step(h, 2999);
    t.equal(s.of('resume').length, 2, 'rate_limited waits retryAfterMs');
    await step(h, 1);
    const third = s.of('resume')[2];
    s.receive({ type: 'resumed', topics: { 'user:alice': { recovered: true } }, id: third?.['id'] });
    await step(h, 60_000);
    t.equal(s.of('resume').length, 3, 'answered: no more');
    t.same(h.recoveries, [
      { topic: 'system', recovered: true },
      { topic: 'user:alice', recovered: true },
    ]);
    t.same(h.errors, [], 'nothing for the app to handle');
  },
);

t.test('a gateway that refuses the resume frame: an error event, and every topic in it is not recovered', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  const s = await reconnect(h, { serverTime: S1 + 5000, epoch: E1 });
  s.answer('resume', (f) => ({ type: 'error', code: 'unknown_type', message: 'unknown frame type "resume"', id: f['id'] }));
  await step(h);
  t.same(h.recoveries, [
    { topic: 'user:alice', recovered: false },
    { topic: 'system', recovered: false },
  ]);
  t.same(
    h.errors.map((e) => [e.code, e.message]),
    [['unknown_type', 'resume: unknown frame type "resume"']],
  );
});

t.test('more than 256 held topics: several resume frames; unsubscribed topics are not resumed', async (t) => {
  const h = harness(t, { maxQueue: 1000 });
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  const topics = Array.from({ length: 300 }, (_, i) => `org:t${i}`);
  const subs = topics.map((topic) => h.client.subscribe(topic).ready);
  await step(h);
  h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await Promise.all(subs);
  void h.client.unsubscribe('org:t7').catch(() => undefined); // never answered: sent again on the next connection
  const s = await reconnect(h, { serverTime: S1 + 5000, epoch: E1 });
  const frames = s.of('resume');
  t.same(
    frames.map((f) => Object.keys(f['topics'] as object).length),
    [256, 45],
    '2 initial + 299 subscribed',
  );
  const all = frames.flatMap((f) => Object.keys(f['topics'] as object));
  t.equal(new Set(all).size, 301);
  t.notOk(all.includes('org:t7'));
  t.ok(frames.every((f) => f['epoch'] === E1));
  for (const f of frames)
    s.receive({
      type: 'resumed',
      topics: Object.fromEntries(Object.keys(f['topics'] as object).map((k) => [k, { recovered: true }])),
      id: f['id'],
    });
  await step(h);
  t.equal(h.recoveries.length, 301);
  t.ok(h.recoveries.every((r) => r.recovered));
});

t.test('the time resumed from is a server timestamp, however late the client processed the frame that carried it', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  h.socket().receive({ type: 'pong', ts: S1 + 1000 });
  await h.clock.advance(600_000); // a frozen tab, a sleeping laptop: the client's own time moves on
  h.socket().receive({ type: 'pong', ts: S1 + 2000 });
  h.socket().receive(notification('org:x', 'late', `${S1 + 1500}-0`, E1, true)); // an old timestamp never moves it back
  const s = await reconnect(h, { serverTime: S1 + 700_000, epoch: E1 });
  t.same(s.of('resume')[0]?.['topics'], { 'user:alice': { since: S1 }, system: { since: S1 } });
});

t.test('the de-duplication window holds a full replay by default', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  // 1,000 seen live, then 8,000 others replayed (HERALD_RECOVERY_MAX 300 on 27 topics), then the 1,000 again.
  for (let i = 0; i < 1000; i++) h.socket().receive(notification('user:alice', `live-${i}`, `${S1}-${i}`));
  for (let i = 0; i < 8000; i++) h.socket().receive(notification(`org:t${i % 27}`, `r-${i}`, `${S1}-${i}`, E1, true));
  for (let i = 0; i < 1000; i++) h.socket().receive(notification('user:alice', `live-${i}`, `${S1}-${i}`, E1, true));
  t.equal(h.notifications.length, 9000, 'each id once');
});

// ---- position stores, since, initialPositions ----

t.test('positions are written to the store as notifications arrive (the further one only), and read back by a new client', async (t) => {
  const store = memoryPositions();
  const h = harness(t, { positions: store });
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  h.socket().receive(notification('user:alice', 'n-1', `${S1 + 10}-0`));
  h.socket().receive(notification('user:alice', 'n-2', `${S1 + 20}-0`));
  h.socket().receive(notification('user:alice', 'n-1', `${S1 + 10}-0`, E1, true)); // an older replay never moves it back
  h.socket().receive(notification('system', 'n-3')); // no position (history off for it)
  t.same([...(store.entries?.() ?? [])], [['user:alice', { offset: `${S1 + 20}-0`, epoch: E1 }]]);
  h.client.close();

  // A reload: a new client on the same store resumes from it on its first connection.
  const h2 = harness(t, { positions: store });
  h2.client.subscribe('org:a');
  await step(h2);
  const s = h2.socket();
  s.accept({ serverTime: S1 + 600_000, epoch: E1 });
  await step(h2);
  t.same(s.of('resume'), [], 'the resume waits for the subscribes');
  s.answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await step(h2);
  const [resume] = s.of('resume');
  t.same(
    resume?.['topics'],
    { 'user:alice': { offset: `${S1 + 20}-0` } },
    'from the stored offset, however old; topics without one are not resumed',
  );
  t.equal(resume?.['epoch'], E1);
  s.receive(notification('user:alice', 'n-4', `${S1 + 30}-0`, E1, true));
  s.receive({ type: 'resumed', topics: { 'user:alice': { recovered: true } }, id: resume?.['id'] });
  await step(h2);
  t.same(h2.events, ['notification n-4', 'recovery user:alice true']);
});

t.test(
  'first connection: `since` for topics without a position, initialPositions beside the store (the further wins), another epoch is lost',
  async (t) => {
    const store = memoryPositions();
    store.set('org:a', { offset: `${S1 + 500}-0`, epoch: E2 });
    store.set('org:b', { offset: `${S1 + 100}-0`, epoch: E2 });
    store.set('org:old', { offset: `${S1}-0`, epoch: E1 }); // Redis lost that dataset since
    const h = harness(t, {
      positions: store,
      since: S1 - 60_000,
      initialPositions: { 'org:a': { offset: `${S1 + 400}-0`, epoch: E2 }, 'org:b': { offset: `${S1 + 200}-0`, epoch: E2 } },
    });
    for (const topic of ['org:a', 'org:b', 'org:old', 'org:new']) h.client.subscribe(topic);
    await step(h);
    h.socket().accept({ serverTime: S1 + 1000, epoch: E2, topics: [] });
    await step(h);
    h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
    await step(h);
    const [resume] = h.socket().of('resume');
    t.same(resume?.['topics'], {
      'org:a': { offset: `${S1 + 500}-0` },
      'org:b': { offset: `${S1 + 200}-0` },
      'org:new': { since: S1 - 60_000 },
    });
    t.equal(resume?.['epoch'], E2);
    t.same(h.recoveries, [{ topic: 'org:old', recovered: false }], 'a position in a lost dataset: recovered false at once');
    h.socket().receive({
      type: 'resumed',
      topics: { 'org:a': { recovered: true }, 'org:b': { recovered: true }, 'org:new': { recovered: true } },
      id: resume?.['id'],
    });
    await step(h);
    // `since` is for the first connection only: the next resumes from what this one saw.
    const s = await reconnect(h, { serverTime: S1 + 5000, epoch: E2, topics: [] });
    const next = s.of('resume')[0]?.['topics'] as Record<string, unknown>;
    t.same(next['org:new'], { since: S1 + 1000 - 2000 }, 'the previous connection, not the app since');
  },
);

t.test("a topic's handle hears its own recovery", async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  const sub = h.client.subscribe('org:a');
  const got: string[] = [];
  sub.on('recovered', (r) => got.push(`${r.topic} ${r.recovered}`));
  await step(h);
  h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await sub.ready;
  h.socket().receive({ type: 'resumed', topics: { 'org:a': { recovered: false }, system: { recovered: true } } });
  await step(h);
  t.same(got, ['org:a false']);
});

t.test('a hostile store: throwing or garbage get is ignored, a throwing set is reported once and nothing breaks', async (t) => {
  let sets = 0;
  const hostile = {
    get(topic: string) {
      if (topic === 'user:alice') throw new Error('boom');
      if (topic === 'system') return { offset: 'garbage', epoch: E1 };
      return 42;
    },
    set() {
      sets++;
      throw new Error('disk full');
    },
  } as unknown as PositionStore;
  const h = harness(t, { positions: hostile, since: S1 - 1000 });
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  const [resume] = h.socket().of('resume');
  t.same(resume?.['topics'], { 'user:alice': { since: S1 - 1000 }, system: { since: S1 - 1000 } }, 'as if the store had nothing');
  h.socket().receive(notification('user:alice', 'n-1', `${S1 + 1}-0`));
  h.socket().receive(notification('user:alice', 'n-2', `${S1 + 2}-0`));
  t.equal(sets, 2);
  t.same(
    h.errors.map((e) => e.code),
    ['position_store_failed'],
    'reported once',
  );
  t.equal(h.notifications.length, 2, 'notifications still delivered');
  t.throws(() => new HeraldClient({ url: 'ws://x/ws', token: 't', WebSocket: ScriptedSocket, positions: {} as never }), /positions/);
  t.throws(
    () =>
      new HeraldClient({
        url: 'ws://x/ws',
        token: 't',
        WebSocket: ScriptedSocket,
        initialPositions: { 'org:a': { offset: 'x', epoch: E1 } },
      }),
    /initialPositions/,
  );
  t.throws(() => new HeraldClient({ url: 'ws://x/ws', token: 't', WebSocket: ScriptedSocket, since: -1 }), /since/);
});

t.test('a topic subscribed after the connection opened resumes from its stored position (same epoch only)', async (t) => {
  const store = memoryPositions();
  store.set('org:late', { offset: `${S1 - 50}-2`, epoch: E1 });
  store.set('org:other', { offset: `${S1 - 50}-2`, epoch: E2 });
  const h = harness(t, { positions: store });
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  t.same(h.socket().of('resume'), [], 'nothing stored for the initial topics');
  const late = h.client.subscribe('org:late');
  h.client.subscribe('org:other');
  h.client.subscribe('org:none');
  await step(h);
  h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await step(h);
  const frames = h.socket().of('resume');
  t.same(
    frames.map((f) => [f['epoch'], f['topics']]),
    [[E1, { 'org:late': { offset: `${S1 - 50}-2` } }]],
    'one resume, for the topic stored in this epoch',
  );
  const heard: boolean[] = [];
  late.on('recovered', (r) => heard.push(r.recovered));
  h.socket().receive(notification('org:late', 'missed', `${S1 - 10}-0`, E1, true));
  h.socket().receive({ type: 'resumed', topics: { 'org:late': { recovered: true } }, id: frames[0]?.['id'] });
  await step(h);
  t.same(heard, [true]);
  t.same(h.events, ['notification missed', 'recovery org:late true']);
});

t.test('a topic unsubscribed while its re-subscribe is in flight does not hold back the resume of the others', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  const subs = [h.client.subscribe('org:a').ready, h.client.subscribe('org:b').ready];
  await step(h);
  h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await Promise.all(subs);
  h.socket().receive(notification('org:b', 'n-1', `${S1 + 100}-0`));
  await step(h);

  h.socket().drop(1006);
  await step(h, 1000);
  const s = h.socket();
  s.accept({ serverTime: S1 + 10_000, epoch: E1 });
  await step(h);
  t.same(s.of('resume'), [], 'the resume waits for the re-subscribes');
  const leaving = h.client.unsubscribe('org:a');
  await step(h);
  s.answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  s.answer('unsubscribe', (f) => ({ type: 'unsubscribed', topic: f['topic'], id: f['id'] }));
  await step(h);
  await leaving;
  const [resume] = s.of('resume');
  t.ok(resume !== undefined, 'a resume went out once the remaining re-subscribe was answered');
  const topics = (resume?.['topics'] ?? {}) as Record<string, unknown>;
  t.same(topics['org:b'], { offset: `${S1 + 100}-0` }, 'org:b resumes from its position');
  t.notOk(Object.hasOwn(topics, 'org:a'), 'org:a, left, is not resumed');
});

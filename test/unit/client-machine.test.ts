// HeraldClient's state machine against scripted sockets and a ManualClock: the paths
// a real gateway cannot be made to take on demand (1008 token_expired, a socket that
// never opens, exact backoff delays) and the bookkeeping across reconnects. The
// integration test (test/integration/client.test.ts) covers the same client against
// the real gateway.
import t, { type Test } from 'tap';
import {
  HeraldClient,
  type HeraldClientOptions,
  type HeraldError,
  type Notification,
  type Quality,
  type StateChange,
} from '../../client/dist/index.js';
import { ManualClock, settle } from '../support/manual-clock.js';
import { ScriptedSocket } from '../support/scripted-socket.js';

interface Harness {
  clock: ManualClock;
  client: HeraldClient;
  states: StateChange[];
  notifications: Notification[];
  qualities: Quality[];
  errors: HeraldError[];
  tokens: string[];
  /** The latest socket. */
  socket(): ScriptedSocket;
}

function harness(t: Test, opts: Partial<HeraldClientOptions> = {}, { autoPong = true } = {}): Harness {
  ScriptedSocket.all = [];
  ScriptedSocket.autoPong = autoPong;
  const clock = new ManualClock();
  const tokens: string[] = [];
  const client = new HeraldClient({
    url: 'ws://gateway.test/ws',
    token: () => {
      const tok = `tok${tokens.length + 1}`;
      tokens.push(tok);
      return tok;
    },
    WebSocket: ScriptedSocket,
    clock,
    random: () => 0.5,
    backoffInitialMs: 1000,
    backoffMaxMs: 8000,
    connectTimeoutMs: 5000,
    pongTimeoutMs: 2000,
    stableAfterMs: 3000,
    ...opts,
  });
  const h: Harness = {
    clock,
    client,
    states: [],
    notifications: [],
    qualities: [],
    errors: [],
    tokens,
    socket: () => {
      const s = ScriptedSocket.all[ScriptedSocket.all.length - 1];
      if (s === undefined) throw new Error('no socket yet');
      return s;
    },
  };
  client.on('state', (s) => h.states.push(s));
  client.on('notification', (n) => h.notifications.push(n));
  client.on('quality', (q) => h.qualities.push(q));
  client.on('error', (e) => h.errors.push(e));
  t.teardown(() => client.close());
  return h;
}

/** Lets the client react (token promise, microtasks) and moves the clock. */
async function step(h: Harness, ms = 0): Promise<void> {
  await settle();
  await h.clock.advance(ms);
  await settle();
}

const brief = (s: StateChange) => [s.state, s.reason, s.code, s.delayMs].filter((x) => x !== undefined).join(' ');

t.test('the token travels as the bearer.<jwt> subprotocol beside herald.v1, fetched for every socket', async (t) => {
  const h = harness(t);
  await step(h);
  t.same(h.socket().protocols, ['herald.v1', 'bearer.tok1']);
  t.equal(h.socket().url, 'ws://gateway.test/ws');
  h.socket().accept();
  await step(h);
  t.same(h.states.map(brief), ['connecting connect', 'open connected']);
  t.same(h.client.session, { connectionId: 'c0', userId: 'alice', topics: ['user:alice', 'system'], heartbeatMs: 0, serverTime: 0 });
  h.socket().drop(1006);
  await step(h, 500);
  t.same(h.socket().protocols, ['herald.v1', 'bearer.tok2'], 'a new token for the new socket');
});

t.test('a socket slow to open is never doubled: it is given up after connectTimeoutMs, then one new socket', async (t) => {
  const h = harness(t);
  await step(h);
  await step(h, 4999);
  t.equal(ScriptedSocket.all.length, 1, 'still waiting on the first socket');
  await step(h, 1);
  const first = ScriptedSocket.all[0] as ScriptedSocket;
  t.same(first.closedWith, { code: 4100, reason: 'connect_timeout' }, 'the slow socket is closed before another is made');
  t.same(h.states.map(brief).slice(1), ['reconnecting connect_timeout 500'], 'a slow open is not a refused upgrade: no immediate retry');
  t.equal(ScriptedSocket.all.length, 1, 'and nothing new before the backoff delay');
  await step(h, 500);
  t.equal(ScriptedSocket.all.length, 2);
  first.drop(1006); // its close arriving late changes nothing
  await step(h);
  t.equal(ScriptedSocket.all.length, 2);
  t.same(h.states.map(brief).slice(1), ['reconnecting connect_timeout 500']);
  h.socket().accept();
  await step(h);
  t.equal(h.client.state, 'open');
});

t.test('closed before open (a 401 looks like that in a browser): one immediate retry with a fresh token, then backoff', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().drop(1006);
  await step(h);
  t.equal(ScriptedSocket.all.length, 2, 'retried at once');
  t.same(h.tokens, ['tok1', 'tok2'], 'with a fresh token');
  h.socket().drop(1006);
  await step(h);
  t.equal(ScriptedSocket.all.length, 2, 'the second failure backs off');
  t.same(h.states.map(brief), ['connecting connect', 'reconnecting refused 1006 0', 'reconnecting refused 1006 500']);
  await step(h, 500);
  h.socket().drop(1006);
  await step(h);
  t.equal(h.states.at(-1)?.delayMs, 1000, 'the cap doubles: 0.5 x 2000');
});

t.test('1008 token_expired reconnects at once with a fresh token', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h, 3000); // stable
  h.socket().drop(1008, 'token_expired');
  await step(h);
  t.same(h.states.map(brief).slice(-1), ['reconnecting token_expired 1008 0']);
  t.equal(ScriptedSocket.all.length, 2);
  t.same(h.socket().protocols, ['herald.v1', 'bearer.tok2']);
  h.socket().accept();
  await step(h);
  t.equal(h.client.state, 'open');
});

t.test('1008 token_expired right after every connect does not loop: the second one backs off', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h);
  h.socket().drop(1008, 'token_expired');
  await step(h);
  h.socket().accept();
  await step(h);
  h.socket().drop(1008, 'token_expired');
  await step(h);
  t.same(
    h.states.filter((s) => s.state === 'reconnecting').map((s) => s.delayMs),
    [0, 500],
  );
});

t.test('1008 rate_limited is not the end: the client backs off and reconnects, and a request in flight is sent again', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h, 3000); // stable
  const ack = h.client.ack('n-1');
  await step(h, 50);
  h.socket().drop(1008, 'rate_limited');
  await step(h);
  t.same(brief(h.states.at(-1) as StateChange), 'reconnecting rate_limited 1008 500', 'a jittered delay, not an immediate retry');
  await step(h, 500);
  t.equal(ScriptedSocket.all.length, 2);
  h.socket().accept();
  await step(h);
  h.socket().answer('ack', (f) => ({ type: 'acked', notificationId: f['notificationId'], id: f['id'] }));
  await ack;
  t.equal(h.client.state, 'open');
});

t.test('an unknown 1008 policy close closes for good: state closed with the reason, requests fail with closed', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h);
  const ack = t.rejects(h.client.ack('n-1'), { code: 'closed' });
  h.socket().drop(1008, 'policy_of_a_newer_gateway');
  await step(h);
  t.same(h.states.at(-1), { state: 'closed', reason: 'policy_of_a_newer_gateway', code: 1008 });
  await ack;
  await t.rejects(h.client.subscribe('org:a').ready, { code: 'closed' }, 'new requests fail at once');
  await step(h, 60_000);
  t.equal(ScriptedSocket.all.length, 1, 'never reconnects');
  t.equal(h.clock.pending, 0, 'no timer left');
});

t.test('the closes the code table says never to retry after close for good; 1013 backpressure backs off', async (t) => {
  const rows: Array<[code: number, reason: string, state: string]> = [
    [1009, 'message_too_big', 'closed'],
    [1003, 'invalid_json', 'closed'],
    [1003, 'binary_not_supported', 'closed'],
    [1008, 'policy_of_a_newer_gateway', 'closed'],
    [1013, 'backpressure', 'reconnecting'],
    [1011, 'internal_error', 'reconnecting'],
  ];
  for (const [code, reason, state] of rows) {
    const h = harness(t);
    await step(h);
    h.socket().accept();
    await step(h);
    h.socket().drop(code, reason);
    await step(h);
    t.match(h.states.at(-1), { state, reason, code }, `${code} ${reason}: ${state}`);
    h.client.close();
  }
});

t.test('1001 shutting_down reconnects after a jittered delay, and a stable connection resets the backoff', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h, 100);
  h.socket().drop(1001, 'shutting_down');
  await step(h);
  t.same(h.states.map(brief).at(-1), 'reconnecting shutting_down 1001 500');
  await step(h, 500);
  h.socket().accept();
  await step(h, 100); // not stable yet
  h.socket().drop(1006);
  await step(h);
  t.equal(h.states.at(-1)?.delayMs, 1000, 'unstable: the cap keeps growing');
  await step(h, 1000);
  h.socket().accept();
  await step(h, 3000); // stable
  h.socket().drop(1006);
  await step(h);
  t.same(brief(h.states.at(-1) as StateChange), 'reconnecting connection_lost 1006 500', 'stable: back to the first cap');
});

t.test('after a reconnect, queued requests go out and app topics are re-subscribed; a pending subscribe is not sent twice', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h);
  const sub = h.client.subscribe('org:a').ready;
  await step(h);
  h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await sub;
  t.same(h.client.topics, ['org:a']);

  h.socket().drop(1006);
  await step(h);
  const ack = h.client.ack('n-1');
  const sub2 = h.client.subscribe('org:b').ready;
  await step(h, 1000); // past the backoff delay, within the request timeout
  h.socket().accept();
  await step(h);
  const s = h.socket();
  t.same(
    s.sent.filter((f) => f['type'] !== 'ping').map((f) => [f['type'], f['topic'] ?? f['notificationId']]),
    [
      ['ack', 'n-1'],
      ['subscribe', 'org:a'],
      ['subscribe', 'org:b'],
    ],
    'queued requests first, then every wanted topic once, in the order they were asked for',
  );
  s.answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  s.answer('ack', (f) => ({ type: 'acked', notificationId: f['notificationId'], id: f['id'] }));
  await ack;
  await sub2;
  t.same(h.client.topics.sort(), ['org:a', 'org:b']);
});

t.test('a request in flight when the connection drops is sent again on the next one', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h);
  const mark = h.client.markRead('n-9');
  await step(h, 50); // the ack window
  t.equal(h.socket().of('mark_read').length, 1);
  h.socket().drop(1006);
  await step(h, 1000); // past the backoff delay, within the request timeout
  h.socket().accept();
  await step(h);
  t.same(
    h
      .socket()
      .of('mark_read')
      .map((f) => f['notificationId']),
    ['n-9'],
  );
  h.socket().answer('mark_read', (f) => ({ type: 'marked_read', notificationId: f['notificationId'], id: f['id'] }));
  await mark;
});

t.test(
  'a topic the server refuses is dropped, and one refused on re-subscribe is reported through subscriptionError and its handle',
  async (t) => {
    const h = harness(t);
    const subErrors: string[] = [];
    h.client.on('subscriptionError', ({ topic, error }) => subErrors.push(`${topic} ${error.code}`));
    await step(h);
    h.socket().accept();
    await step(h);
    const a = h.client.subscribe('org:x').ready;
    const y = h.client.subscribe('org:y');
    const yErrors: HeraldError[] = [];
    y.on('error', (e) => yErrors.push(e));
    const b = y.ready;
    await step(h);
    h.socket().answer('subscribe', (f) =>
      f['topic'] === 'org:x'
        ? { type: 'error', code: 'forbidden', message: 'not allowed to subscribe to org:x', id: f['id'] }
        : { type: 'subscribed', topic: f['topic'], id: f['id'] },
    );
    await t.rejects(a, { code: 'forbidden', topic: 'org:x' });
    await b;
    t.same(h.client.topics, ['org:y']);

    h.socket().drop(1006);
    await step(h, 1000); // past the backoff delay, within the request timeout
    h.socket().accept();
    await step(h);
    t.same(
      h
        .socket()
        .of('subscribe')
        .map((f) => f['topic']),
      ['org:y'],
      'only the granted topic is re-subscribed',
    );
    h.socket().answer('subscribe', (f) => ({ type: 'error', code: 'forbidden', message: 'not allowed', id: f['id'] }));
    await step(h);
    t.same(h.client.topics, []);
    t.same(subErrors, ['org:x forbidden', 'org:y forbidden'], 'every refusal is an event, the first one too');
    t.match(yErrors, [{ code: 'forbidden', topic: 'org:y' }]);
    t.equal(y.state, 'failed');
    t.same(h.errors, [], 'not the catch-all error event');
    await step(h, 60_000);
    t.equal(h.socket().of('subscribe').length, 1, 'a refusal is never retried');
  },
);

t.test('unsubscribe stops the re-subscribe even while offline', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h);
  const sub = h.client.subscribe('org:a').ready;
  await step(h);
  h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
  await sub;
  h.socket().drop(1006);
  await step(h);
  const unsub = h.client.unsubscribe('org:a');
  await step(h, 1000); // past the backoff delay, within the request timeout
  h.socket().accept();
  await step(h);
  t.same(
    h
      .socket()
      .sent.filter((f) => f['type'] !== 'ping')
      .map((f) => f['type']),
    ['unsubscribe'],
  );
  h.socket().answer('unsubscribe', (f) => ({ type: 'unsubscribed', topic: f['topic'], id: f['id'] }));
  await unsub;
});

t.test('invalid arguments fail before anything is queued', async (t) => {
  const h = harness(t);
  await t.rejects(h.client.subscribe('org rio').ready, { code: 'invalid_argument' });
  await t.rejects(h.client.subscribe('').ready, { code: 'invalid_argument' });
  await t.rejects(h.client.ack(''), { code: 'invalid_argument' });
  await t.rejects(h.client.markRead('x'.repeat(129)), { code: 'invalid_argument' });
  t.same(h.client.topics, []);
});

t.test('notifications are delivered once per (topic, id): the same id on another topic is another notification', async (t) => {
  const h = harness(t, { dedupWindow: 3 });
  await step(h);
  h.socket().accept();
  await step(h);
  const n = (id: string, topic = 'user:alice') => h.socket().receive({ type: 'notification', topic, id, ts: 1, data: { id } });
  n('a');
  n('a');
  n('a', 'role:admin');
  n('a', 'role:admin');
  n('b');
  n('c'); // evicts user:alice/a
  n('a');
  t.same(
    h.notifications.map((x) => `${x.topic}/${x.id}`),
    ['user:alice/a', 'role:admin/a', 'user:alice/b', 'user:alice/c', 'user:alice/a'],
  );
  t.same(h.notifications[0], { topic: 'user:alice', id: 'a', ts: 1, data: { id: 'a' } });
});

t.test('pings at the interval measure the RTT; quality is good, fair or poor by the documented thresholds', async (t) => {
  const h = harness(t, { pingIntervalMs: 1000 }, { autoPong: false });
  await step(h);
  h.socket().accept({ heartbeatMs: 30_000 });
  await step(h);
  t.equal(h.socket().of('ping').length, 1, 'a ping right after connected');
  const pong = (afterMs: number) => async () => {
    await step(h, afterMs);
    h.socket().answer('ping', (f) => ({ type: 'pong', id: f['id'], ts: 0 }));
    await step(h);
  };
  await pong(100)();
  await step(h, 1000);
  await pong(149)();
  await step(h, 1000);
  await pong(150)();
  await step(h, 1000);
  await pong(499)();
  await step(h, 1000);
  await pong(500)();
  t.same(
    h.qualities.map((q) => `${q.level} ${q.rttMs}`),
    ['good 100', 'good 149', 'fair 150', 'fair 499', 'poor 500'],
  );
  t.same(h.client.quality, { level: 'poor', rttMs: 500 });
  h.socket().drop(1006);
  await step(h);
  t.same(h.qualities.at(-1), { level: 'offline', rttMs: undefined });
});

t.test('the server heartbeatMs sets the ping interval when pingIntervalMs is not given', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept({ heartbeatMs: 4000 });
  await step(h, 3999);
  t.equal(h.socket().of('ping').length, 1);
  await step(h, 1);
  t.equal(h.socket().of('ping').length, 2);
});

t.test('a missing pong gives the socket up and reconnects (browsers cannot see protocol pings)', async (t) => {
  const h = harness(t, { pingIntervalMs: 1000 }, { autoPong: false });
  await step(h);
  h.socket().accept();
  await step(h);
  await step(h, 1999);
  t.equal(h.client.state, 'open');
  await step(h, 1);
  const dead = ScriptedSocket.all[0] as ScriptedSocket;
  t.same(dead.closedWith, { code: 4100, reason: 'pong_timeout' });
  t.same(brief(h.states.at(-1) as StateChange), 'reconnecting pong_timeout 500');
  t.same(h.qualities.at(-1), { level: 'offline', rttMs: undefined });
  await step(h, 500);
  t.equal(ScriptedSocket.all.length, 2);
});

t.test('a rate_limited answer to a ping proves the server alive: no reconnect', async (t) => {
  const h = harness(t, { pingIntervalMs: 1000 }, { autoPong: false });
  await step(h);
  h.socket().accept();
  await step(h);
  for (let i = 0; i < 5; i++) {
    h.socket().answer('ping', (f) => ({
      type: 'error',
      code: 'rate_limited',
      message: 'too many messages',
      id: f['id'],
      retryAfterMs: 100,
    }));
    await step(h, 1000);
  }
  t.equal(h.client.state, 'open');
  t.equal(h.socket().of('ping').length, 6, 'and the pings keep their rhythm');
  t.same(h.errors, [], 'an answered ping is no error');
});

t.test('close() is final: no reconnect, requests fail with closed, no timer left; connect() starts again', async (t) => {
  const h = harness(t, { pingIntervalMs: 1000 });
  await step(h);
  h.socket().accept();
  await step(h);
  const ack = t.rejects(h.client.ack('n-1'), { code: 'closed' });
  h.client.close();
  t.same(h.states.at(-1), { state: 'closed', reason: 'client_closed' });
  t.same(h.socket().closedWith, { code: 1000, reason: 'client_closed' });
  await ack;
  await step(h, 60_000);
  t.equal(ScriptedSocket.all.length, 1);
  t.equal(h.clock.pending, 0);
  h.client.close(); // twice is fine
  h.client.connect();
  await step(h);
  t.equal(ScriptedSocket.all.length, 2);
  t.equal(h.client.state, 'connecting');
});

t.test('close() while the token is being fetched opens no socket', async (t) => {
  let release: (tok: string) => void = () => undefined;
  const h = harness(t, {
    token: () =>
      new Promise<string>((r) => {
        release = r;
      }),
  });
  await step(h);
  h.client.close();
  release('late');
  await step(h, 10_000);
  t.equal(ScriptedSocket.all.length, 0);
});

t.test('a token source that throws backs off and reports the error', async (t) => {
  let calls = 0;
  const h = harness(t, {
    token: () => {
      calls++;
      if (calls === 1) throw new Error('identity provider down');
      return 'tok';
    },
  });
  await step(h);
  t.equal(ScriptedSocket.all.length, 0);
  t.same(brief(h.states.at(-1) as StateChange), 'reconnecting token_error 500');
  t.match(h.errors, [{ code: 'token_error', message: /identity provider down/ }]);
  await step(h, 500);
  t.same(h.socket().protocols, ['herald.v1', 'bearer.tok']);
});

t.test('a token source that never answers is bounded by connectTimeoutMs, and only one fetch runs at a time', async (t) => {
  let calls = 0;
  const h = harness(t, { token: () => (++calls === 1 ? new Promise<string>(() => undefined) : 'tok') });
  await step(h, 4999);
  t.equal(ScriptedSocket.all.length, 0);
  t.equal(calls, 1);
  await step(h, 1);
  t.same(brief(h.states.at(-1) as StateChange), 'reconnecting connect_timeout 500');
  await step(h, 500);
  t.equal(calls, 2);
  t.same(h.socket().protocols, ['herald.v1', 'bearer.tok']);
  h.socket().accept();
  await step(h, 10_000);
  t.equal(h.client.state, 'open', 'the late timer of the first attempt does not touch the new connection');
});

t.test('reauth() sends the auth frame with a fresh token; revoked topics are no longer re-subscribed', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h);
  for (const topic of ['org:a', 'org:b']) {
    const p = h.client.subscribe(topic).ready;
    await step(h);
    h.socket().answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
    await p;
  }
  const r = h.client.reauth();
  await step(h);
  t.same(
    h
      .socket()
      .of('auth')
      .map((f) => f['token']),
    ['tok2'],
  );
  h.socket().answer('auth', (f) => ({
    type: 'authenticated',
    expiresAt: 5,
    topics: ['user:alice', 'system', 'org:a'],
    revoked: ['org:b'],
    id: f['id'],
  }));
  t.same(await r, { expiresAt: 5, revoked: ['org:b'], topics: ['user:alice', 'system', 'org:a'] });
  t.same(h.client.topics, ['org:a']);
  const refused = h.client.reauth();
  await step(h);
  h.socket().answer('auth', (f) => ({
    type: 'error',
    code: 'auth_failed',
    message: 'token refused',
    reason: 'invalid_signature',
    id: f['id'],
  }));
  await t.rejects(refused, { code: 'auth_failed', reason: 'invalid_signature' });
});

/** An unsigned JWT-shaped token with this exp (seconds): the client only reads exp. */
const jwt = (exp: number) => `e30.${btoa(JSON.stringify({ sub: 'alice', exp })).replace(/=+$/, '')}.sig`;

t.test('with reauthBeforeExpiryMs, the client re-authenticates that long before the token expires', async (t) => {
  const expSeconds = Math.floor(Date.now() / 1000) + 60;
  let n = 0;
  const h = harness(t, { reauthBeforeExpiryMs: 10_000, token: () => jwt(expSeconds + 60 * n++) });
  await step(h);
  h.socket().accept();
  await step(h);
  const due = expSeconds * 1000 - 10_000 - Date.now();
  await step(h, due - 1000);
  t.equal(h.socket().of('auth').length, 0, 'not yet');
  await step(h, 2000);
  t.equal(h.socket().of('auth').length, 1, 'about ten seconds before exp');
  h.socket().answer('auth', (f) => ({ type: 'authenticated', expiresAt: Date.now() + 3_600_000, revoked: [], id: f['id'] }));
  await step(h);
  t.equal(h.errors.length, 0);
});

t.test('automatic reauth stops for good on a gateway that answers unknown_type', async (t) => {
  const h = harness(t, { reauthBeforeExpiryMs: 10_000, token: () => jwt(Math.floor(Date.now() / 1000) + 5) });
  await step(h);
  h.socket().accept();
  await step(h);
  t.equal(h.socket().of('auth').length, 1, 'already within ten seconds of expiry: at once');
  h.socket().answer('auth', (f) => ({ type: 'error', code: 'unknown_type', message: 'unknown frame type "auth"', id: f['id'] }));
  await step(h);
  t.match(h.errors, [{ code: 'unknown_type' }]);
  h.socket().drop(1008, 'token_expired');
  await step(h);
  h.socket().accept();
  await step(h, 60_000);
  t.equal(h.socket().of('auth').length, 0, 'not tried again on the new connection');
});

t.test('options are checked at construction, naming the option', async (t) => {
  const base = { url: 'ws://x/ws', token: 't', WebSocket: ScriptedSocket, autoConnect: false };
  t.throws(() => new HeraldClient({ ...base, url: 'not a url' }));
  t.throws(() => new HeraldClient({ ...base, url: 'ftp://x/ws' }), /url/);
  t.throws(() => new HeraldClient({ ...base, url: 'https://x/ws' }), /expected ws:\/\/ or wss:\/\//);
  t.throws(() => new HeraldClient({ ...base, pongTimeoutMs: 0 }), /pongTimeoutMs/);
  t.throws(() => new HeraldClient({ ...base, connectTimeoutMs: -1 }), /connectTimeoutMs/);
  t.throws(() => new HeraldClient({ ...base, goodRttMs: 500, fairRttMs: 100 }), /fairRttMs/);
  t.throws(() => new HeraldClient({ ...base, backoffFactor: 0.5 }), /factor/);
  t.throws(() => new HeraldClient({ ...base, maxQueue: -1 }), /queue/);
  t.throws(() => new HeraldClient({ ...base, dedupWindow: 0 }), /dedup/);
  t.throws(
    () => new HeraldClient({ url: 'ws://x/ws', token: 't' }),
    /no global WebSocket/,
    'Node 20 has none: the message says what to pass',
  );
  const idle = new HeraldClient(base);
  t.equal(idle.state, 'closed', 'autoConnect: false waits for connect()');
  await t.rejects(idle.ack('n'), { code: 'closed' });
  idle.connect();
  await t.rejects(idle.reauth(), { code: 'disconnected' }, 'reauth needs an open connection');
  idle.close();
});

// ---- subscription handles, ready(), re-subscribe retries ----

const subscribed = (f: Record<string, unknown>) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] });

t.test(
  'subscribe returns a handle: subscribing, then subscribed with ready resolved; the same live handle for the same topic',
  async (t) => {
    const h = harness(t);
    const sub = h.client.subscribe('org:a');
    const states: string[] = [];
    sub.on('state', (s) => states.push(s));
    t.equal(sub.topic, 'org:a');
    t.equal(sub.state, 'subscribing');
    t.equal(h.client.subscribe('org:a'), sub, 'one live handle per topic');
    t.equal(typeof (sub as unknown as { then?: unknown }).then, 'undefined', 'not a thenable: callers await .ready');
    await step(h);
    h.socket().accept();
    await step(h);
    t.same(
      h
        .socket()
        .of('subscribe')
        .map((f) => f['topic']),
      ['org:a'],
      'sent once the connection is open, once',
    );
    h.socket().answer('subscribe', subscribed);
    await sub.ready;
    t.equal(sub.state, 'subscribed');
    const seen: string[] = [];
    sub.on('notification', (n) => seen.push(n.id));
    h.socket().receive({ type: 'notification', topic: 'org:a', id: 'n-1', ts: 1, data: 1 });
    h.socket().receive({ type: 'notification', topic: 'user:alice', id: 'n-2', ts: 1, data: 1 });
    t.same(seen, ['n-1'], "the handle hears its own topic's notifications only");
    t.same(
      h.notifications.map((n) => n.id),
      ['n-1', 'n-2'],
      'the flat event hears all',
    );
    h.socket().drop(1006);
    await step(h);
    t.equal(sub.state, 'subscribing', 'back to subscribing while the connection is gone');
    await step(h, 1000);
    h.socket().accept();
    await step(h);
    h.socket().answer('subscribe', subscribed);
    await step(h);
    t.same(states, ['subscribed', 'subscribing', 'subscribed']);
    const unsub = sub.unsubscribe();
    t.equal(sub.state, 'unsubscribed');
    await step(h);
    h.socket().answer('unsubscribe', (f) => ({ type: 'unsubscribed', topic: f['topic'], id: f['id'] }));
    await unsub;
    t.not(h.client.subscribe('org:a'), sub, 'a new handle after unsubscribe');
  },
);

t.test('a handle never throws: an invalid topic or a closed client give a failed handle whose ready rejects', async (t) => {
  const h = harness(t, { autoConnect: false });
  const closed = h.client.subscribe('org:a');
  t.equal(closed.state, 'failed');
  await t.rejects(closed.ready, { code: 'closed' });
  h.client.connect();
  for (const bad of ['org rio', '', 'x'.repeat(129), '__proto__ ']) {
    const s = h.client.subscribe(bad);
    t.equal(s.state, 'failed', JSON.stringify(bad.slice(0, 10)));
    await t.rejects(s.ready, { code: 'invalid_argument' });
  }
  t.same(h.client.topics, ['org:a'].slice(0, 0), 'nothing wanted');
  const early = h.client.subscribe('org:b');
  void early.unsubscribe().catch(() => undefined);
  await t.rejects(early.ready, { code: 'unsubscribed' }, 'unsubscribed before confirmed');
});

t.test(
  'a re-subscribe answered rate_limited after a reconnect: an event with the topic, retried after retryAfterMs with backoff, until it succeeds',
  async (t) => {
    const h = harness(t);
    const events: Array<{ topic: string; code: string }> = [];
    h.client.on('subscriptionError', ({ topic, error }) => events.push({ topic, code: error.code }));
    await step(h);
    h.socket().accept();
    await step(h);
    const sub = h.client.subscribe('org:a');
    const handleErrors: string[] = [];
    sub.on('error', (e) => handleErrors.push(e.code));
    await step(h);
    h.socket().answer('subscribe', subscribed);
    await sub.ready;

    h.socket().drop(1006);
    await step(h, 1000);
    h.socket().accept();
    await step(h);
    const s = h.socket();
    s.answer('subscribe', (f) => ({ type: 'error', code: 'rate_limited', message: 'too many messages', retryAfterMs: 4000, id: f['id'] }));
    await step(h);
    t.same(events, [{ topic: 'org:a', code: 'rate_limited' }], 'surfaced as an event with the topic');
    t.same(handleErrors, ['rate_limited'], "and on the topic's handle");
    t.equal(sub.state, 'subscribing');
    t.same(h.client.topics, ['org:a'], 'still wanted');
    let readyDone = false;
    void h.client.ready().then(() => {
      readyDone = true;
    });
    await step(h, 4000 + 500 - 1); // retryAfterMs + random 0.5 x the first cap (backoffInitialMs 1000)
    t.equal(s.of('subscribe').length, 1, 'not before retryAfterMs plus the jittered backoff');
    await step(h, 1);
    t.equal(s.of('subscribe').length, 2, 'then retried');
    s.answer('subscribe', (f) => ({ type: 'error', code: 'unavailable', message: 'redis', id: f['id'] }));
    await step(h, 999);
    t.equal(s.of('subscribe').length, 2, 'the second retry waits longer: 0.5 x 2000');
    await step(h, 1);
    t.equal(s.of('subscribe').length, 3);
    t.notOk(readyDone, 'client.ready() waits for every wanted topic');
    s.answer('subscribe', subscribed);
    await step(h);
    t.equal(sub.state, 'subscribed');
    t.ok(readyDone);
    t.same(
      events.map((e) => e.code),
      ['rate_limited', 'unavailable'],
    );
    t.same(h.errors, []);
  },
);

t.test(
  'client.ready() resolves once open with every topic confirmed, at once when so already; rejects when the client closes',
  async (t) => {
    const h = harness(t);
    h.client.subscribe('org:a');
    let done = false;
    const r = h.client.ready().then(() => {
      done = true;
    });
    await step(h);
    h.socket().accept();
    await step(h);
    t.notOk(done, 'open, but org:a not confirmed');
    h.socket().answer('subscribe', subscribed);
    await r;
    await h.client.ready();
    const h2 = harness(t);
    const pending = h2.client.ready();
    h2.client.close();
    await t.rejects(pending, { code: 'closed' });
    await t.rejects(h2.client.ready(), { code: 'closed' });
  },
);

t.test('a topic refused for good no longer holds ready() back, and its handle is failed', async (t) => {
  const h = harness(t);
  const x = h.client.subscribe('org:x');
  h.client.subscribe('org:y');
  await step(h);
  h.socket().accept();
  await step(h);
  h.socket().answer('subscribe', (f) =>
    f['topic'] === 'org:x' ? { type: 'error', code: 'too_many_topics', message: 'full', id: f['id'] } : subscribed(f),
  );
  await h.client.ready();
  t.equal(x.state, 'failed');
  await t.rejects(x.ready, { code: 'too_many_topics', topic: 'org:x' });
});

// ---- ack coalescing ----

t.test(
  'acks issued within ackWindowMs go as one list frame; each promise settles with the reply; one id uses the single form',
  async (t) => {
    const h = harness(t);
    await step(h);
    h.socket().accept();
    await step(h);
    const acks = Array.from({ length: 250 }, (_, i) => h.client.ack(`n-${i}`));
    const mark = h.client.markRead('n-1');
    await step(h, 49);
    t.same(
      h
        .socket()
        .of('ack')
        .map((f) => (f['notificationIds'] as string[]).length),
      [100, 100],
      'full frames go at once',
    );
    await step(h, 1);
    const frames = h.socket().of('ack');
    t.same(
      frames.map((f) => (f['notificationIds'] as string[]).length),
      [100, 100, 50],
      '250 acks: 3 frames, not 250',
    );
    t.same(
      h
        .socket()
        .of('mark_read')
        .map((f) => [f['notificationId'], f['notificationIds']]),
      [['n-1', undefined]],
      'a lone id: the single form',
    );
    h.socket().answer('ack', (f) => ({ type: 'acked', notificationIds: f['notificationIds'], id: f['id'] }));
    h.socket().answer('mark_read', (f) => ({ type: 'error', code: 'rate_limited', message: 'slow down', retryAfterMs: 10, id: f['id'] }));
    await Promise.all(acks);
    await t.rejects(mark, { code: 'rate_limited' });
  },
);

t.test('acks made offline wait in the queue as list frames and go out on the next connection', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h);
  h.socket().drop(1006);
  await step(h);
  const acks = ['a', 'b', 'c'].map((id) => h.client.ack(id));
  await step(h, 1000);
  h.socket().accept();
  await step(h);
  t.same(
    h
      .socket()
      .of('ack')
      .map((f) => f['notificationIds']),
    [['a', 'b', 'c']],
  );
  h.socket().answer('ack', (f) => ({ type: 'acked', notificationIds: f['notificationIds'], id: f['id'] }));
  await Promise.all(acks);
});

// ---- history ----

t.test('history() sends the frame and answers the page; arguments the gateway would refuse fail locally', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().accept();
  await step(h);
  const bad: Array<[string, Record<string, unknown>]> = [
    ['org rio', {}],
    ['org:a', { limit: 0 }],
    ['org:a', { limit: 101 }],
    ['org:a', { limit: 2.5 }],
    ['org:a', { limit: '20' }],
    ['org:a', { before: '1-0', after: '2-0' }],
    ['org:a', { before: 'yesterday' }],
    ['org:a', { after: 5 }],
  ];
  for (const [topic, opts] of bad)
    await t.rejects(h.client.history(topic, opts as never), { code: 'invalid_argument' }, JSON.stringify([topic, opts]));
  const page = h.client.history('org:a', { limit: 100, before: '1795450000000-3' });
  await step(h);
  t.same(
    h
      .socket()
      .of('history')
      .map(({ id: _id, ...f }) => f),
    [{ type: 'history', topic: 'org:a', limit: 100, before: '1795450000000-3' }],
  );
  const n = { topic: 'org:a', id: 'n-1', ts: 5, data: { title: 'hi' }, offset: '1795450000000-1', epoch: 'e1' };
  h.socket().answer('history', (f) => ({ type: 'history', topic: 'org:a', epoch: 'e1', notifications: [n], id: f['id'] }));
  t.same(await page, { topic: 'org:a', epoch: 'e1', notifications: [n] });
  t.same(h.notifications, [], 'history is a read: no notification events');
  const refused = h.client.history('org:a');
  await step(h);
  h.socket().answer('history', (f) => ({ type: 'error', code: 'history_unavailable', message: 'no history', id: f['id'] }));
  await t.rejects(refused, { code: 'history_unavailable' });
});

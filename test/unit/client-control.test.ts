// HeraldClient and the gateway's control API (issue 17) against scripted sockets and a
// ManualClock: a topic the gateway subscribes the connection to (`subscribed` with
// `server: true`) or takes away (`unsubscribed`, `server: true`), and the closes a
// backend asks for (4000 disconnected, 4001 reconnect, 1008 token_revoked), each with
// what the client does after it and the events it tells the app.
import t, { type Test } from 'tap';
import {
  HeraldClient,
  type HeraldClientOptions,
  type Notification,
  type ServerDisconnect,
  type StateChange,
} from '../../client/dist/index.js';
import { ManualClock, settle } from '../support/manual-clock.js';
import { ScriptedSocket } from '../support/scripted-socket.js';

/** A socket like `ws`: it shows the HTTP status of a refused upgrade (browsers never do). */
class NodeStyleSocket extends ScriptedSocket {
  #onResponse: ((req: unknown, res: { statusCode?: number }) => void) | undefined;

  on(event: string, fn: (req: unknown, res: { statusCode?: number }) => void): this {
    if (event === 'unexpected-response') this.#onResponse = fn;
    return this;
  }

  /** The gateway refuses the upgrade with `status`: `ws` reports the response, then an error and a close 1006. */
  refuse(status: number): void {
    this.#onResponse?.(undefined, { statusCode: status });
    this.drop(1006);
  }
}

interface Harness {
  clock: ManualClock;
  client: HeraldClient;
  states: StateChange[];
  notifications: Notification[];
  tokens: string[];
  /** serverSubscribed, serverUnsubscribed and serverDisconnect events, in order. */
  control: string[];
  disconnects: ServerDisconnect[];
  socket(): NodeStyleSocket;
}

function harness(t: Test, opts: Partial<HeraldClientOptions> = {}): Harness {
  ScriptedSocket.all = [];
  ScriptedSocket.autoPong = true;
  const clock = new ManualClock();
  const tokens: string[] = [];
  const client = new HeraldClient({
    url: 'ws://gateway.test/ws',
    token: () => {
      const tok = `tok${tokens.length + 1}`;
      tokens.push(tok);
      return tok;
    },
    WebSocket: NodeStyleSocket,
    clock,
    random: () => 0.5,
    backoffInitialMs: 1000,
    backoffMaxMs: 8000,
    stableAfterMs: 3000,
    ...opts,
  });
  const h: Harness = {
    clock,
    client,
    states: [],
    notifications: [],
    tokens,
    control: [],
    disconnects: [],
    socket: () => {
      const s = ScriptedSocket.all[ScriptedSocket.all.length - 1];
      if (!(s instanceof NodeStyleSocket)) throw new Error('no socket yet');
      return s;
    },
  };
  client.on('state', (s) => h.states.push(s));
  client.on('notification', (n) => h.notifications.push(n));
  client.on('serverSubscribed', ({ topic }) => h.control.push(`serverSubscribed ${topic}`));
  client.on('serverUnsubscribed', ({ topic }) => h.control.push(`serverUnsubscribed ${topic}`));
  client.on('serverDisconnect', (d) => {
    h.disconnects.push(d);
    h.control.push(`serverDisconnect ${d.code} ${d.reason} ${d.reconnect}`);
  });
  t.teardown(() => client.close());
  return h;
}

/** Lets the client react (token promise, microtasks) and moves the clock. */
async function step(h: Harness, ms = 0): Promise<void> {
  await settle();
  await h.clock.advance(ms);
  await settle();
}

/** The gateway confirms every subscribe not answered yet. */
function confirmSubscribes(s: ScriptedSocket): void {
  s.answer('subscribe', (f) => ({ type: 'subscribed', topic: f['topic'], id: f['id'] }));
}

/** The network drops the socket; the next one opens after the backoff delay (0.5 x 1000 ms) and confirms the re-subscribes. */
async function reconnect(h: Harness): Promise<NodeStyleSocket> {
  h.socket().drop(1006);
  await step(h, 500);
  const s = h.socket();
  s.accept();
  await step(h);
  confirmSubscribes(s);
  await step(h);
  return s;
}

async function open(h: Harness, ms = 0): Promise<NodeStyleSocket> {
  await step(h);
  h.socket().accept();
  await step(h, ms);
  return h.socket();
}

const note = (topic: string, id: string) => ({ type: 'notification', topic, id, ts: 1, data: { id } });
const brief = (s: StateChange) => [s.state, s.reason, s.code, s.delayMs].filter((x) => x !== undefined).join(' ');
const subscribes = (s: ScriptedSocket) => s.of('subscribe').map((f) => f['topic']);

t.test('a server-side subscribe is an event and a confirmed handle that gets the topic, for that connection only', async (t) => {
  const h = harness(t);
  const s = await open(h);
  const seen: string[] = [];
  h.client.on('serverSubscribed', ({ topic }) => {
    // The handle exists by the time the app hears of it.
    const sub = h.client.subscription(topic);
    seen.push(`${topic} ${sub?.state}`);
    sub?.on('notification', (n) => seen.push(`handle ${n.id}`));
  });
  s.receive({ type: 'subscribed', topic: 'news', server: true });
  await step(h);
  t.same(h.control, ['serverSubscribed news']);
  t.same(seen, ['news subscribed']);
  const handle = h.client.subscription('news');
  await handle?.ready;
  t.same(h.client.serverTopics, ['news']);
  t.same(h.client.topics, [], 'not one of the topics the app subscribed');
  t.same(subscribes(s), [], 'nothing sent: the connection holds it already');
  await h.client.ready(); // a held topic holds nothing back

  s.receive(note('news', 'n-1'));
  t.same(
    h.notifications.map((n) => n.id),
    ['n-1'],
  );
  t.same(seen, ['news subscribed', 'handle n-1']);

  const states: string[] = [];
  handle?.on('state', (st) => states.push(st));
  const next = await reconnect(h);
  t.same(subscribes(next), [], 'not subscribed again on the next connection');
  t.same(states, ['unsubscribed'], 'its handle ended with the connection');
  t.equal(h.client.subscription('news'), undefined);
  t.same(h.client.serverTopics, []);
  t.same(h.control, ['serverSubscribed news'], 'the end of the connection is no serverUnsubscribed');
});

t.test('subscribe() on a topic the server subscribed makes it the app’s: the same handle, re-subscribed after a reconnect', async (t) => {
  const h = harness(t);
  const s = await open(h);
  s.receive({ type: 'subscribed', topic: 'news', server: true });
  await step(h);
  const handle = h.client.subscription('news');
  t.equal(h.client.subscribe('news'), handle, 'the handle it has');
  await step(h);
  t.same(subscribes(s), [], 'held already: no subscribe frame');
  t.same(h.client.topics, ['news']);
  t.same(h.client.serverTopics, []);
  const next = await reconnect(h);
  t.same(subscribes(next), ['news']);
  t.equal(handle?.state, 'subscribed');
});

t.test(
  'a server-side unsubscribe ends the handle, stops its delivery and is never re-subscribed; the app may subscribe again',
  async (t) => {
    const h = harness(t);
    const s = await open(h);
    const sub = h.client.subscribe('org:a');
    const got: string[] = [];
    sub.on('notification', (n) => got.push(n.id));
    await step(h);
    confirmSubscribes(s);
    await sub.ready;
    s.receive(note('org:a', 'n-1'));
    s.receive({ type: 'unsubscribed', topic: 'org:a', server: true });
    await step(h);
    t.same(h.control, ['serverUnsubscribed org:a']);
    t.equal(sub.state, 'unsubscribed');
    t.equal(h.client.subscription('org:a'), undefined);
    t.same(h.client.topics, []);
    s.receive(note('org:a', 'n-2')); // a late one, sent before the gateway dropped the topic
    t.same(got, ['n-1'], 'the handle gets nothing more');

    const next = await reconnect(h);
    t.same(subscribes(next), [], 'the server took it away: not re-subscribed');

    const again = h.client.subscribe('org:a');
    t.not(again, sub, 'a new handle');
    await step(h);
    t.same(subscribes(next), ['org:a'], 'the app may ask for it again');
    confirmSubscribes(next);
    await again.ready;
  },
);

t.test(
  'a server-side unsubscribe before the app’s subscribe was confirmed rejects its ready and no longer holds ready() back',
  async (t) => {
    const h = harness(t);
    const s = await open(h);
    const sub = h.client.subscribe('org:a');
    await step(h);
    // The gateway cannot read Redis: the subscribe waits for its retry.
    s.answer('subscribe', (f) => ({ type: 'error', code: 'unavailable', message: 'try later', id: f['id'] }));
    await step(h);
    const ready = h.client.ready();
    s.receive({ type: 'unsubscribed', topic: 'org:a', server: true });
    await t.rejects(sub.ready, { code: 'unsubscribed', topic: 'org:a' });
    await ready;
    await step(h, 60_000);
    t.same(subscribes(s), ['org:a'], 'its retry is cancelled');
  },
);

t.test('a topic the server takes away while a reconnect’s resume waits is left out of that resume', async (t) => {
  const S1 = 1_795_450_000_000;
  const E1 = '18a2f3c4b5d6e7';
  const h = harness(t);
  await step(h);
  h.socket().accept({ serverTime: S1, epoch: E1 });
  await step(h);
  const sub = h.client.subscribe('org:a');
  await step(h);
  confirmSubscribes(h.socket());
  await sub.ready;
  h.socket().receive({ type: 'notification', topic: 'system', id: 'n-1', ts: S1, offset: `${S1}-0`, epoch: E1, data: 1 });
  h.socket().drop(1006);
  await step(h, 500);
  const s = h.socket();
  s.accept({ serverTime: S1 + 5000, epoch: E1 });
  await step(h);
  // The resume waits for org:a's re-subscribe; meanwhile the gateway takes `system` (an initial topic) away.
  s.receive({ type: 'unsubscribed', topic: 'system', server: true });
  confirmSubscribes(s);
  await step(h);
  t.same(
    Object.keys(s.of('resume')[0]?.['topics'] ?? {}).sort(),
    ['org:a', 'user:alice'],
    'not `system`: the gateway would answer not held',
  );
});

t.test('a server-side subscribe of a topic the app wants keeps the app’s handle', async (t) => {
  const h = harness(t);
  const s = await open(h);
  const sub = h.client.subscribe('org:a');
  await step(h);
  confirmSubscribes(s);
  await sub.ready;
  s.receive({ type: 'subscribed', topic: 'org:a', server: true });
  await step(h);
  t.same(h.control, ['serverSubscribed org:a']);
  t.equal(h.client.subscription('org:a'), sub);
  t.same(h.client.serverTopics, []);
  const next = await reconnect(h);
  t.same(subscribes(next), ['org:a'], 'still re-subscribed');
});

t.test('4000 disconnected stops the client for good: state closed, a serverDisconnect event, no reconnect', async (t) => {
  const h = harness(t, { pingIntervalMs: 1000 });
  const s = await open(h, 3000);
  const ack = t.rejects(h.client.ack('n-1'), { code: 'closed' });
  s.drop(4000, 'disconnected');
  await step(h);
  t.same(h.states.at(-1), { state: 'closed', reason: 'disconnected', code: 4000 });
  t.same(h.disconnects, [{ code: 4000, reason: 'disconnected', reconnect: false }]);
  await ack;
  await step(h, 600_000);
  t.equal(ScriptedSocket.all.length, 1, 'never reconnects');
  t.equal(h.clock.pending, 0, 'no timer left');
  h.client.connect(); // the app may come back
  await step(h);
  t.equal(ScriptedSocket.all.length, 2);
});

t.test('4001 reconnect reconnects with backoff and re-subscribes; a serverDisconnect event says it will', async (t) => {
  const h = harness(t);
  const s = await open(h, 3000);
  const sub = h.client.subscribe('org:a');
  await step(h);
  confirmSubscribes(s);
  await sub.ready;
  s.drop(4001, 'reconnect');
  await step(h);
  t.same(brief(h.states.at(-1) as StateChange), 'reconnecting reconnect 4001 500', 'a jittered delay: a mass reconnect is spread');
  t.same(h.control, ['serverDisconnect 4001 reconnect true']);
  t.equal(ScriptedSocket.all.length, 1, 'not at once');
  await step(h, 500);
  t.equal(ScriptedSocket.all.length, 2);
  h.socket().accept();
  await step(h);
  t.same(subscribes(h.socket()), ['org:a']);
  t.same(h.tokens, ['tok1', 'tok2']);
});

t.test('1008 token_revoked reconnects at once with a fresh token; an upgrade then refused 401 backs off', async (t) => {
  const h = harness(t);
  await open(h, 3000); // stable: the fresh-token retry is available
  h.socket().drop(1008, 'token_revoked');
  await step(h);
  t.same(brief(h.states.at(-1) as StateChange), 'reconnecting token_revoked 1008 0');
  t.same(h.disconnects, [{ code: 1008, reason: 'token_revoked', reconnect: true }]);
  t.equal(ScriptedSocket.all.length, 2);
  t.same(h.tokens, ['tok1', 'tok2'], 'the token source was asked for a fresh one');
  t.same(h.socket().protocols, ['herald.v1', 'bearer.tok2']);
  // The token source handed out one issued before the revocation: 401 token_revoked at the upgrade.
  h.socket().refuse(401);
  await step(h);
  t.match(h.states.at(-1), { state: 'reconnecting', reason: 'refused', status: 401, delayMs: 500 }, 'no loop: the second backs off');
  await step(h, 500);
  t.same(h.tokens, ['tok1', 'tok2', 'tok3']);
  h.socket().accept();
  await step(h);
  t.equal(h.client.state, 'open');
  t.equal(h.disconnects.length, 1, 'a refused upgrade is no serverDisconnect');
});

t.test('a refused upgrade: 401 (token_revoked among others) retries at once with a fresh token; 429 for the user backs off', async (t) => {
  const h = harness(t);
  await step(h);
  h.socket().refuse(401);
  await step(h);
  t.same(brief(h.states.at(-1) as StateChange), 'reconnecting refused 1006 0');
  t.same(h.tokens, ['tok1', 'tok2']);
  h.client.close();

  const h2 = harness(t);
  await step(h2);
  h2.socket().refuse(429); // too_many_connections_for_user: the user holds too many connections; a token does not fix it
  await step(h2);
  t.match(h2.states.at(-1), { state: 'reconnecting', status: 429, delayMs: 500 });
  t.same(h2.tokens, ['tok1']);
});

t.test(
  'only the control closes are serverDisconnect events: not the network, a shutdown, an expiry or a close the client sent',
  async (t) => {
    const rows: Array<[code: number, reason: string]> = [
      [1006, ''],
      [1001, 'shutting_down'],
      [1008, 'token_expired'],
      [1008, 'rate_limited'],
      [4000, 'pong_timeout'], // another reason under the code
      [4001, 'disconnected'], // a known reason under another code is not that close
      [4000, 'DISCONNECTED'],
    ];
    for (const [code, reason] of rows) {
      const h = harness(t);
      const s = await open(h);
      s.drop(code, reason);
      await step(h);
      t.same(h.disconnects, [], `${code} ${reason}`);
      h.client.close();
    }
    // A pong that never comes: the client gives the socket up itself, sending 4100 (Close.ClientGaveUp).
    const h = harness(t, { pongTimeoutMs: 1000 });
    ScriptedSocket.autoPong = false;
    const s = await open(h);
    await step(h, 1000);
    t.same(s.closedWith, { code: 4100, reason: 'pong_timeout' });
    t.same(h.disconnects, []);
  },
);

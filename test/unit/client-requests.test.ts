// The SDK's request bookkeeping (client/src/requests.ts): ids, replies matched by id,
// deadlines, the bounded offline queue, and what a lost connection does to requests
// in flight. Time is a ManualClock; the "socket" is an array of written frames.
import t from 'tap';
import { type ClientFrame, decodeServerFrame, type ServerFrame } from '../../client/dist/protocol.js';
import { createRequests, HeraldError } from '../../client/dist/requests.js';
import { ManualClock, settle } from '../support/manual-clock.js';

function setup(o: { timeoutMs?: number; maxQueue?: number } = {}) {
  const clock = new ManualClock();
  const requests = createRequests({ timeoutMs: o.timeoutMs ?? 1000, maxQueue: o.maxQueue ?? 3, clock });
  const wire: ClientFrame[] = [];
  return { clock, requests, wire, write: (f: ClientFrame) => void wire.push(f) };
}

/** Resolves to the outcome without throwing, so a test can inspect when a promise settled. */
function outcome<T>(p: Promise<T>): { value?: T; error?: HeraldError; done: boolean } {
  const o: { value?: T; error?: HeraldError; done: boolean } = { done: false };
  p.then(
    (v) => Object.assign(o, { value: v, done: true }),
    (e: HeraldError) => Object.assign(o, { error: e, done: true }),
  );
  return o;
}

const frame = (json: string): ServerFrame => {
  const f = decodeServerFrame(json);
  if (f === undefined) throw new Error(`not a frame: ${json}`);
  return f;
};

t.test('each request gets a fresh integer id and settles with the reply carrying it, in any order', async (t) => {
  const { requests, wire, write } = setup();
  requests.attach(write);
  const a = outcome(requests.request({ type: 'subscribe', topic: 'org:a' }));
  const b = outcome(requests.request({ type: 'ack', notificationId: 'n-1' }));
  const c = outcome(requests.request({ type: 'ping' }));
  t.same(wire, [
    { type: 'subscribe', topic: 'org:a', id: 1 },
    { type: 'ack', notificationId: 'n-1', id: 2 },
    { type: 'ping', id: 3 },
  ]);
  t.equal(requests.settle(frame('{"type":"pong","id":3,"ts":5}')), true);
  t.equal(requests.settle(frame('{"type":"acked","notificationId":"n-1","id":2}')), true);
  t.equal(requests.settle(frame('{"type":"subscribed","topic":"org:a","id":1}')), true);
  await settle();
  t.same(c.value, { type: 'pong', id: 3, ts: 5 });
  t.same(b.value, { type: 'acked', notificationId: 'n-1', id: 2 });
  t.same(a.value, { type: 'subscribed', topic: 'org:a', id: 1 });
  t.equal(requests.inFlight, 0);
});

t.test('an error reply rejects with a HeraldError carrying the server code, retryAfterMs and reason', async (t) => {
  const { requests, write } = setup();
  requests.attach(write);
  const a = outcome(requests.request({ type: 'subscribe', topic: 'org:x' }));
  const b = outcome(requests.request({ type: 'ping' }));
  const c = outcome(requests.request({ type: 'auth', token: 't' }));
  requests.settle(frame('{"type":"error","code":"forbidden","message":"not allowed to subscribe to org:x","id":1}'));
  requests.settle(frame('{"type":"error","code":"rate_limited","message":"too many messages","id":2,"retryAfterMs":4997}'));
  requests.settle(frame('{"type":"error","code":"auth_failed","message":"token refused","id":3,"reason":"token_expired"}'));
  await settle();
  t.ok(a.error instanceof HeraldError);
  t.match(a.error, {
    name: 'HeraldError',
    code: 'forbidden',
    message: 'not allowed to subscribe to org:x',
    sent: true,
    retryAfterMs: undefined,
  });
  t.match(b.error, { code: 'rate_limited', retryAfterMs: 4997 });
  t.match(c.error, { code: 'auth_failed', reason: 'token_expired' });
});

t.test('frames that do not answer a request in flight are not taken', async (t) => {
  const { requests, write } = setup();
  requests.attach(write);
  const a = outcome(requests.request({ type: 'subscribe', topic: 'org:a' }));
  const rows = [
    '{"type":"subscribed","topic":"org:a"}', // no id: another client's habit, not ours
    '{"type":"subscribed","topic":"org:a","id":2}', // an id never allocated
    '{"type":"subscribed","topic":"org:a","id":"1"}', // the string "1" is not the integer 1
    '{"type":"acked","notificationId":"n","id":1}', // the right id, the wrong reply type
    '{"type":"pong","id":1,"ts":1}',
    '{"type":"connected","connectionId":"c","userId":"u","topics":[],"heartbeatMs":0,"serverTime":0}',
  ];
  for (const r of rows) t.equal(requests.settle(frame(r)), false, r);
  await settle();
  t.equal(a.done, false, 'still waiting');
  t.equal(requests.settle(frame('{"type":"subscribed","topic":"org:a","id":1}')), true);
  t.equal(requests.settle(frame('{"type":"subscribed","topic":"org:a","id":1}')), false, 'a repeated reply matches nothing');
});

t.test('a request with no reply fails with timeout at its deadline, not before, marked as sent', async (t) => {
  const { clock, requests, write } = setup({ timeoutMs: 1000 });
  requests.attach(write);
  const a = outcome(requests.request({ type: 'mark_read', notificationId: 'n-1' }));
  const b = outcome(requests.request({ type: 'ping' }, { timeoutMs: 200 }));
  await clock.advance(199);
  await settle();
  t.equal(b.done, false);
  await clock.advance(1);
  await settle();
  t.match(b.error, { code: 'timeout', sent: true, message: /ping: no reply within 200 ms/ });
  await clock.advance(799);
  await settle();
  t.equal(a.done, false);
  await clock.advance(1);
  await settle();
  t.match(a.error, { code: 'timeout', sent: true });
  t.equal(requests.settle(frame('{"type":"marked_read","notificationId":"n-1","id":1}')), false, 'a late reply is ignored');
  t.equal(clock.pending, 0, 'no timer left behind');
});

t.test('a reply clears the request timer', async (t) => {
  const { clock, requests, write } = setup();
  requests.attach(write);
  void requests.request({ type: 'ping' });
  t.equal(clock.pending, 1);
  requests.settle(frame('{"type":"pong","id":1,"ts":1}'));
  t.equal(clock.pending, 0);
});

t.test('while detached, requests wait in the queue and go out in order on attach', async (t) => {
  const { requests, wire, write } = setup({ maxQueue: 5 });
  const a = outcome(requests.request({ type: 'subscribe', topic: 'org:a' }));
  const b = outcome(requests.request({ type: 'ack', notificationId: 'n-1' }));
  const c = outcome(requests.request({ type: 'unsubscribe', topic: 'org:a' }));
  t.equal(requests.queued, 3);
  t.same(wire, [], 'nothing written without a connection');
  requests.attach(write);
  t.same(
    wire.map((f) => f.id),
    [1, 2, 3],
    'in the order they were made',
  );
  t.equal(requests.queued, 0);
  t.equal(requests.inFlight, 3);
  requests.settle(frame('{"type":"unsubscribed","topic":"org:a","id":3}'));
  requests.settle(frame('{"type":"subscribed","topic":"org:a","id":1}'));
  requests.settle(frame('{"type":"acked","notificationId":"n-1","id":2}'));
  await settle();
  t.ok(a.done && b.done && c.done && a.error === undefined && b.error === undefined && c.error === undefined);
});

t.test('the queue is bounded: one more request fails at once with queue_full, never sent', async (t) => {
  const { requests, wire, write } = setup({ maxQueue: 2 });
  const a = outcome(requests.request({ type: 'ack', notificationId: 'n-1' }));
  const b = outcome(requests.request({ type: 'ack', notificationId: 'n-2' }));
  const c = outcome(requests.request({ type: 'ack', notificationId: 'n-3' }));
  await settle();
  t.match(c.error, { code: 'queue_full', sent: false, message: /offline queue holds 2/ });
  t.equal(a.done || b.done, false, 'the queued ones still wait');
  requests.attach(write);
  t.same(
    wire.map((f) => (f as { notificationId: string }).notificationId),
    ['n-1', 'n-2'],
    'the refused one is never sent',
  );
});

t.test('maxQueue 0 means no offline queue at all', async (t) => {
  const { requests } = setup({ maxQueue: 0 });
  const a = outcome(requests.request({ type: 'ack', notificationId: 'n-1' }));
  await settle();
  t.match(a.error, { code: 'queue_full' });
});

t.test('a queued request times out from the moment it was made, and leaves the queue unsent', async (t) => {
  const { clock, requests, wire, write } = setup({ timeoutMs: 1000 });
  const a = outcome(requests.request({ type: 'ack', notificationId: 'n-1' }));
  await clock.advance(1000);
  await settle();
  t.match(a.error, { code: 'timeout', sent: false }, 'sent: false: certainly not done');
  t.equal(requests.queued, 0);
  requests.attach(write);
  t.same(wire, []);
});

t.test('queue: false fails at once with disconnected when there is no connection', async (t) => {
  const { clock, requests } = setup();
  const a = outcome(requests.request({ type: 'ping' }, { queue: false }));
  await settle();
  t.match(a.error, { code: 'disconnected', sent: false });
  t.equal(clock.pending, 0);
});

t.test('on detach, requests in flight go back to the front of the queue (oldest first) and are resent with the same id', async (t) => {
  const { requests, wire, write } = setup({ maxQueue: 10 });
  requests.attach(write);
  const a = outcome(requests.request({ type: 'ack', notificationId: 'n-1' }));
  const b = outcome(requests.request({ type: 'subscribe', topic: 'org:a' }));
  requests.detach();
  const c = outcome(requests.request({ type: 'mark_read', notificationId: 'n-2' }));
  t.equal(requests.queued, 3);
  wire.length = 0;
  requests.attach(write);
  t.same(wire, [
    { type: 'ack', notificationId: 'n-1', id: 1 },
    { type: 'subscribe', topic: 'org:a', id: 2 },
    { type: 'mark_read', notificationId: 'n-2', id: 3 },
  ]);
  requests.settle(frame('{"type":"acked","notificationId":"n-1","id":1}'));
  requests.settle(frame('{"type":"subscribed","topic":"org:a","id":2}'));
  requests.settle(frame('{"type":"marked_read","notificationId":"n-2","id":3}'));
  await settle();
  t.ok(a.value && b.value && c.value);
});

t.test('on detach, resend: false requests fail with disconnected, marked as sent', async (t) => {
  const { requests, write } = setup();
  requests.attach(write);
  const ping = outcome(requests.request({ type: 'ping' }, { resend: false }));
  const ack = outcome(requests.request({ type: 'ack', notificationId: 'n-1' }));
  requests.detach();
  await settle();
  t.match(ping.error, { code: 'disconnected', sent: true });
  t.equal(ack.done, false, 'the ack waits for the next connection');
});

t.test('requests put back on detach count against the bound: the newest beyond it fail with queue_full', async (t) => {
  const { requests, write } = setup({ maxQueue: 2 });
  requests.attach(write);
  const all = [1, 2, 3, 4].map((n) => outcome(requests.request({ type: 'ack', notificationId: `n-${n}` })));
  requests.detach();
  await settle();
  t.same(
    all.map((o) => o.error?.code),
    [undefined, undefined, 'queue_full', 'queue_full'],
  );
  t.equal(requests.queued, 2);
});

t.test('rejectAll fails queued and in-flight requests with the given code and clears every timer', async (t) => {
  const { clock, requests, write } = setup();
  requests.attach(write);
  const a = outcome(requests.request({ type: 'ack', notificationId: 'n-1' }));
  requests.detach();
  const b = outcome(requests.request({ type: 'ack', notificationId: 'n-2' }));
  requests.rejectAll('closed', 'the client is closed');
  await settle();
  t.match(a.error, { code: 'closed', sent: true });
  t.match(b.error, { code: 'closed', sent: false });
  t.equal(clock.pending, 0);
  t.equal(requests.queued + requests.inFlight, 0);
});

t.test('ids keep growing across connections, so a reply can only match its own request', async (t) => {
  const { requests, wire, write } = setup();
  requests.attach(write);
  void requests.request({ type: 'ping' }, { resend: false }).catch(() => undefined);
  requests.detach();
  requests.attach(write);
  void requests.request({ type: 'ping' }).catch(() => undefined);
  t.same(
    wire.map((f) => f.id),
    [1, 2],
  );
  requests.rejectAll('closed', 'done');
});

t.test('invalid settings are refused at construction', async (t) => {
  t.throws(() => createRequests({ timeoutMs: 0, maxQueue: 1 }), /request timeout/);
  t.throws(() => createRequests({ timeoutMs: Number.NaN, maxQueue: 1 }), /request timeout/);
  t.throws(() => createRequests({ timeoutMs: 10, maxQueue: -1 }), /request queue/);
  t.throws(() => createRequests({ timeoutMs: 10, maxQueue: 1.5 }), /request queue/);
});

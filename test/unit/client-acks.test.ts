// The SDK's ack coalescing (client/src/acks.ts) on a ManualClock: ids issued within the
// window share one frame, bounded by count and bytes, and each call settles with the
// reply to its own frame. The client's use of it: test/unit/client-machine.test.ts.
import t from 'tap';
import { type AckKind, createAckBatcher, DEFAULT_MAX_ID_BYTES, DEFAULT_MAX_IDS } from '../../client/dist/acks.js';
import { MAX_ACK_IDS } from '../../client/dist/protocol.js';
import { ManualClock, settle } from '../support/manual-clock.js';

interface Sent {
  kind: AckKind;
  ids: string[];
  resolve: () => void;
  reject: (err: Error) => void;
}

function setup(windowMs = 50, extra: { maxIds?: number; maxIdBytes?: number } = {}) {
  const clock = new ManualClock();
  const sent: Sent[] = [];
  const b = createAckBatcher({
    windowMs,
    clock,
    ...extra,
    send: (kind, ids) =>
      new Promise<unknown>((resolve, reject) => {
        sent.push({ kind, ids: [...ids], resolve: () => resolve(undefined), reject });
      }),
  });
  return { clock, sent, b };
}

/** Settled state of a promise without awaiting it. */
function track(p: Promise<void>): { state: string } {
  const s = { state: 'pending' };
  p.then(
    () => {
      s.state = 'resolved';
    },
    (e: Error) => {
      s.state = `rejected ${e.message}`;
    },
  );
  return s;
}

t.test('the wire bound and the batcher default agree', async (t) => {
  t.equal(DEFAULT_MAX_IDS, MAX_ACK_IDS);
  t.equal(MAX_ACK_IDS, 100, "PROTOCOL.md's bound");
  t.ok(DEFAULT_MAX_ID_BYTES + 200 < 10240, "a full frame stays under the gateway's default HERALD_MAX_PAYLOAD_BYTES");
});

t.test('ids issued within the window go as one frame, sent when the window closes; each call settles with that reply', async (t) => {
  const { clock, sent, b } = setup(50);
  const p1 = track(b.add('ack', 'n-1'));
  await clock.advance(30);
  const p2 = track(b.add('ack', 'n-2'));
  const m1 = track(b.add('mark_read', 'n-1'));
  await clock.advance(19);
  t.same(sent, [], 'nothing before the window of the first id closes');
  t.equal(b.waiting, 3);
  await clock.advance(1);
  t.same(
    sent.map((s) => [s.kind, s.ids]),
    [['ack', ['n-1', 'n-2']]],
    'the ack window closed',
  );
  t.equal(b.waiting, 1);
  await clock.advance(30);
  t.same(
    sent.map((s) => [s.kind, s.ids]),
    [
      ['ack', ['n-1', 'n-2']],
      ['mark_read', ['n-1']],
    ],
    'one window per kind, from its first id',
  );
  t.equal(b.waiting, 0);
  (sent[0] as Sent).resolve();
  await settle();
  t.same([p1.state, p2.state, m1.state], ['resolved', 'resolved', 'pending'], 'a reply settles only its frame');
  (sent[1] as Sent).reject(new Error('rate_limited'));
  await settle();
  t.equal(m1.state, 'rejected rate_limited');
  const p3 = track(b.add('ack', 'n-3'));
  await clock.advance(50);
  t.same(sent.at(-1)?.ids, ['n-3'], 'a new window after the frame went');
  (sent.at(-1) as Sent).resolve();
  await settle();
  t.equal(p3.state, 'resolved');
});

t.test('more than 100 ids: full frames go at once, the rest when the window closes', async (t) => {
  const { clock, sent, b } = setup(50);
  const ps = Array.from({ length: 250 }, (_, i) => b.add('ack', `n-${i}`));
  t.same(
    sent.map((s) => s.ids.length),
    [100, 100],
    'two full frames without waiting',
  );
  await clock.advance(50);
  t.same(
    sent.map((s) => s.ids.length),
    [100, 100, 50],
  );
  t.same(
    sent.flatMap((s) => s.ids),
    Array.from({ length: 250 }, (_, i) => `n-${i}`),
    'in the order issued',
  );
  for (const s of sent) s.resolve();
  await Promise.all(ps);
  t.equal(clock.pending, 0, 'no timer left');
});

t.test('a frame is bounded by the bytes of its ids too: 128-character ids split before 100', async (t) => {
  const { sent, b, clock } = setup(50);
  for (let i = 0; i < 100; i++) void b.add('ack', `${String(i).padStart(3, '0')}${'x'.repeat(125)}`);
  await clock.advance(50);
  const sizes = sent.map((s) => s.ids.length);
  t.same(sizes, [62, 38], '8192 bytes / 131 per id (128 + quotes + comma)');
  for (const s of sent) t.ok(JSON.stringify(s.ids).length <= DEFAULT_MAX_ID_BYTES + 1);
});

t.test('the same id twice in a window goes once; both calls settle with the frame', async (t) => {
  const { clock, sent, b } = setup(50);
  const a = track(b.add('ack', 'n-1'));
  const c = track(b.add('ack', 'n-1'));
  await clock.advance(50);
  t.same(sent[0]?.ids, ['n-1']);
  (sent[0] as Sent).resolve();
  await settle();
  t.same([a.state, c.state], ['resolved', 'resolved']);
});

t.test('window 0: calls of the same task still share a frame; flush() sends at once', async (t) => {
  const { clock, sent, b } = setup(0);
  void b.add('ack', 'a');
  void b.add('ack', 'b');
  await clock.advance(0);
  t.same(sent[0]?.ids, ['a', 'b']);
  const w = setup(1000);
  void w.b.add('mark_read', 'x');
  w.b.flush();
  t.same(w.sent[0]?.ids, ['x']);
  t.equal(w.clock.pending, 0);
});

t.test('a window that is not a number of ms >= 0 is refused', async (t) => {
  for (const windowMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) t.throws(() => setup(windowMs), /ackWindowMs/, String(windowMs));
});

import t from 'tap';
import { consume, newBudget, newRateWindow, type RateDecision, reconnectDelay, spend } from '../../dist/limits.js';

/** Runs `n` messages at time `now` and returns the decisions' kinds. */
function burst(w: ReturnType<typeof newRateWindow>, n: number, now: number, limit: number, windowMs: number): string[] {
  const kinds: string[] = [];
  for (let i = 0; i < n; i++) kinds.push(consume(w, now, limit, windowMs).kind);
  return kinds;
}

t.test('a new window starts at the given time with nothing counted', async (t) => {
  t.strictSame(newRateWindow(123.5), { start: 123.5, count: 0 });
});

t.test('messages up to the limit are allowed, the next ones rejected, and past twice the limit the connection closes', async (t) => {
  const rows: Array<[limit: number, want: string[]]> = [
    [1, ['allow', 'reject', 'close', 'close']],
    [2, ['allow', 'allow', 'reject', 'reject', 'close', 'close']],
    [3, ['allow', 'allow', 'allow', 'reject', 'reject', 'reject', 'close']],
  ];
  for (const [limit, want] of rows) {
    const w = newRateWindow(0);
    t.strictSame(burst(w, want.length, 10, limit, 1000), want, `limit ${limit}`);
  }
});

t.test('the hundredth message of a 100-per-window limit is allowed and the 101st rejected', async (t) => {
  const w = newRateWindow(0);
  const kinds = burst(w, 201, 0, 100, 60_000);
  t.equal(kinds.filter((k) => k === 'allow').length, 100);
  t.equal(kinds[99], 'allow');
  t.equal(kinds[100], 'reject');
  t.equal(kinds[199], 'reject');
  t.equal(kinds[200], 'close');
});

t.test('a rejection says how long until the window resets, at least 1 ms', async (t) => {
  const rows: Array<[start: number, now: number, windowMs: number, want: number]> = [
    [0, 0, 1000, 1000],
    [0, 250, 1000, 750],
    [0, 999, 1000, 1],
    [0, 999.9, 1000, 1],
    [0, 0.4, 1000, 1000],
    [1000.5, 1500, 1000, 501],
  ];
  for (const [start, now, windowMs, want] of rows) {
    const w = { start, count: 1 };
    const d: RateDecision = consume(w, now, 1, windowMs);
    t.strictSame(d, { kind: 'reject', retryAfterMs: want }, `start ${start}, now ${now}, window ${windowMs}`);
  }
});

t.test('the count resets once the window has passed', async (t) => {
  const w = newRateWindow(0);
  t.strictSame(burst(w, 3, 0, 2, 1000), ['allow', 'allow', 'reject']);
  t.equal(consume(w, 999, 2, 1000).kind, 'reject', 'still inside the window at 999 ms');
  t.equal(consume(w, 1000, 2, 1000).kind, 'allow', 'a new window at exactly 1000 ms');
  t.strictSame(w, { start: 1000, count: 1 });
  t.strictSame(burst(w, 2, 1500, 2, 1000), ['allow', 'reject']);
});

t.test('a closed connection gets a fresh window after the window passes', async (t) => {
  const w = newRateWindow(0);
  t.strictSame(burst(w, 4, 0, 1, 1000), ['allow', 'reject', 'close', 'close']);
  t.equal(consume(w, 5000, 1, 1000).kind, 'allow');
});

t.test('a clock going backwards starts a new window instead of blocking for a long time', async (t) => {
  const w = newRateWindow(10_000);
  t.strictSame(burst(w, 2, 10_000, 1, 1000), ['allow', 'reject']);
  const d = consume(w, 5_000, 1, 1000);
  t.equal(d.kind, 'allow', 'earlier than the window start: reset');
  t.strictSame(w, { start: 5_000, count: 1 });
  const r = consume(w, 5_100, 1, 1000);
  t.strictSame(r, { kind: 'reject', retryAfterMs: 900 }, 'retry time measured from the new start');
});

t.test('limit 0 disables limiting and leaves the window untouched', async (t) => {
  const w = newRateWindow(0);
  const kinds = burst(w, 10_000, 0, 0, 1000);
  t.ok(
    kinds.every((k) => k === 'allow'),
    '10000 messages allowed',
  );
  t.strictSame(w, { start: 0, count: 0 });
});

t.test('windows of different connections are independent', async (t) => {
  const a = newRateWindow(0);
  const b = newRateWindow(0);
  t.strictSame(burst(a, 3, 0, 1, 1000), ['allow', 'reject', 'close']);
  t.equal(consume(b, 0, 1, 1000).kind, 'allow');
});

t.test('the shared allow and close decisions cannot be altered by a caller', async (t) => {
  const w = newRateWindow(0);
  const allow = consume(w, 0, 5, 1000);
  t.ok(Object.isFrozen(allow));
  t.throws(() => {
    (allow as { kind: string }).kind = 'close';
  }, TypeError);
  t.equal(consume(w, 0, 5, 1000).kind, 'allow');
});

t.test('the Redis reconnect delay doubles from 50-100 ms to a cap of 250-500 ms, jittered', async (t) => {
  const rows: Array<[number, number, number]> = [
    // attempt, lowest (random 0), highest (random ~1)
    [1, 50, 100],
    [2, 100, 200],
    [3, 200, 400],
    [4, 250, 500],
    [5, 250, 500],
    [1000, 250, 500],
  ];
  for (const [attempt, low, high] of rows) {
    t.equal(reconnectDelay(attempt, 0), low, `attempt ${attempt}, no jitter`);
    t.equal(reconnectDelay(attempt, 0.999999), high, `attempt ${attempt}, full jitter`);
  }
  // Never more than 500 ms apart: with connect and re-subscribe, delivery resumes
  // within 1 s of Redis returning (test/integration/outage.test.ts measures it).
  for (let attempt = 1; attempt < 100; attempt++) t.ok(reconnectDelay(attempt, Math.random()) <= 500);
});

t.test('replay budget: spends what it holds, says when it will hold more, refuses what it never can', async (t) => {
  const cap = 600; // per minute: 10 a second
  const b = newBudget(cap, 0);
  t.same(spend(b, 500, 0, cap), { kind: 'ok' });
  t.same(spend(b, 100, 0, cap), { kind: 'ok' }, 'exactly the rest');
  t.same(spend(b, 50, 0, cap), { kind: 'later', retryAfterMs: 5000 }, 'empty: 50 entries take 5 s to come back');
  t.equal(b.tokens, 0, 'a refusal spends nothing');
  t.same(spend(b, 50, 5000, cap), { kind: 'ok' }, 'and 5 s later they are there');
  t.same(spend(b, 601, 5000, cap), { kind: 'never' }, 'more than the budget ever holds');
  t.same(spend(b, 1, 10 ** 9, cap), { kind: 'ok' });
  t.equal(b.tokens, cap - 1, 'refills to the cap, never past it');
  t.same(spend(b, 10 ** 9, 0, 0), { kind: 'ok' }, '0: no budget');
  const c = newBudget(cap, 1000);
  t.same(spend(c, cap, 500, cap), { kind: 'ok' }, 'a clock that goes back refills nothing and breaks nothing');
  t.same(spend(c, 1, 500, cap).kind, 'later');
});

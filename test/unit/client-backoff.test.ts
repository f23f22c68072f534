// The SDK's reconnection schedule (client/src/backoff.ts): exponential caps, full
// jitter within [0, cap], reset after a stable connection.
import t from 'tap';
import { backoffCap, createBackoff } from '../../client/dist/backoff.js';

const opts = { initialMs: 500, maxMs: 30_000, factor: 2 };

t.test('the cap grows by the factor per attempt and stops at maxMs', async (t) => {
  const rows: Array<[number, number]> = [
    [0, 500],
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [4, 8000],
    [5, 16_000],
    [6, 30_000],
    [7, 30_000],
    [1074, 30_000], // 2^1074 is Infinity in doubles: still the cap
    [-1, 500], // a negative attempt is attempt 0
  ];
  for (const [attempt, cap] of rows) t.equal(backoffCap(attempt, opts), cap, `attempt ${attempt}: cap ${cap}`);
  t.equal(backoffCap(3, { initialMs: 100, maxMs: 10_000, factor: 1.5 }), 337.5, 'a fractional factor');
  t.equal(backoffCap(9, { initialMs: 100, maxMs: 10_000, factor: 1 }), 100, 'factor 1: a constant cap');
  t.equal(backoffCap(5, { initialMs: 0, maxMs: 0, factor: 2 }), 0, 'all zero: always at once');
});

t.test('full jitter: each delay is random() times the cap, within [0, cap]', async (t) => {
  const randoms = [0, 0.5, 0.999_999, 1, 0.25, 0.1, 0.9, 0.5, 0.5];
  let i = 0;
  const b = createBackoff(opts, () => randoms[i++] as number);
  const delays = randoms.map(() => b.next());
  t.same(delays, [0, 500, 1999.998, 4000, 2000, 1600, 27_000, 15_000, 15_000]);
  t.equal(b.attempt, randoms.length);
});

t.test('a random() outside [0, 1) never leaves [0, cap]', async (t) => {
  for (const r of [-1, 1.5, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    const d = createBackoff(opts, () => r).next();
    t.ok(d >= 0 && d <= 500, `random ${r} gives ${d}`);
  }
});

t.test('with Math.random, a thousand delays all fall within their caps and are not all equal', async (t) => {
  const b = createBackoff({ initialMs: 100, maxMs: 1000, factor: 2 });
  const seen = new Set<number>();
  for (let n = 0; n < 1000; n++) {
    const cap = backoffCap(b.attempt, { initialMs: 100, maxMs: 1000, factor: 2 });
    const d = b.next();
    if (d < 0 || d > cap) t.fail(`delay ${d} outside [0, ${cap}] at attempt ${n}`);
    seen.add(d);
  }
  t.ok(seen.size > 900, 'jitter spreads the delays');
});

t.test('reset() starts the schedule over from the initial cap', async (t) => {
  const b = createBackoff(opts, () => 1);
  t.same([b.next(), b.next(), b.next()], [500, 1000, 2000]);
  b.reset();
  t.equal(b.attempt, 0);
  t.same([b.next(), b.next()], [500, 1000]);
});

t.test('invalid settings are refused at construction, naming the setting', async (t) => {
  const rows: Array<[Partial<typeof opts>, RegExp]> = [
    [{ initialMs: -1 }, /initialMs/],
    [{ initialMs: Number.NaN }, /initialMs/],
    [{ initialMs: Number.POSITIVE_INFINITY }, /initialMs/],
    [{ maxMs: 100 }, /maxMs/], // below initialMs
    [{ maxMs: Number.NaN }, /maxMs/],
    [{ factor: 0.5 }, /factor/],
    [{ factor: Number.NaN }, /factor/],
    [{ factor: Number.POSITIVE_INFINITY }, /factor/],
  ];
  for (const [bad, re] of rows) t.throws(() => createBackoff({ ...opts, ...bad }), re, JSON.stringify(bad));
});

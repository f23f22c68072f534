import t from 'tap';
import { createExpiryWheel } from '../../dist/expiry.js';

const T0 = 1_800_000_000_000; // a whole second, ms since the epoch

t.test('an item is due once its expiry second has passed, not before', async (t) => {
  const w = createExpiryWheel<string>(T0);
  w.add('a', T0 + 2000);
  t.strictSame(w.due(T0 + 1999), [], 'a millisecond early');
  t.strictSame(w.due(T0 + 2000), ['a'], 'at expiry');
  t.strictSame(w.due(T0 + 5000), [], 'handed out once');
  t.equal(w.size, 0);
});

t.test('a fractional expiry is rounded up to the next second: never early', async (t) => {
  const w = createExpiryWheel<string>(T0);
  w.add('a', T0 + 1500);
  t.strictSame(w.due(T0 + 1500), []);
  t.strictSame(w.due(T0 + 2000), ['a']);
});

t.test('due returns every second that passed since the last call', async (t) => {
  const w = createExpiryWheel<string>(T0);
  const rows: Array<[string, number]> = [
    ['a', 1000],
    ['b', 2000],
    ['c', 2000],
    ['d', 7000],
    ['e', 60_000],
  ];
  for (const [item, at] of rows) w.add(item, T0 + at);
  t.equal(w.size, 5);
  t.strictSame(w.due(T0 + 2500).sort(), ['a', 'b', 'c']);
  t.strictSame(w.due(T0 + 10_000), ['d']);
  t.equal(w.size, 1);
  t.strictSame(w.due(T0 + 60_000), ['e']);
});

t.test('a removed item is never due, and removing twice or removing a stranger is harmless', async (t) => {
  const w = createExpiryWheel<string>(T0);
  w.add('a', T0 + 1000);
  w.add('b', T0 + 1000);
  w.remove('a', T0 + 1000);
  w.remove('a', T0 + 1000);
  w.remove('nobody', T0 + 1000);
  w.remove('b', T0 + 9000); // wrong expiry: b stays
  t.equal(w.size, 1);
  t.strictSame(w.due(T0 + 1000), ['b']);
});

t.test('an item already expired when added is due at the next call', async (t) => {
  const w = createExpiryWheel<string>(T0 + 5000);
  w.add('late', T0 + 1000);
  t.equal(w.size, 1);
  t.strictSame(w.due(T0 + 5000), ['late'], 'even within the same second');
  t.equal(w.size, 0);
  t.strictSame(w.due(T0 + 6000), []);
});

t.test('an overdue item can be removed before it is handed out', async (t) => {
  const w = createExpiryWheel<string>(T0 + 5000);
  w.add('late', T0 + 1000);
  w.remove('late', T0 + 1000);
  t.equal(w.size, 0);
  t.strictSame(w.due(T0 + 6000), []);
});

t.test('moving an item (remove + add) follows the new expiry', async (t) => {
  const w = createExpiryWheel<string>(T0);
  w.add('a', T0 + 1000);
  w.remove('a', T0 + 1000);
  w.add('a', T0 + 3000);
  t.strictSame(w.due(T0 + 2000), []);
  t.strictSame(w.due(T0 + 3000), ['a']);
});

t.test('adding the same item twice at the same expiry counts it once', async (t) => {
  const w = createExpiryWheel<string>(T0);
  w.add('a', T0 + 1000);
  w.add('a', T0 + 1000);
  t.equal(w.size, 1);
  t.strictSame(w.due(T0 + 1000), ['a']);
});

t.test('a wall-clock jump of millennia walks occupied slots, not every second in between', async (t) => {
  const w = createExpiryWheel<number>(T0);
  for (let i = 0; i < 1000; i++) w.add(i, T0 + 1000 + i * 1000);
  // 10^12 one-second slots: a walk over each would never end within the test's timeout.
  const due = w.due(T0 + 1e15);
  t.equal(due.length, 1000);
  t.equal(w.size, 0);
});

t.test('100,000 items in 1,000 seconds come out exactly once each', async (t) => {
  const w = createExpiryWheel<number>(T0);
  for (let i = 0; i < 100_000; i++) w.add(i, T0 + 1 + (i % 1000) * 1000);
  const seen = new Set<number>();
  for (let now = T0; now <= T0 + 1_001_000; now += 250) for (const i of w.due(now)) seen.add(i);
  t.equal(seen.size, 100_000);
  t.equal(w.size, 0);
});

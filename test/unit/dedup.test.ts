import t from 'tap';
import { createDedupWindow } from '../../dist/dedup.js';

t.test('a key is new the first time and seen the second time within the window', async (t) => {
  const d = createDedupWindow({ windowMs: 1000, maxEntries: 10 });
  t.equal(d.seen('user:1\nn1', 0), false);
  t.equal(d.seen('user:1\nn1', 10), true);
  t.equal(d.seen('user:1\nn1', 999), true);
  t.equal(d.size, 1);
});

t.test('distinct keys, including hostile ones, are tracked separately', async (t) => {
  const d = createDedupWindow({ windowMs: 1000, maxEntries: 100 });
  const keys = [
    '',
    ' ',
    '__proto__',
    'constructor',
    'toString',
    'hasOwnProperty',
    'user:1\nn1',
    'user:2\nn1',
    'us\u0435r:1\nn1',
    'x'.repeat(100_000),
  ];
  for (const k of keys) t.equal(d.seen(k, 0), false, `${JSON.stringify(k.slice(0, 20))} is new`);
  for (const k of keys) t.equal(d.seen(k, 1), true, `${JSON.stringify(k.slice(0, 20))} is seen`);
  t.equal(d.size, keys.length);
});

t.test('a key expires exactly windowMs after it was first recorded', async (t) => {
  const d = createDedupWindow({ windowMs: 100, maxEntries: 10 });
  t.equal(d.seen('a', 0), false);
  t.equal(d.seen('a', 99.9), true, 'just inside the window');
  t.equal(d.seen('a', 100), false, 'at windowMs it is new again');
  t.equal(d.seen('a', 150), true, 'and recorded afresh');
  t.equal(d.seen('a', 199.9), true, 'the new window runs from 100');
  t.equal(d.seen('a', 200), false, 'and ends at 200');
});

t.test('seeing a key again does not extend its window', async (t) => {
  const d = createDedupWindow({ windowMs: 100, maxEntries: 10 });
  d.seen('a', 0);
  d.seen('a', 90);
  t.equal(d.seen('a', 100), false);
});

t.test('expired keys are dropped so the size follows the window', async (t) => {
  const d = createDedupWindow({ windowMs: 100, maxEntries: 1000 });
  for (let i = 0; i < 50; i++) d.seen(`k${i}`, i);
  t.equal(d.size, 50);
  d.seen('late', 130);
  t.equal(d.size, 20, 'k0-k30 expired by 130 ms; k31-k49 and "late" remain');
  d.seen('later', 10_000);
  t.equal(d.size, 1);
});

t.test('past maxEntries the oldest keys are evicted first', async (t) => {
  const d = createDedupWindow({ windowMs: 60_000, maxEntries: 3 });
  d.seen('a', 0);
  d.seen('b', 1);
  d.seen('c', 2);
  t.equal(d.seen('d', 3), false);
  t.equal(d.size, 3);
  t.equal(d.seen('d', 4), true, 'the newest is kept');
  t.equal(d.seen('c', 5), true, 'the third is kept');
  t.equal(d.seen('a', 6), false, 'the oldest was evicted, so it is new again');
});

t.test('a key still held in a full window is reported as seen', async (t) => {
  // The window holds maxEntries keys; looking one up must not evict it.
  const d = createDedupWindow({ windowMs: 60_000, maxEntries: 3 });
  d.seen('a', 0);
  d.seen('b', 1);
  d.seen('c', 2);
  t.equal(d.size, 3);
  t.equal(d.seen('a', 3), true, 'a is one of the 3 keys held');
  t.equal(d.seen('b', 4), true, 'b is one of the 3 keys held');
  t.equal(d.size, 3);
});

t.test('windowMs 0 disables deduplication and stores nothing', async (t) => {
  const d = createDedupWindow({ windowMs: 0, maxEntries: 10 });
  for (let i = 0; i < 5; i++) t.equal(d.seen('a', i), false, `call ${i}`);
  t.equal(d.size, 0);
});

t.test('the size stays bounded by maxEntries under 100k distinct inserts', async (t) => {
  const d = createDedupWindow({ windowMs: 3_600_000, maxEntries: 1000 });
  let max = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < 100_000; i++) {
    d.seen(`user:${i}\nid-${i}`, i / 100);
    if (d.size > max) max = d.size;
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  t.equal(max, 1000, 'never above maxEntries');
  t.equal(d.size, 1000);
  t.equal(d.seen('user:99999\nid-99999', 1000), true, 'the latest key is still held');
  t.equal(d.seen('user:0\nid-0', 1000), false, 'the first key was evicted');
  t.ok(ms < 2000, `100k inserts took ${ms.toFixed(0)} ms`);
});

t.test('the size stays bounded by the window under 100k inserts over time', async (t) => {
  const d = createDedupWindow({ windowMs: 100, maxEntries: 1_000_000 });
  let max = 0;
  for (let i = 0; i < 100_000; i++) {
    d.seen(`k${i}`, i); // one key per ms
    if (d.size > max) max = d.size;
  }
  t.ok(max <= 101, `at most one window's worth of keys (max ${max})`);
});

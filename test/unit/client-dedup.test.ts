// The SDK's bounded window of (topic, notification id) pairs (client/src/dedup.ts).
import t from 'tap';
import { createDedupWindow } from '../../client/dist/dedup.js';

t.test('an id is new the first time and seen every time after', async (t) => {
  const d = createDedupWindow(10);
  t.equal(d.seen('org:a', 'n-1'), false);
  t.equal(d.seen('org:a', 'n-1'), true);
  t.equal(d.seen('org:a', 'n-1'), true);
  t.equal(d.size, 1);
});

t.test('distinct ids, hostile ones included, are tracked separately', async (t) => {
  const ids = [
    '',
    ' ',
    '__proto__',
    'constructor',
    'toString',
    'hasOwnProperty',
    'n-1',
    'N-1',
    'n\u200b-1',
    'n-\u0031',
    'x'.repeat(100_000),
  ];
  const d = createDedupWindow(100);
  for (const id of ids.slice(0, -2)) t.equal(d.seen('org:a', id), false, `${JSON.stringify(id.slice(0, 20))} is new`);
  t.equal(d.seen('org:a', 'n-\u0031'), true, 'an escape of the same characters is the same id');
  t.equal(d.seen('org:a', 'x'.repeat(100_000)), false);
  for (const id of ids) t.equal(d.seen('org:a', id), true, `${JSON.stringify(id.slice(0, 20))} is seen`);
  t.equal(d.size, ids.length - 1);
});

t.test('the window holds at most its capacity, evicting the oldest first', async (t) => {
  const d = createDedupWindow(3);
  for (const id of ['a', 'b', 'c']) d.seen('org:a', id);
  t.equal(d.size, 3);
  t.equal(d.seen('org:a', 'd'), false, 'a fourth id evicts a');
  t.equal(d.size, 3);
  t.equal(d.seen('org:a', 'b'), true);
  t.equal(d.seen('org:a', 'c'), true);
  t.equal(d.seen('org:a', 'd'), true);
  t.equal(d.seen('org:a', 'a'), false, 'a was evicted: new again (and now evicts b)');
  t.equal(d.seen('org:a', 'b'), false, 'b went next');
});

t.test('seeing an id again does not make it younger (first-seen order)', async (t) => {
  const d = createDedupWindow(2);
  d.seen('org:a', 'a');
  d.seen('org:a', 'b');
  for (let i = 0; i < 100; i++) d.seen('org:a', 'a'); // a flood of repeats
  d.seen('org:a', 'c'); // evicts a, the oldest by first sight
  t.equal(d.seen('org:a', 'b'), true);
  t.equal(d.seen('org:a', 'a'), false);
});

t.test('a long stream stays bounded and remembers exactly the last capacity ids', async (t) => {
  const d = createDedupWindow(1000);
  for (let i = 0; i < 100_000; i++) d.seen('org:a', `n-${i}`);
  t.equal(d.size, 1000);
  t.equal(d.seen('org:a', 'n-98999'), false, 'the 1001st most recent is forgotten');
  t.equal(d.seen('org:a', 'n-99999'), true, 'the most recent is remembered');
  t.equal(d.seen('org:a', 'n-99001'), true, 'and so is the oldest still in the window');
});

t.test('capacity 1 remembers only the last id; clear() forgets everything', async (t) => {
  const d = createDedupWindow(1);
  t.equal(d.seen('org:a', 'a'), false);
  t.equal(d.seen('org:a', 'a'), true);
  t.equal(d.seen('org:a', 'b'), false);
  t.equal(d.seen('org:a', 'a'), false);
  d.clear();
  t.equal(d.size, 0);
  t.equal(d.seen('org:a', 'a'), false);
});

t.test('a capacity that is not a positive integer is refused', async (t) => {
  for (const c of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) t.throws(() => createDedupWindow(c), /dedup window/, String(c));
});

t.test('the same id on two topics is two notifications; the pair is what repeats', async (t) => {
  const d = createDedupWindow(10);
  t.equal(d.seen('org:a', 'order-1'), false);
  t.equal(d.seen('org:b', 'order-1'), false, 'same id, another topic: new');
  t.equal(d.seen('org:a', 'order-1'), true);
  t.equal(d.seen('org:b', 'order-1'), true);
  t.equal(d.size, 2);
});

t.test('topic and id cannot run into each other: no two pairs share a key', async (t) => {
  const rows: Array<[string, string]> = [
    ['org:a', 'b c'],
    ['org:a b', 'c'], // not a topic (no space in the grammar): still kept apart
    ['5:org:a', 'x'],
    ['5', ':org:ax'],
    ['org:ab', 'c'],
    ['org:a', 'bc'],
    ['org', ':a bc'],
    ['__proto__', 'x'],
    ['', 'org:a x'],
  ];
  const d = createDedupWindow(100);
  for (const [topic, id] of rows) t.equal(d.seen(topic, id), false, `${topic} / ${id} is new`);
  t.equal(d.size, rows.length);
});

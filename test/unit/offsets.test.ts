// Offsets (`<ms>-<seq>` stream ids) as the gateway orders them, with hostile rows.
import t from 'tap';
import { compareOffsets, isAfter, isOffset, offsetMs } from '../../dist/offsets.js';

t.test('offsets compare as (ms, seq) numbers', async (t) => {
  const rows: Array<[string, string, number]> = [
    ['999-0', '1000-0', -1], // as strings, '999-0' sorts after
    ['5-10', '5-9', 1],
    ['7-3', '7-3', 0],
    ['1795450121095-2', '1795450121096-0', -1],
    ['999999999999999-1', '999999999999999-0', 1],
    ['0-0', '0-1', -1],
  ];
  for (const [a, b, sign] of rows) {
    t.equal(Math.sign(compareOffsets(a, b)), sign, `${a} vs ${b}`);
    t.equal(isAfter(a, b), sign > 0, `${a} after ${b}: ${sign > 0}`);
  }
});

t.test('isOffset accepts what Redis and clients send and nothing else', async (t) => {
  for (const good of ['0-0', '1-1', '1795459742477-0', '999999999999999-999999999999999']) t.ok(isOffset(good), good);
  for (const bad of ['', '1', '-1', '1-', '1-2-3', 'a-1', '1.5-0', ' 1-0', '1-0 ', '1234567890123456-0', '+1-0', '1-0\n', '١-٠', '0x1-0']) {
    t.notOk(isOffset(bad), JSON.stringify(bad));
  }
});

t.test('offsetMs is the entry time', async (t) => {
  t.equal(offsetMs('1795459742477-3'), 1795459742477);
  t.equal(offsetMs('0-0'), 0);
});

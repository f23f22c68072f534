// Offsets (`<ms>-<seq>` stream ids) as the gateway takes them apart, orders them and
// builds them (src/offsets.ts), with hostile rows.
import t from 'tap';
import { compareOffsets, firstOffsetAt, isAfter, isAtOrAfter, isOffset, offsetMs, parseOffset } from '../../dist/offsets.js';

/** What is not an offset: every function below refuses or answers "not a time" for it. */
const HOSTILE = [
  '',
  '-',
  '1',
  '-1',
  '1-',
  '-0',
  '1-2-3',
  '1--2',
  'a-1',
  '1-b',
  '1.5-0',
  '1e3-0',
  '0x1-0',
  '+1-0',
  ' 1-0',
  '1-0 ',
  '1 -0',
  '\t1-0',
  '1-0\n',
  '١-٠', // Arabic-Indic digits: \d in some engines, never in a stream id
  '１-０', // fullwidth digits
  '1234567890123456-0', // 16 digits: past what a double holds exactly
  '0-1234567890123456',
  '99999999999999999999-0',
  'Infinity-0',
  'NaN-0',
];

t.test('offsets compare as (ms, seq) numbers', async (t) => {
  const rows: Array<[string, string, number]> = [
    ['999-0', '1000-0', -1], // as strings, '999-0' sorts after
    ['5-10', '5-9', 1],
    ['7-3', '7-3', 0],
    ['1795450121095-2', '1795450121096-0', -1],
    ['999999999999999-1', '999999999999999-0', 1],
    ['999999999999999-999999999999999', '999999999999998-999999999999999', 1],
    ['0-0', '0-1', -1],
    ['0-0', '0-0', 0],
    ['007-1', '7-1', 0], // leading zeros: the same position (never from Redis, possible from a client)
    ['010-0', '9-0', 1], // as strings, '010-0' sorts before '9-0'
    ['1-05', '1-4', 1],
    ['9-10', '10-1', -1], // one length, the dash elsewhere: as strings, '9-10' sorts after
    ['1795459742477-10', '1795459742478-1', -1],
    ['1795459742477-10', '1795459742477-9', 1],
  ];
  for (const [a, b, sign] of rows) {
    t.equal(Math.sign(compareOffsets(a, b)), sign, `${a} vs ${b}`);
    t.equal(Math.sign(compareOffsets(b, a)), -sign, `${b} vs ${a}`);
    t.equal(isAfter(a, b), sign > 0, `${a} after ${b}: ${sign > 0}`);
  }
});

t.test('isOffset accepts what Redis and clients send and nothing else', async (t) => {
  for (const good of ['0-0', '1-1', '00-00', '1795459742477-0', '999999999999999-999999999999999']) t.ok(isOffset(good), good);
  for (const bad of HOSTILE) t.notOk(isOffset(bad), JSON.stringify(bad));
});

t.test('what is not an offset is refused, not misread', async (t) => {
  for (const bad of HOSTILE) {
    t.equal(parseOffset(bad), undefined, `parseOffset ${JSON.stringify(bad)}`);
    t.ok(Number.isNaN(offsetMs(bad)), `offsetMs ${JSON.stringify(bad)} is NaN`);
    t.throws(() => compareOffsets(bad, '1-0'), RangeError, `compareOffsets ${JSON.stringify(bad)}`);
    t.throws(() => compareOffsets('1-0', bad), RangeError, `compareOffsets against ${JSON.stringify(bad)}`);
    t.notOk(isAtOrAfter(bad, 0), `${JSON.stringify(bad)} is at no time`);
  }
});

t.test('offsetMs is the entry time', async (t) => {
  const rows: Array<[string, number]> = [
    ['1795459742477-3', 1795459742477],
    ['0-0', 0],
    ['0-999999999999999', 0],
    ['007-1', 7],
    ['999999999999999-0', 999_999_999_999_999],
  ];
  for (const [offset, ms] of rows) t.equal(offsetMs(offset), ms, offset);
});

t.test('isAtOrAfter: the entry was recorded at or after a time, for any time', async (t) => {
  const rows: Array<[string, number, boolean]> = [
    ['1000-0', 1000, true],
    ['1000-5', 1000, true],
    ['999-999', 1000, false],
    ['1001-0', 1000, true],
    ['0-0', 0, true],
    ['0-0', -5, true],
    ['5-0', 4.5, true],
    ['4-9', 4.5, false],
    ['999999999999999-0', Number.MAX_SAFE_INTEGER, false], // a time no offset can spell
    ['1-0', Number.NaN, false],
  ];
  for (const [offset, ms, want] of rows) t.equal(isAtOrAfter(offset, ms), want, `${offset} at or after ${ms}`);
});

t.test('firstOffsetAt: where a range from a time starts', async (t) => {
  const rows: Array<[number, string]> = [
    [0, '0-0'],
    [1795459742477, '1795459742477-0'],
    [-2000, '0-0'], // before any entry: the beginning
    [-0, '0-0'],
    [-0.5, '0-0'],
    [1.2, '2-0'], // entries at ms 1 are before 1.2
    [Number.MAX_SAFE_INTEGER, '9007199254740991-0'], // Redis takes it (64-bit ms), though no offset here spells it
  ];
  for (const [ms, want] of rows) t.equal(firstOffsetAt(ms), want, String(ms));
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.MAX_SAFE_INTEGER + 2]) {
    t.throws(() => firstOffsetAt(bad), RangeError, String(bad));
  }
  t.ok(isAtOrAfter(firstOffsetAt(1234), 1234), 'the first offset at a time is at that time');
  t.equal(compareOffsets(firstOffsetAt(1234), '1233-999999999999999'), 1, 'and after every entry before it');
});

// The bounded refusal log is pure: a table of refusals in, lines and summaries out.
import t from 'tap';
import { createRefusalLog, LINES_PER_REASON } from '../../dist/refusals.js';

t.test('per reason, the first LINES_PER_REASON refusals of an interval get a line and the rest are counted', async (t) => {
  const log = createRefusalLog(3);
  const own = ['a', 'a', 'a', 'a', 'a', 'b', 'a', 'b'].map((r) => log.note(r));
  t.strictSame(own, [true, true, true, false, false, true, false, true]);
  t.strictSame(log.flush(), { refused: { a: 6, b: 2 }, suppressed: 3 }, 'the summary counts every refusal per reason');
});

t.test('an interval where every refusal had its own line needs no summary', async (t) => {
  const log = createRefusalLog(2);
  t.ok(log.note('a') && log.note('a') && log.note('b'));
  t.equal(log.flush(), undefined);
});

t.test('flush starts a new interval: lines are allowed again and counts restart', async (t) => {
  const log = createRefusalLog(1);
  t.equal(log.note('a'), true);
  t.equal(log.note('a'), false);
  t.strictSame(log.flush(), { refused: { a: 2 }, suppressed: 1 });
  t.equal(log.note('a'), true, 'a line again in the next interval');
  t.equal(log.flush(), undefined);
  t.equal(log.flush(), undefined, 'an empty interval has no summary');
});

t.test('a flood of 100,000 refusals of one reason gives LINES_PER_REASON lines and one summary', async (t) => {
  const log = createRefusalLog();
  let lines = 0;
  for (let i = 0; i < 100_000; i++) if (log.note('invalid_signature')) lines++;
  t.equal(lines, LINES_PER_REASON);
  t.strictSame(log.flush(), { refused: { invalid_signature: 100_000 }, suppressed: 100_000 - LINES_PER_REASON });
});

t.test('a reason named like an Object.prototype member is counted like any other', async (t) => {
  const log = createRefusalLog(1);
  log.note('__proto__');
  log.note('__proto__');
  log.note('constructor');
  const s = log.flush();
  t.equal(s?.suppressed, 1);
  t.equal(Object.getOwnPropertyDescriptor(s?.refused ?? {}, '__proto__')?.value, 2, '__proto__ is an own count, not the prototype');
  t.equal(s?.refused['constructor'], 1);
});

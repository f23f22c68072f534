// The SDK's pure recovery parts (client/src/resume.ts): offsets compared as numbers,
// the per-topic positions, the resume points chosen on a reconnect, and the frames
// built from them (chunked, and each accepted by the gateway's own schema).
import fc from 'fast-check';
import t from 'tap';
import { compareOffsets, isOffset, parseOffset } from '../../client/dist/index.js';
import {
  MAX_RESUME_TOPICS,
  RESUME_MARGIN_MS,
  RESUME_OFFSET_MAX_AGE_MS,
  type ResumePoint,
  ResumeState,
  resumeFrames,
} from '../../client/dist/resume.js';
import { compareOffsets as gatewayCompareOffsets } from '../../dist/offsets.js';
import { decodeClientFrame } from '../../dist/protocol.js';

t.test('offsets are (ms, seq) numbers, not strings', async (t) => {
  t.ok(compareOffsets('999-0', '1000-0') < 0, "'999-0' is before '1000-0' (a string comparison says after)");
  t.ok('999-0' > '1000-0', 'as strings they sort the wrong way');
  t.ok(compareOffsets('5-10', '5-9') > 0, 'seq 10 after seq 9');
  t.ok(compareOffsets('1795450121095-2', '1795450121096-0') < 0, 'ms first, then seq');
  t.equal(compareOffsets('7-3', '7-3'), 0);
  t.same(parseOffset('999999999999999-999999999999999'), [999_999_999_999_999, 999_999_999_999_999], '15 digits stay exact');
  t.ok(compareOffsets('999999999999999-1', '999999999999999-0') > 0, 'exact at 15 digits');
  t.same(['1000-0', '999-5', '999-10', '10000-0', '1000-1'].sort(compareOffsets), ['999-5', '999-10', '1000-0', '1000-1', '10000-0']);
  for (const bad of ['', '1', '-1', '1-', '1-2-3', 'a-1', '1.5-0', ' 1-0', '1-0 ', '1234567890123456-0', '+1-0']) {
    t.notOk(isOffset(bad), JSON.stringify(bad));
    t.equal(parseOffset(bad), undefined, JSON.stringify(bad));
    t.throws(() => compareOffsets(bad, '1-0'), RangeError);
  }
});

t.test('the SDK orders offsets exactly as the gateway does', async (t) => {
  const offset = fc
    .tuple(fc.integer({ min: 0, max: 10 ** 15 - 1 }), fc.integer({ min: 0, max: 10_000 }))
    .map(([ms, seq]) => `${ms}-${seq}`);
  fc.assert(fc.property(offset, offset, (a, b) => Math.sign(compareOffsets(a, b)) === Math.sign(gatewayCompareOffsets(a, b))));
  t.pass('same sign for every pair tried');
});

t.test('resume frames: at most 256 topics each, in order, one epoch, each accepted by the gateway schema', async (t) => {
  t.equal(MAX_RESUME_TOPICS, 256);
  const points: Array<[string, ResumePoint]> = Array.from({ length: 600 }, (_, i) => [
    `org:t${i}`,
    i % 2 === 0 ? { offset: `${1000 + i}-0` } : { since: i },
  ]);
  const frames = resumeFrames('18a2f3c4b5d6e7', points);
  t.same(
    frames.map((f) => Object.keys(f.topics).length),
    [256, 256, 88],
  );
  t.ok(frames.every((f) => f.type === 'resume' && f.epoch === '18a2f3c4b5d6e7'));
  t.same(
    frames.flatMap((f) => Object.entries(f.topics)),
    points,
    'every topic once, in order, with its point',
  );
  for (const f of frames) {
    const decoded = decodeClientFrame(JSON.stringify({ ...f, id: 1 }));
    t.equal(decoded.kind, 'frame', `a frame of ${Object.keys(f.topics).length} topics passes the gateway schema`);
  }
  t.same(resumeFrames('e', points.slice(0, 256)).length, 1, 'exactly 256: one frame');
  t.same(
    resumeFrames('e', points.slice(0, 257)).map((f) => Object.keys(f.topics).length),
    [256, 1],
  );
  t.same(resumeFrames('e', []), [], 'no topics, no frame');
  t.same(
    resumeFrames('e', points.slice(0, 5), 2).map((f) => Object.keys(f.topics)),
    [['org:t0', 'org:t1'], ['org:t2', 'org:t3'], ['org:t4']],
  );
  t.throws(() => resumeFrames('e', points, 0), RangeError);
  // 257 topics in one frame is what the gateway refuses:
  const tooMany = { type: 'resume', epoch: 'e', topics: Object.fromEntries(points.slice(0, 257)), id: 1 };
  t.equal(decodeClientFrame(JSON.stringify(tooMany)).kind, 'invalid', 'the gateway refuses 257');
});

t.test('a topic named __proto__ is a plain key of the frame, not a prototype', async (t) => {
  const [f] = resumeFrames('e', [
    ['__proto__', { since: 5 }],
    ['system', { since: 6 }],
  ]);
  t.same(Object.keys(f?.topics ?? {}), ['__proto__', 'system']);
  t.equal(JSON.stringify(f), '{"type":"resume","epoch":"e","topics":{"__proto__":{"since":5},"system":{"since":6}}}');
});

t.test('positions: the highest offset per topic, compared as numbers; another epoch replaces it', async (t) => {
  const r = new ResumeState();
  t.equal(r.epoch, undefined);
  t.ok(r.observe('user:a', '999-0', 'e1'));
  t.ok(r.observe('user:a', '1000-0', 'e1'));
  t.ok(r.observe('user:a', '998-7', 'e1'), 'an older one (a replay) is taken in, but does not move the position back');
  t.same(r.position('user:a'), { offset: '1000-0', epoch: 'e1' });
  t.ok(r.observe('user:a', '1000-1', 'e1'));
  t.same(r.position('user:a'), { offset: '1000-1', epoch: 'e1' });
  t.notOk(r.observe('user:a', 'garbage', 'e1'), 'not an offset: ignored');
  t.same(r.position('user:a'), { offset: '1000-1', epoch: 'e1' });
  t.equal(r.epoch, 'e1', 'the epoch comes from notifications too');
  t.ok(r.observe('user:a', '5-0', 'e2'));
  t.same(r.position('user:a'), { offset: '5-0', epoch: 'e2' }, 'a new dataset: its offsets start over');
  t.equal(r.epoch, 'e2');
  t.equal(r.position('user:b'), undefined);
  r.noteEpoch('e3');
  t.equal(r.epoch, 'e3');
});

const NOW = 1_795_450_200_000;

t.test('plan: the offset while it is recent, else since = what the last connection covered, less the margin', async (t) => {
  const r = new ResumeState();
  t.equal(r.plan(['user:a'], { coveredUntil: NOW, now: NOW }), undefined, 'no epoch known: nothing to resume');
  t.same([...r.pending], [], 'and nothing pending');
  r.observe('user:a', `${NOW - 5000}-3`, 'e1'); // 5 s old
  r.observe('org:old', `${NOW - RESUME_OFFSET_MAX_AGE_MS - 1}-0`, 'e1'); // older than the limit
  r.observe('org:edge', `${NOW - RESUME_OFFSET_MAX_AGE_MS}-0`, 'e1'); // exactly at it
  const plan = r.plan(['user:a', 'org:old', 'org:edge', 'system'], { coveredUntil: NOW - 1234.5, now: NOW });
  t.equal(plan?.epoch, 'e1');
  t.same(Object.fromEntries(plan?.points ?? []), {
    'user:a': { offset: `${NOW - 5000}-3` },
    'org:old': { since: Math.floor(NOW - 1234.5 - RESUME_MARGIN_MS) },
    'org:edge': { offset: `${NOW - RESUME_OFFSET_MAX_AGE_MS}-0` },
    system: { since: Math.floor(NOW - 1234.5 - RESUME_MARGIN_MS) },
  });
  t.equal(RESUME_MARGIN_MS, 2000);
});

t.test('plan: a position of another epoch than the plan resumes by time; since never goes below 0', async (t) => {
  const r = new ResumeState();
  r.observe('user:a', `${NOW}-0`, 'e1');
  r.noteEpoch('e2'); // e.g. a notification on another topic, or a connected frame, named a newer dataset
  const plan = r.plan(['user:a'], { coveredUntil: 500, now: NOW, marginMs: 2000 });
  t.same(plan, { epoch: 'e2', points: new Map([['user:a', { since: 0 }]]), lost: [] });
});

t.test('plan: unanswered points are sent again unchanged, with their epoch, even after newer notifications', async (t) => {
  const r = new ResumeState();
  r.observe('user:a', `${NOW - 100}-0`, 'e1');
  const first = r.plan(['user:a', 'system'], { coveredUntil: NOW - 50, now: NOW });
  t.same(Object.fromEntries(first?.points ?? []), { 'user:a': { offset: `${NOW - 100}-0` }, system: { since: NOW - 2050 } });
  // The next connection delivers newer notifications (another epoch, even), then drops before the answer.
  r.observe('user:a', `${NOW + 10_000}-0`, 'e2');
  r.observe('org:new', `${NOW + 10_000}-1`, 'e2');
  const second = r.plan(['user:a', 'system', 'org:new'], { coveredUntil: NOW + 20_000, now: NOW + 30_000 });
  t.equal(second?.epoch, 'e1', 'the epoch the pending points were sent with');
  t.same(Object.fromEntries(second?.points ?? []), {
    'user:a': { offset: `${NOW - 100}-0` },
    system: { since: NOW - 2050 },
    'org:new': { since: NOW + 18_000 }, // its position is of e2, not the plan's e1
  });
  r.resolved('user:a', true);
  r.resolved('system', true);
  r.resolved('org:new', true);
  t.same([...r.pending], [], 'all answered');
  const third = r.plan(['user:a', 'system', 'org:new'], { coveredUntil: NOW + 40_000, now: NOW + 40_000 });
  t.equal(third?.epoch, 'e2', 'nothing pending: the latest epoch');
  t.same(Object.fromEntries(third?.points ?? []), {
    'user:a': { offset: `${NOW + 10_000}-0` },
    system: { since: NOW + 38_000 },
    'org:new': { offset: `${NOW + 10_000}-1` },
  });
});

t.test('resolved: recovered keeps the position; not recovered forgets it (the next resume goes by time)', async (t) => {
  const r = new ResumeState();
  r.observe('user:a', `${NOW}-0`, 'e1');
  r.observe('org:b', `${NOW}-1`, 'e1');
  r.plan(['user:a', 'org:b'], { coveredUntil: NOW, now: NOW });
  t.same([...r.pending.keys()], ['user:a', 'org:b']);
  r.resolved('user:a', true);
  r.resolved('org:b', false);
  r.resolved('org:unknown', false); // a topic not held: nothing to do
  t.same(r.position('user:a'), { offset: `${NOW}-0`, epoch: 'e1' });
  t.equal(r.position('org:b'), undefined);
  const plan = r.plan(['user:a', 'org:b'], { coveredUntil: NOW + 1000, now: NOW + 1000 });
  t.same(Object.fromEntries(plan?.points ?? []), { 'user:a': { offset: `${NOW}-0` }, 'org:b': { since: NOW - 1000 } });
});

t.test('topics not held any more are forgotten; restart drops positions and pending points but keeps the epoch', async (t) => {
  const r = new ResumeState();
  r.observe('user:a', `${NOW}-0`, 'e1');
  r.observe('org:gone', `${NOW}-0`, 'e1');
  r.plan(['user:a', 'org:gone'], { coveredUntil: NOW, now: NOW });
  const plan = r.plan(['user:a'], { coveredUntil: NOW, now: NOW });
  t.same([...(plan?.points.keys() ?? [])], ['user:a']);
  t.equal(r.position('org:gone'), undefined);
  t.same([...r.pending.keys()], ['user:a']);
  r.forget('user:a');
  t.same([...r.pending], []);
  t.equal(r.position('user:a'), undefined);
  r.observe('user:a', `${NOW}-5`, 'e1');
  r.plan(['user:a'], { coveredUntil: NOW, now: NOW });
  r.restart();
  t.same([...r.pending], []);
  t.equal(r.position('user:a'), undefined);
  t.equal(r.epoch, 'e1');
});

t.test('first connection (no coveredUntil): given positions of any age by offset, `since` for the rest, other epochs lost', async (t) => {
  const r = new ResumeState();
  t.ok(r.seed('org:old', { offset: '1000-0', epoch: 'e1' }), 'a day-old position is taken');
  t.ok(r.seed('org:gone', { offset: `${NOW}-0`, epoch: 'e0' }));
  t.notOk(r.seed('org:bad', { offset: '12-x', epoch: 'e1' }), 'not an offset: refused');
  t.notOk(r.seed('org:bad', { offset: '1-0', epoch: '' }), 'no epoch: refused');
  r.noteEpoch('e1');
  const plan = r.plan(['org:old', 'org:gone', 'org:new', 'org:bad'], { coveredUntil: undefined, since: NOW - 5000.7, now: NOW });
  t.same(plan, {
    epoch: 'e1',
    points: new Map<string, ResumePoint>([
      ['org:old', { offset: '1000-0' }],
      ['org:new', { since: NOW - 5001 }],
      ['org:bad', { since: NOW - 5001 }],
    ]),
    lost: ['org:gone'],
  });
  t.equal(r.position('org:gone'), undefined, 'a lost position is forgotten');
  const none = new ResumeState();
  none.noteEpoch('e1');
  t.same(none.plan(['org:a'], { coveredUntil: undefined, now: NOW }), { epoch: 'e1', points: new Map(), lost: [] }, 'no since: nothing');
});

t.test('seed keeps the further position of one epoch, and never replaces one of another epoch', async (t) => {
  const r = new ResumeState();
  r.seed('org:a', { offset: '1000-5', epoch: 'e1' });
  r.seed('org:a', { offset: '999-9', epoch: 'e1' });
  t.same(r.position('org:a'), { offset: '1000-5', epoch: 'e1' }, 'an older one is ignored');
  r.seed('org:a', { offset: '1000-10', epoch: 'e1' });
  t.same(r.position('org:a'), { offset: '1000-10', epoch: 'e1' }, 'compared as numbers, not strings');
  r.seed('org:a', { offset: '5000-0', epoch: 'e2' });
  t.same(r.position('org:a'), { offset: '1000-10', epoch: 'e1' }, 'another epoch: the first stays');
});

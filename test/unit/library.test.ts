// The deployment's function library: its settings marker, what a gateway does with the
// libraries Redis holds (planLibrary), and the announcement format both sides share.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { names } from '../../dist/keys.js';
import { decodeAnnouncement, functionLibrary, type LibrarySettings, librarySettings, planLibrary, settingsOf } from '../../dist/library.js';

const ours = librarySettings('herald', 'notifications', { size: 100, ttlMs: 300_000, recoveryMax: 300 }, 2);
const lib = (s: LibrarySettings) => ({ name: s.namespace, code: functionLibrary(s) });

t.test('the library is named after the namespace and names its settings in a marker line', async (t) => {
  const code = functionLibrary(ours);
  t.match(code, /^#!lua name=herald\n/);
  t.same(settingsOf(code), ours);
  const acme = functionLibrary({ ...ours, namespace: 'acme', prefix: 'acme-notifications' });
  t.match(acme, /^#!lua name=acme\n/);
  t.ok(acme.includes('\nlocal NS = "acme"\n'), 'the functions are named after NS: acme_publish, ...');
  t.notOk(/herald_|"herald"|'herald'/.test(acme), 'nothing of another namespace');
  for (const fn of ['publish', 'record', 'epoch', 'lease', 'release']) {
    t.ok(acme.includes(`redis.register_function(NS .. '_${fn}',`), `<ns>_${fn} is registered`);
  }
  t.ok(functionLibrary({ ...ours, historySize: 7 }).includes('\nlocal SIZE = 7\n'), 'settings become Lua locals');
});

t.test('the library is a preamble of settings, then src/library.lua as it stands', async (t) => {
  const lua = readFileSync(new URL('../../src/library.lua', import.meta.url), 'utf8');
  const code = functionLibrary(ours);
  t.ok(code.endsWith(lua), 'dist/library.lua is src/library.lua, after the preamble');
  const preamble = code.slice(0, code.length - lua.length);
  const defined = new Set([...preamble.matchAll(/^local ([A-Z_]+) = /gm)].map((m) => m[1]));
  // Every constant the Lua reads (an upper-case name outside strings and comments) is
  // one the preamble sets: a setting added on one side only fails here, not in Redis.
  const bare = lua.replace(/--.*$/gm, '').replace(/'[^'\n]*'|"[^"\n]*"/g, "''");
  const used = new Set([...bare.matchAll(/\b[A-Z][A-Z_]+\b/g)].map((m) => m[0]));
  t.same([...used].sort(), [...defined].sort(), "the constants library.lua reads are exactly the preamble's");
});

t.test('settingsOf: a library without a readable marker has none', async (t) => {
  for (const code of [
    '',
    '#!lua name=herald\nredis.register_function(...)',
    '#!lua name=herald\n-- herald-library {not json\n',
    '#!lua name=x\n-- herald-library {"namespace":1}\n',
  ]) {
    t.equal(settingsOf(code), undefined, JSON.stringify(code.slice(0, 40)));
  }
});

t.test('planLibrary: load, keep, replace or refuse', async (t) => {
  const rows: Array<[string, Array<{ name: string; code: string }>, ReturnType<typeof planLibrary>]> = [
    ['nothing loaded: load', [], { action: 'load', replace: false }],
    ['ours, the same: keep', [lib(ours)], { action: 'keep' }],
    [
      'another library of another tool: load beside it',
      [{ name: 'mylib', code: '#!lua name=mylib\n' }],
      { action: 'load', replace: false },
    ],
    [
      'our name, no marker (the first version): replace',
      [{ name: 'herald', code: '#!lua name=herald\n-- Herald history\n' }],
      { action: 'load', replace: true },
    ],
    ['our settings, an older version: replace', [lib({ ...ours, version: ours.version - 1 })], { action: 'load', replace: true }],
    ['our settings, a newer version: keep it', [lib({ ...ours, version: ours.version + 1 })], { action: 'keep' }],
    [
      'another namespace with its own prefix: load beside it',
      [lib({ ...ours, namespace: 'acme', prefix: 'acme' })],
      { action: 'load', replace: false },
    ],
  ];
  for (const [what, loaded, plan] of rows) t.same(planLibrary(ours, loaded), plan, what);
});

t.test('planLibrary refuses another deployment, naming every setting that differs', async (t) => {
  const other = planLibrary(ours, [lib({ ...ours, historySize: 200, historyTtlS: 60, recorders: 3, prefix: 'notes' })]);
  t.equal(other.action, 'refuse');
  const problems = other.action === 'refuse' ? other.problems : [];
  t.equal(problems.length, 4);
  for (const [variable, value] of [
    ['HERALD_CHANNEL_PREFIX', '"notes"'],
    ['HERALD_HISTORY_SIZE', '200'],
    ['HERALD_HISTORY_TTL_S', '60'],
    ['HERALD_RECORDERS', '3'],
  ]) {
    t.ok(
      problems.some((p) => p.startsWith(`${variable}:`) && p.includes(`built with ${value}`)),
      `${variable} named with its value ${value}`,
    );
  }
  const prefix = planLibrary(ours, [lib({ ...ours, namespace: 'acme' })]);
  t.equal(prefix.action, 'refuse', 'another namespace on our channel prefix: its recorders would take our messages');
  t.match(
    prefix.action === 'refuse' ? prefix.problems[0] : '',
    /^HERALD_CHANNEL_PREFIX: "notifications" is already used by HERALD_NAMESPACE "acme"/,
  );
});

t.test('announcements: <offset> <epoch> <kind> <id length> <id><payload>', async (t) => {
  const ok: Array<[string, { offset: string; ts: number; epoch: string; json: boolean | undefined; id: string; payload: string }]> = [
    ['1-0 ab j 1 x{}', { offset: '1-0', ts: 1, epoch: 'ab', json: true, id: 'x', payload: '{}' }],
    [
      '1795459742477-12 6b048a9e06a6d2 j 3 n 1{"id":"n 1"}',
      { offset: '1795459742477-12', ts: 1795459742477, epoch: '6b048a9e06a6d2', json: true, id: 'n 1', payload: '{"id":"n 1"}' },
    ],
    ['5-0 e t 18 5-0@49a5e271 hello world', { offset: '5-0', ts: 5, epoch: 'e', json: false, id: '5-0@49a5e271 hello', payload: ' world' }],
    ['5-0 e ? 4 éé', { offset: '5-0', ts: 5, epoch: 'e', json: undefined, id: 'éé', payload: '' }],
  ];
  for (const [text, want] of ok) {
    const a = decodeAnnouncement(Buffer.from(text));
    t.same(a === undefined ? a : { ...a, payload: a.payload.toString() }, want, JSON.stringify(text));
  }
  for (const bad of [
    '',
    '1-0',
    '1-0 e',
    '1-0 e j',
    '1-0 e j 1',
    '1-0 e 1 x{}',
    '1-0 e jj 1 x',
    '1-0 e j x y',
    '1-0 e j 0 ',
    '1-0 e j -1 x',
    '1-0 e j 9 short',
    '1-0 e j 1.5 xx',
    '1-0 e j 0x1 x',
    '1-0 e j 1e0 x',
    '1-0 e j +1 x',
    '1-0 e j ١ x',
    '1-0 e j 9999999999 x',
    '- e j 1 x',
    '1- e j 1 x',
    '01x-0 e j 1 x',
    '١-٠ e j 1 x',
    '1234567890123456-0 e j 1 x',
    ' e j 1 x',
    '{"title":"a plain payload"}',
  ]) {
    t.equal(decodeAnnouncement(Buffer.from(bad)), undefined, JSON.stringify(bad));
  }
});

t.test('names: a topic and its keys share one hash tag; the channel maps back to the topic', async (t) => {
  const n = names('herald');
  t.equal(n.history('user:42'), 'herald:history:{user:42}');
  t.equal(n.seen('user:42'), 'herald:seen:{user:42}');
  t.equal(n.notify('user:42'), 'herald:notify:{user:42}');
  t.equal(n.epoch, 'herald:epoch');
  t.equal(n.recorder(1), 'herald:recorder:1');
  t.equal(n.topicOfNotify('herald:notify:{user:42}'), 'user:42');
  for (const bad of [
    'herald:notify:{}',
    'herald:notify:user:42',
    'herald:notify:{user:42',
    'acme:notify:{user:42}',
    'notifications:user:42',
    '',
  ]) {
    t.equal(n.topicOfNotify(bad), undefined, JSON.stringify(bad));
  }
  t.equal(names('acme').topicOfNotify('herald:notify:{a}'), undefined, "another namespace's channel is not ours");
});

// The control API's pure parsers (src/control.ts): a control body, a presence query,
// and a control message heard on a user's channel. Tables with hostile rows.
import t from 'tap';
import {
  decodeControlMessage,
  MAX_CONTROL_BODY_BYTES,
  MAX_PRESENCE_QUERY,
  parseControlBody,
  parsePresenceQuery,
} from '../../dist/control.js';
import type { ControlAction } from '../../dist/metrics.js';

t.test('the limits are the contract', async (t) => {
  t.equal(MAX_CONTROL_BODY_BYTES, 4096);
  t.equal(MAX_PRESENCE_QUERY, 100);
});

t.test('parseControlBody accepts exactly what each action takes', async (t) => {
  const rows: Array<[ControlAction, unknown, Record<string, unknown>, string]> = [
    ['disconnect', { user: '42' }, { user: '42', action: 'disconnect' }, 'a user'],
    ['disconnect', { user: 'a'.repeat(123) }, { user: 'a'.repeat(123), action: 'disconnect' }, 'a user of 123'],
    ['disconnect', { user: 'A_z.0@x-y' }, { user: 'A_z.0@x-y', action: 'disconnect' }, 'every allowed punctuation'],
    ['disconnect', { user: '__proto__' }, { user: '__proto__', action: 'disconnect' }, 'a user named __proto__'],
    ['disconnect', { user: 'constructor' }, { user: 'constructor', action: 'disconnect' }, 'a user named constructor'],
    [
      'disconnect',
      { user: '42', connectionId: '8f14e45f-ceea-467f-a0e6-0123456789ab' },
      { user: '42', action: 'disconnect', connectionId: '8f14e45f-ceea-467f-a0e6-0123456789ab' },
      'a connection id (a uuid)',
    ],
    [
      'disconnect',
      { user: '42', connectionId: 'c'.repeat(64) },
      { user: '42', action: 'disconnect', connectionId: 'c'.repeat(64) },
      'a connection id of 64',
    ],
    ['disconnect', { user: '42', reconnect: true }, { user: '42', action: 'disconnect', reconnect: true }, 'reconnect true'],
    ['disconnect', { user: '42', reconnect: false }, { user: '42', action: 'disconnect' }, 'reconnect false is the default'],
    [
      'disconnect',
      { reconnect: true, connectionId: 'x', user: '42' },
      { user: '42', action: 'disconnect', connectionId: 'x', reconnect: true },
      'any order',
    ],
    ['subscribe', { user: '42', topic: 'news' }, { user: '42', action: 'subscribe', topic: 'news' }, 'subscribe'],
    ['subscribe', { user: '42', topic: 't'.repeat(128) }, { user: '42', action: 'subscribe', topic: 't'.repeat(128) }, 'a topic of 128'],
    [
      'subscribe',
      { user: '42', topic: 'org:rio:team_1.a@b-c' },
      { user: '42', action: 'subscribe', topic: 'org:rio:team_1.a@b-c' },
      'a deep topic',
    ],
    [
      'unsubscribe',
      { user: '42', topic: '__proto__' },
      { user: '42', action: 'unsubscribe', topic: '__proto__' },
      'a topic named __proto__',
    ],
  ];
  for (const [action, body, value, name] of rows) {
    t.strictSame(parseControlBody(action, body), { ok: true, value }, name);
  }
});

t.test('parseControlBody: revoke takes the time of the request, in whole seconds', async (t) => {
  const before = Math.floor(Date.now() / 1000);
  const parsed = parseControlBody('revoke', { user: '42' });
  const after = Math.floor(Date.now() / 1000);
  if (!parsed.ok) throw new Error(parsed.message);
  t.strictSame(Object.keys(parsed.value).sort(), ['action', 'before', 'user']);
  const value = parsed.value as { before: number };
  t.ok(Number.isInteger(value.before) && value.before >= before && value.before <= after, 'now, in seconds');
});

t.test('parseControlBody refuses hostile and wrong bodies with a message', async (t) => {
  const rows: Array<[ControlAction, unknown, RegExp, string]> = [
    ['disconnect', null, /object/, 'null'],
    ['disconnect', undefined, /object/, 'undefined'],
    ['disconnect', '42', /object/, 'a string'],
    ['disconnect', 42, /object/, 'a number'],
    ['disconnect', true, /object/, 'a boolean'],
    ['disconnect', [{ user: '42' }], /object/, 'an array'],
    ['disconnect', {}, /user/, 'no user'],
    ['disconnect', { user: '' }, /user/, 'an empty user'],
    ['disconnect', { user: 'a'.repeat(124) }, /user/, 'a user of 124'],
    ['disconnect', { user: 'x'.repeat(1_000_000) }, /user/, 'a huge user'],
    ['disconnect', { user: 'a b' }, /user/, 'a space'],
    ['disconnect', { user: 'a:b' }, /user/, 'a colon (user topics have two parts)'],
    ['disconnect', { user: 'a*' }, /user/, 'a star'],
    ['disconnect', { user: 'a\n' }, /user/, 'a trailing newline'],
    ['disconnect', { user: 'é' }, /user/, 'non-ASCII'],
    ['disconnect', { user: 'a\u0000' }, /user/, 'a NUL'],
    ['disconnect', { user: 42 }, /user/, 'a numeric user'],
    ['disconnect', { user: ['42'] }, /user/, 'a user list'],
    ['disconnect', { user: { toString: '42' } }, /user/, 'an object user'],
    ['disconnect', { user: null }, /user/, 'a null user'],
    ['disconnect', { user: '42', kick: true }, /"kick"/, 'an unknown property'],
    ['disconnect', JSON.parse('{"user":"42","__proto__":{"admin":true}}'), /"__proto__"/, 'an own __proto__ (as JSON.parse makes it)'],
    ['disconnect', { user: '42', constructor: 'x' }, /"constructor"/, 'a constructor property'],
    ['disconnect', { user: '42', topic: 'news' }, /"topic"/, 'a topic on disconnect'],
    ['disconnect', { user: '42', action: 'revoke' }, /"action"/, 'an action in the body (the path says it)'],
    ['disconnect', { user: '42', connectionId: '' }, /connectionId/, 'an empty connection id'],
    ['disconnect', { user: '42', connectionId: 'c'.repeat(65) }, /connectionId/, 'a connection id of 65'],
    ['disconnect', { user: '42', connectionId: 'a/b' }, /connectionId/, 'a slash in the connection id'],
    ['disconnect', { user: '42', connectionId: 'a b' }, /connectionId/, 'a space in the connection id'],
    ['disconnect', { user: '42', connectionId: 7 }, /connectionId/, 'a numeric connection id'],
    ['disconnect', { user: '42', connectionId: null }, /connectionId/, 'a null connection id'],
    ['disconnect', { user: '42', reconnect: 'true' }, /reconnect/, 'reconnect as a string'],
    ['disconnect', { user: '42', reconnect: 1 }, /reconnect/, 'reconnect as a number'],
    ['disconnect', { user: '42', reconnect: null }, /reconnect/, 'reconnect null'],
    ['subscribe', { user: '42' }, /topic/, 'no topic'],
    ['subscribe', { user: '42', topic: '' }, /topic/, 'an empty topic'],
    ['subscribe', { user: '42', topic: 't'.repeat(129) }, /topic/, 'a topic of 129'],
    ['subscribe', { user: '42', topic: 'feed:*' }, /topic/, 'a wildcard'],
    ['subscribe', { user: '42', topic: 'a{b}' }, /topic/, 'braces (a Redis hash tag)'],
    ['subscribe', { user: '42', topic: ['news'] }, /topic/, 'a topic list'],
    ['subscribe', { user: '42', topic: 'news', connectionId: 'x' }, /"connectionId"/, 'a connection id on subscribe'],
    ['unsubscribe', { user: '42', topic: 5 }, /topic/, 'a numeric topic'],
    ['unsubscribe', { user: '42', topic: 'news', reconnect: true }, /"reconnect"/, 'reconnect on unsubscribe'],
    ['revoke', { user: '42', before: 0 }, /"before"/, 'a time chosen by the caller'],
    ['revoke', { user: '42', topic: 'news' }, /"topic"/, 'a topic on revoke'],
    ['revoke', { user: '' }, /user/, 'revoke, an empty user'],
  ];
  for (const [action, body, message, name] of rows) {
    const parsed = parseControlBody(action, body);
    t.equal(parsed.ok, false, `${action}: ${name} is refused`);
    if (!parsed.ok) t.match(parsed.message, message, `${name}: the message says why`);
  }
});

t.test('parsePresenceQuery', async (t) => {
  const ok: Array<[string, { users: string[]; topics: string[] }, string]> = [
    ['user=42', { users: ['42'], topics: [] }, 'one user'],
    ['topic=news', { users: [], topics: ['news'] }, 'one topic'],
    ['user=42&topic=news&user=7', { users: ['42', '7'], topics: ['news'] }, 'in the order asked'],
    ['user=42&user=42&topic=a&topic=a', { users: ['42'], topics: ['a'] }, 'repeats answered once'],
    ['user=__proto__&user=constructor&topic=__proto__', { users: ['__proto__', 'constructor'], topics: ['__proto__'] }, 'prototype names'],
    ['topic=org%3Ario%3Ateam', { users: [], topics: ['org:rio:team'] }, 'percent-encoded colons'],
    ['user=a&', { users: ['a'], topics: [] }, 'a trailing &'],
    [
      Array.from({ length: 100 }, (_, i) => `user=u${i}`).join('&'),
      { users: Array.from({ length: 100 }, (_, i) => `u${i}`), topics: [] },
      '100',
    ],
  ];
  for (const [query, value, name] of ok) t.strictSame(parsePresenceQuery(query), { ok: true, value }, name);

  const bad: Array<[string, RegExp, string]> = [
    ['', /at least one/, 'nothing'],
    ['&&&', /at least one/, 'only separators'],
    [Array.from({ length: 101 }, (_, i) => `user=u${i}`).join('&'), /at most 100/, '101 users'],
    [Array.from({ length: 101 }, () => 'user=same').join('&'), /at most 100/, '101 repeats of one user count as 101'],
    [
      `${Array.from({ length: 50 }, (_, i) => `user=u${i}`).join('&')}&${Array.from({ length: 51 }, (_, i) => `topic=t${i}`).join('&')}`,
      /at most 100/,
      '50 users and 51 topics',
    ],
    [Array.from({ length: 100_000 }, (_, i) => `user=u${i}`).join('&'), /at most 100/, 'a huge query'],
    ['user=', /user/, 'an empty user'],
    ['user', /user/, 'a user without a value'],
    ['user=a+b', /user/, 'a plus (a space)'],
    ['user=a%20b', /user/, 'an encoded space'],
    ['user=a%3Ab', /user/, 'a colon in a user'],
    [`user=${'u'.repeat(124)}`, /user/, 'a user of 124'],
    [`user=${'u'.repeat(1_000_000)}`, /user/, 'a huge user'],
    ['user=%E2%80%8B', /user/, 'a zero-width space'],
    ['user=%00', /user/, 'a NUL'],
    ['topic=', /topic/, 'an empty topic'],
    ['topic=feed:*', /topic/, 'a wildcard'],
    ['topic=a%7Bb%7D', /topic/, 'braces'],
    [`topic=${'t'.repeat(129)}`, /topic/, 'a topic of 129'],
    ['users=42', /"users"/, 'an unknown parameter'],
    ['User=42', /"User"/, 'parameter names are case-sensitive'],
    ['__proto__=x', /"__proto__"/, 'a prototype name as the parameter'],
    ['user=42&user[]=7', /"user\[\]"/, 'bracket syntax is not ours'],
  ];
  for (const [query, message, name] of bad) {
    const parsed = parsePresenceQuery(query);
    t.equal(parsed.ok, false, `${name} is refused`);
    if (!parsed.ok) t.match(parsed.message, message, `${name}: the message says why`);
  }
});

t.test('decodeControlMessage takes our messages and drops anything else', async (t) => {
  const ok: Array<[string, unknown, string]> = [
    ['{"action":"disconnect"}', { action: 'disconnect' }, 'disconnect'],
    [
      '{"action":"disconnect","connectionId":"abc","reconnect":true}',
      { action: 'disconnect', connectionId: 'abc', reconnect: true },
      'one, reconnecting',
    ],
    ['{"action":"disconnect","reconnect":false}', { action: 'disconnect' }, 'reconnect false'],
    ['{"action":"disconnect","reconnect":"yes"}', { action: 'disconnect' }, 'reconnect not true: a plain disconnect'],
    ['{"action":"subscribe","topic":"news"}', { action: 'subscribe', topic: 'news' }, 'subscribe'],
    ['{"action":"unsubscribe","topic":"news"}', { action: 'unsubscribe', topic: 'news' }, 'unsubscribe'],
    ['{"action":"revoke","before":1700000000}', { action: 'revoke', before: 1700000000 }, 'revoke'],
    [
      '{"action":"subscribe","topic":"news","user":"other","admin":true,"__proto__":{"polluted":1}}',
      { action: 'subscribe', topic: 'news' },
      'extra properties are dropped, __proto__ included',
    ],
    ['{"action":"revoke","before":1,"action2":"disconnect"}', { action: 'revoke', before: 1 }, 'an extra property that looks like ours'],
  ];
  for (const [text, value, name] of ok) {
    const m = decodeControlMessage(text);
    t.strictSame(m, value, name);
    t.equal(Object.getPrototypeOf(m), Object.prototype, `${name}: a plain object`);
  }
  t.equal(({} as Record<string, unknown>)['polluted'], undefined, 'no prototype was polluted');

  const bad: Array<[string, string]> = [
    ['', 'empty'],
    ['not json', 'not JSON'],
    ['{"action":"disconnect"', 'truncated'],
    ['null', 'null'],
    ['42', 'a number'],
    ['"disconnect"', 'a string'],
    ['[{"action":"disconnect"}]', 'an array'],
    ['{}', 'no action'],
    ['{"action":"kick"}', 'an unknown action'],
    ['{"action":"DISCONNECT"}', 'actions are case-sensitive'],
    ['{"action":"__proto__"}', 'a prototype name as the action'],
    ['{"action":"constructor"}', 'constructor as the action'],
    ['{"action":"toString"}', 'toString as the action'],
    ['{"action":["disconnect"]}', 'an action list'],
    ['{"action":"disconnect","connectionId":7}', 'a numeric connection id'],
    ['{"action":"disconnect","connectionId":null}', 'a null connection id'],
    ['{"action":"subscribe"}', 'subscribe without a topic'],
    ['{"action":"subscribe","topic":""}', 'an empty topic'],
    ['{"action":"subscribe","topic":"feed:*"}', 'a wildcard topic'],
    [`{"action":"subscribe","topic":"${'t'.repeat(129)}"}`, 'a topic of 129'],
    [`{"action":"unsubscribe","topic":"${'t'.repeat(1_000_000)}"}`, 'a huge topic'],
    ['{"action":"unsubscribe","topic":5}', 'a numeric topic'],
    ['{"action":"revoke"}', 'revoke without a time'],
    ['{"action":"revoke","before":"1700000000"}', 'a time as a string'],
    ['{"action":"revoke","before":null}', 'a null time'],
    ['{"action":"revoke","before":1e999}', 'an infinite time (1e999 parses to Infinity)'],
  ];
  for (const [text, name] of bad) t.equal(decodeControlMessage(text), undefined, `${name}: dropped`);
});

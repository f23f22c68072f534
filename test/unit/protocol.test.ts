import t from 'tap';
import {
  DEFAULT_HISTORY_LIMIT,
  decodeClientFrame,
  ErrorCode,
  encode,
  encodeHistoryReply,
  encodeNotification,
  MAX_ACK_IDS,
  MAX_HISTORY_LIMIT,
  type ServerFrame,
} from '../../dist/protocol.js';

const ids = (n: number, prefix = 'n'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

t.test('every valid client frame decodes to itself', async (t) => {
  const rows: Array<Record<string, unknown>> = [
    { type: 'ping' },
    { type: 'ping', id: 'r1' },
    { type: 'ping', id: 0 },
    { type: 'ping', id: Number.MAX_SAFE_INTEGER },
    { type: 'ping', id: 'x'.repeat(64) },
    { type: 'subscribe', topic: 'feed:a' },
    { type: 'subscribe', topic: 'x'.repeat(128), id: 7 },
    { type: 'unsubscribe', topic: 'org:rio', id: 'u' },
    { type: 'ack', notificationId: 'n-1' },
    { type: 'ack', notificationId: 'n'.repeat(128), id: 'a1' },
    { type: 'mark_read', notificationId: '550e8400-e29b-41d4-a716-446655440000', id: 3 },
    { type: 'mark_read', notificationId: 'é 🎉 "quoted"' },
    // The list form: 1 to MAX_ACK_IDS ids, each as a single id; repeats allowed.
    { type: 'ack', notificationIds: ['n-1'] },
    { type: 'ack', notificationIds: ids(MAX_ACK_IDS), id: 'batch' },
    { type: 'mark_read', notificationIds: ['a', 'a', 'n'.repeat(128), '🎉'], id: 4 },
    // history: a topic, and optionally a limit and one of before/after.
    { type: 'history', topic: 'user:42' },
    { type: 'history', topic: 'org:rio', limit: 1, id: 'h' },
    { type: 'history', topic: 'org:rio', limit: MAX_HISTORY_LIMIT, before: '1795450121095-0' },
    { type: 'history', topic: 'org:rio', after: '0-0', id: 9 },
    { type: 'history', topic: 'x'.repeat(128), after: `${'9'.repeat(15)}-${'9'.repeat(15)}` },
  ];
  for (const frame of rows) {
    t.strictSame(decodeClientFrame(JSON.stringify(frame)), { kind: 'frame', frame }, JSON.stringify(frame).slice(0, 80));
  }
});

t.test('whitespace around a valid frame is accepted', async (t) => {
  t.strictSame(decodeClientFrame(' \n\t{"type":"ping"} \r\n'), { kind: 'frame', frame: { type: 'ping' } });
});

t.test('text that is not JSON decodes as not_json', async (t) => {
  const rows = [
    '',
    ' ',
    'ping',
    '{type:"ping"}',
    "{'type':'ping'}",
    '{"type":"ping"',
    '{"type":"ping"}}',
    '\u0000',
    'NaN',
    '{"type":"ping",}',
    '\uFEFF{"type":"ping"}',
  ];
  for (const text of rows) t.strictSame(decodeClientFrame(text), { kind: 'not_json' }, JSON.stringify(text));
});

t.test('JSON that is not an object is invalid with no id', async (t) => {
  const rows = ['null', 'true', '0', '"ping"', '[]', '[{"type":"ping","id":1}]', '[[["ping"]]]'];
  for (const text of rows) {
    t.strictSame(decodeClientFrame(text), { kind: 'invalid', message: 'a frame must be a JSON object', id: undefined }, text);
  }
});

t.test('a frame whose type is missing or not a string is invalid, echoing a usable id', async (t) => {
  const rows: Array<[string, string | number | undefined]> = [
    ['{}', undefined],
    ['{"id":"r1"}', 'r1'],
    ['{"type":1,"id":2}', 2],
    ['{"type":null,"id":"r"}', 'r'],
    ['{"type":["ping"]}', undefined],
    ['{"type":{"toString":"ping"}}', undefined],
  ];
  for (const [text, id] of rows) {
    t.strictSame(decodeClientFrame(text), { kind: 'invalid', message: '"type" must be a string', id }, text);
  }
});

t.test('an unknown type is unknown_type, echoing the id, with a bounded message', async (t) => {
  const rows: Array<[string, string | number | undefined]> = [
    ['{"type":"pong","id":"r1"}', 'r1'],
    ['{"type":"PING","id":5}', 5],
    ['{"type":"ping "}', undefined],
    ['{"type":""}', undefined],
    ['{"type":"__proto__","id":"p"}', 'p'],
    ['{"type":"constructor"}', undefined],
    ['{"type":"toString"}', undefined],
    ['{"type":"hasOwnProperty"}', undefined],
    ['{"type":"p\u0456ng"}', undefined],
    [JSON.stringify({ type: 'x'.repeat(100_000), id: 1 }), 1],
    // 40 emoji: 80 UTF-16 units but 40 code points, which is how the schema counts.
    [JSON.stringify({ type: 'nope', id: '😀'.repeat(40) }), '😀'.repeat(40)],
    [JSON.stringify({ type: 'nope', id: '😀'.repeat(65) }), undefined],
  ];
  for (const [text, id] of rows) {
    const d = decodeClientFrame(text);
    t.equal(d.kind, 'unknown_type', text.slice(0, 60));
    if (d.kind !== 'unknown_type') continue;
    t.equal(d.id, id, `${text.slice(0, 60)}: id`);
    t.ok(d.message.length < 80, `${text.slice(0, 60)}: message is bounded (${d.message.length})`);
  }
});

t.test('schema failures are invalid with a message naming the problem and the id echoed', async (t) => {
  const rows: Array<[frame: string, id: string | number | undefined, message: RegExp, name: string]> = [
    ['{"type":"ping","extra":1}', undefined, /^ping: unexpected property "extra"$/, 'extra property'],
    ['{"type":"ping","id":"r","extra":1}', 'r', /^ping: unexpected property "extra"$/, 'extra property with id'],
    ['{"type":"ping","__proto__":{"id":"x"}}', undefined, /^ping: unexpected property "__proto__"$/, '__proto__ key'],
    ['{"type":"ping","constructor":1}', undefined, /^ping: unexpected property "constructor"$/, 'constructor key'],
    ['{"type":"subscribe","id":"r1"}', 'r1', /^subscribe: missing property "topic"$/, 'missing topic'],
    ['{"type":"unsubscribe","id":9}', 9, /^unsubscribe: missing property "topic"$/, 'unsubscribe missing topic'],
    ['{"type":"subscribe","topic":"","id":"r"}', 'r', /^subscribe: topic /, 'empty topic'],
    ['{"type":"subscribe","topic":"a b","id":"r"}', 'r', /^subscribe: topic /, 'topic with a space'],
    ['{"type":"subscribe","topic":"feed:*"}', undefined, /^subscribe: topic /, 'glob topic'],
    ['{"type":"subscribe","topic":"us\u0435r:1"}', undefined, /^subscribe: topic /, 'Cyrillic е in topic'],
    ['{"type":"subscribe","topic":"user:1\\n"}', undefined, /^subscribe: topic /, 'trailing newline in topic'],
    [JSON.stringify({ type: 'subscribe', topic: 'x'.repeat(129) }), undefined, /^subscribe: topic /, 'topic of 129'],
    ['{"type":"subscribe","topic":42}', undefined, /^subscribe: topic /, 'numeric topic'],
    ['{"type":"subscribe","topic":["a"]}', undefined, /^subscribe: topic /, 'array topic'],
    ['{"type":"subscribe","topic":null}', undefined, /^subscribe: topic /, 'null topic'],
    ['{"type":"ack","id":"a"}', 'a', /^ack: missing property "notificationId"$/, 'ack missing notificationId'],
    ['{"type":"ack","notificationId":""}', undefined, /^ack: notificationId /, 'empty notificationId'],
    [
      JSON.stringify({ type: 'mark_read', notificationId: 'n'.repeat(129), id: 1 }),
      1,
      /^mark_read: notificationId /,
      'notificationId of 129',
    ],
    ['{"type":"mark_read","notificationId":5}', undefined, /^mark_read: notificationId /, 'numeric notificationId'],
    [
      '{"type":"ack","notificationId":"a","notificationIds":["b"],"id":1}',
      1,
      /^ack: exactly one of "notificationId" and "notificationIds"$/,
      'both forms at once',
    ],
    ['{"type":"mark_read","notificationIds":[]}', undefined, /^mark_read: notificationIds /, 'an empty list'],
    [JSON.stringify({ type: 'ack', notificationIds: ids(MAX_ACK_IDS + 1), id: 'b' }), 'b', /^ack: notificationIds /, 'a list of 101'],
    [JSON.stringify({ type: 'ack', notificationIds: ids(100_000) }), undefined, /^ack: notificationIds /, 'a list of 100000'],
    ['{"type":"ack","notificationIds":["ok",""]}', undefined, /^ack: notificationIds\/1 /, 'an empty id in the list'],
    [
      JSON.stringify({ type: 'ack', notificationIds: ['n'.repeat(129)] }),
      undefined,
      /^ack: notificationIds\/0 /,
      'an id of 129 in the list',
    ],
    ['{"type":"ack","notificationIds":["a",5]}', undefined, /^ack: notificationIds\/1 /, 'a numeric id in the list'],
    ['{"type":"ack","notificationIds":[["a"]]}', undefined, /^ack: notificationIds\/0 /, 'a nested list'],
    ['{"type":"ack","notificationIds":"a"}', undefined, /^ack: notificationIds /, 'a string for the list'],
    ['{"type":"ack","notificationIds":{"0":"a"}}', undefined, /^ack: notificationIds /, 'an object for the list'],
    ['{"type":"ack","notificationIds":null}', undefined, /^ack: notificationIds /, 'null for the list'],
    ['{"type":"history","id":"h"}', 'h', /^history: missing property "topic"$/, 'history without a topic'],
    ['{"type":"history","topic":"org:*"}', undefined, /^history: topic /, 'history of a glob'],
    ['{"type":"history","topic":"a","limit":0}', undefined, /^history: limit /, 'limit 0'],
    [`{"type":"history","topic":"a","limit":${MAX_HISTORY_LIMIT + 1}}`, undefined, /^history: limit /, 'limit 101'],
    ['{"type":"history","topic":"a","limit":-1}', undefined, /^history: limit /, 'negative limit'],
    ['{"type":"history","topic":"a","limit":2.5}', undefined, /^history: limit /, 'fractional limit'],
    ['{"type":"history","topic":"a","limit":"20"}', undefined, /^history: limit /, 'limit as a string'],
    ['{"type":"history","topic":"a","limit":null}', undefined, /^history: limit /, 'null limit'],
    ['{"type":"history","topic":"a","limit":1e400}', undefined, /^history: limit /, 'infinite limit'],
    [
      '{"type":"history","topic":"a","before":"2-0","after":"1-0","id":3}',
      3,
      /^history: at most one of "before" and "after"$/,
      'before and after',
    ],
    ['{"type":"history","topic":"a","before":"1795450121095"}', undefined, /^history: before /, 'before without a seq'],
    ['{"type":"history","topic":"a","after":"-1-0"}', undefined, /^history: after /, 'negative after'],
    ['{"type":"history","topic":"a","after":"1-0\\n"}', undefined, /^history: after /, 'trailing newline in after'],
    [`{"type":"history","topic":"a","after":"${'1'.repeat(16)}-0"}`, undefined, /^history: after /, 'after of 16 digits'],
    ['{"type":"history","topic":"a","before":"+"}', undefined, /^history: before /, 'Redis range syntax "+" as before'],
    ['{"type":"history","topic":"a","after":"(1-0"}', undefined, /^history: after /, 'Redis exclusive syntax as after'],
    ['{"type":"history","topic":"a","before":1}', undefined, /^history: before /, 'numeric before'],
    ['{"type":"history","topic":"a","epoch":"e"}', undefined, /^history: unexpected property "epoch"$/, 'an extra property'],
    [JSON.stringify({ type: 'ping', id: 'x'.repeat(65) }), undefined, /^ping: id /, 'id of 65'],
    ['{"type":"ping","id":""}', undefined, /^ping: id /, 'empty id'],
    ['{"type":"ping","id":-1}', undefined, /^ping: id /, 'negative id'],
    ['{"type":"ping","id":1.5}', undefined, /^ping: id /, 'fractional id'],
    ['{"type":"ping","id":9007199254740992}', undefined, /^ping: id /, 'id beyond a safe integer'],
    ['{"type":"ping","id":1e400}', undefined, /^ping: id /, 'infinite id'],
    ['{"type":"ping","id":null}', undefined, /^ping: id /, 'null id'],
    ['{"type":"ping","id":true}', undefined, /^ping: id /, 'boolean id'],
    ['{"type":"ping","id":{"a":1}}', undefined, /^ping: id /, 'object id'],
    ['{"type":"ping","id":["r"]}', undefined, /^ping: id /, 'array id'],
  ];
  for (const [text, id, message, name] of rows) {
    const d = decodeClientFrame(text);
    t.equal(d.kind, 'invalid', `${name}: invalid`);
    if (d.kind !== 'invalid') continue;
    t.equal(d.id, id, `${name}: id echo`);
    t.match(d.message, message, `${name}: message`);
    t.ok(d.message.length < 120, `${name}: message is bounded`);
  }
});

t.test('a long property name is cut short in the message', async (t) => {
  const d = decodeClientFrame(JSON.stringify({ type: 'ping', ['k'.repeat(10_000)]: 1 }));
  t.equal(d.kind, 'invalid');
  if (d.kind === 'invalid') t.ok(d.message.length < 80, `message has ${d.message.length} characters`);
});

t.test('a decoded __proto__ key never reaches the prototype', async (t) => {
  decodeClientFrame('{"type":"ping","__proto__":{"polluted":true}}');
  t.equal(({} as Record<string, unknown>)['polluted'], undefined);
});

t.test('deeply nested JSON is refused without a stack overflow', async (t) => {
  const depth = 5000; // fits in the default 10 KiB frame limit
  const nested = '['.repeat(depth) + ']'.repeat(depth);
  const rows: Array<[string, string]> = [
    [`{"type":"ping","x":${nested}}`, 'invalid'],
    [`{"type":"subscribe","topic":${nested}}`, 'invalid'],
    [`{"type":"ping","id":${nested}}`, 'invalid'],
    [nested, 'invalid'],
    [`{"type":${nested}}`, 'invalid'],
  ];
  for (const [text, kind] of rows) {
    let d: ReturnType<typeof decodeClientFrame> | undefined;
    t.doesNotThrow(
      () => {
        d = decodeClientFrame(text);
      },
      text.slice(0, 30),
    );
    t.equal(d?.kind, kind, text.slice(0, 30));
  }
});

t.test('encode produces JSON that parses back to the frame', async (t) => {
  const rows: ServerFrame[] = [
    {
      type: 'connected',
      connectionId: 'c1',
      userId: 'alice',
      topics: ['user:alice', 'system'],
      heartbeatMs: 60000,
      serverTime: 1700000000000,
    },
    { type: 'pong', ts: 1 },
    { type: 'pong', id: 'r"1\\', ts: 2 },
    { type: 'subscribed', topic: 'feed:a', id: 0 },
    { type: 'unsubscribed', topic: 'a"b\\c\u2028\u0000', id: 'x\ny' },
    { type: 'acked', notificationId: '\ud83c\udf89', id: 3 },
    { type: 'marked_read', notificationId: '</script>', id: 'm' },
    { type: 'acked', notificationIds: ['a', 'a', '\u0000'], id: 'list' },
    { type: 'marked_read', notificationIds: ['n1'], id: 0 },
    { type: 'error', code: ErrorCode.HistoryUnavailable, message: 'this gateway keeps no history', id: 'h' },
    { type: 'error', code: ErrorCode.RateLimited, message: 'slow down "now"', id: 4, retryAfterMs: 250 },
    { type: 'error', code: ErrorCode.InvalidMessage, message: 'ping: unexpected property "__proto__"' },
  ];
  for (const frame of rows) t.strictSame(JSON.parse(encode(frame)), frame, frame.type);
});

t.test('encodeNotification produces a parseable frame with escaped topic and id', async (t) => {
  const rows: Array<[topic: string, id: string, ts: number, data: string, name: string]> = [
    ['user:42', 'n1', 1700000000000, '{"title":"hi"}', 'object data'],
    ['user:42', 'n1', 0, '"raw text"', 'string data'],
    ['user:42', 'n1', 1, 'null', 'null data'],
    ['user:42', 'n1', 1, '[1,2,3]', 'array data'],
    ['t"o\\p', 'i"d\\', 1, '1', 'quote and backslash in topic and id'],
    ['line\nbreak', 'tab\tid', 1, 'true', 'control characters'],
    ['\u2028\u2029', '\ud83c\udf89', 1, '{"e":"🎉"}', 'line separators and emoji'],
    ['x', '\ud800', 1, '0', 'lone surrogate id'],
    ['__proto__', '__proto__', 1, '{"__proto__":{"a":1}}', 'prototype names'],
  ];
  for (const [topic, id, ts, data, name] of rows) {
    const frame = encodeNotification(topic, id, ts, data);
    let parsed: unknown;
    t.doesNotThrow(() => {
      parsed = JSON.parse(frame);
    }, `${name}: parses`);
    t.strictSame(parsed, JSON.parse(JSON.stringify({ type: 'notification', topic, id, ts, data: JSON.parse(data) })), name);
    t.strictSame(Object.keys(parsed as object), ['type', 'topic', 'id', 'ts', 'data'], `${name}: key order`);
  }
});

t.test('encodeHistoryReply wraps stored notification frames as entries without their type', async (t) => {
  const frames = [
    encodeNotification('user:"42"', 'n\n1', 5, '{"title":"hi"}', { offset: '5-0', epoch: '18a2' }),
    encodeNotification('user:"42"', '</script>', 6, '"text"', { offset: '6-0', epoch: '18a2' }),
  ];
  const entry = { topic: 'user:"42"', epoch: '18a2' };
  const want = [
    { topic: entry.topic, id: 'n\n1', ts: 5, offset: '5-0', epoch: '18a2', data: { title: 'hi' } },
    { topic: entry.topic, id: '</script>', ts: 6, offset: '6-0', epoch: '18a2', data: 'text' },
  ];
  const reply = JSON.parse(encodeHistoryReply('user:"42"', '18a2', frames, 'h"1')) as Record<string, unknown>;
  t.strictSame(reply, { type: 'history', topic: 'user:"42"', epoch: '18a2', notifications: want, id: 'h"1' });
  t.strictSame(
    Object.keys((reply['notifications'] as object[])[0] as object),
    ['topic', 'id', 'ts', 'offset', 'epoch', 'data'],
    'key order',
  );
  t.strictSame(
    JSON.parse(encodeHistoryReply('t', 'e', [], undefined)),
    { type: 'history', topic: 't', epoch: 'e', notifications: [] },
    'empty, no id',
  );
  t.strictSame(
    JSON.parse(encodeHistoryReply('t', 'e', [], 0)),
    { type: 'history', topic: 't', epoch: 'e', notifications: [], id: 0 },
    'id 0',
  );
});

t.test('the documented limits', async (t) => {
  t.equal(MAX_ACK_IDS, 100);
  t.equal(MAX_HISTORY_LIMIT, 100);
  t.equal(DEFAULT_HISTORY_LIMIT, 20);
});

t.test('error codes include every code the contract names', async (t) => {
  const codes = Object.values(ErrorCode);
  for (const c of ['invalid_message', 'forbidden', 'rate_limited', 'unknown_type', 'history_unavailable'])
    t.ok(codes.includes(c as ErrorCode), c);
});

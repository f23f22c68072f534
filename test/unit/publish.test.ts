import t from 'tap';
import { type PublishParse, parsePublishBody } from '../../dist/publish.js';

const limits = { maxBatch: 3, maxNotificationBytes: 64 };

t.test('valid bodies parse into topic and JSON-encoded payload', async (t) => {
  const rows: Array<[body: string, items: Array<{ topic: string; payload: string; id?: string }>, name: string]> = [
    ['{"topic":"user:42","data":{"title":"hi"}}', [{ topic: 'user:42', payload: '{"title":"hi"}' }], 'single object'],
    [' \n{"data":1,"topic":"system"}\n ', [{ topic: 'system', payload: '1' }], 'keys in any order, padded'],
    [
      '[{"topic":"a","data":1},{"topic":"b","data":"two"},{"topic":"a","data":[3]}]',
      [
        { topic: 'a', payload: '1' },
        { topic: 'b', payload: '"two"' },
        { topic: 'a', payload: '[3]' },
      ],
      'array up to the batch limit',
    ],
    ['[{"topic":"a","data":null}]', [{ topic: 'a', payload: 'null' }], 'array of one, data null'],
    ['{"topic":"a","data":null}', [{ topic: 'a', payload: 'null' }], 'data null'],
    ['{"topic":"a","data":false}', [{ topic: 'a', payload: 'false' }], 'data false'],
    ['{"topic":"a","data":0}', [{ topic: 'a', payload: '0' }], 'data 0'],
    ['{"topic":"a","data":""}', [{ topic: 'a', payload: '""' }], 'data empty string'],
    ['{"topic":"a","data":"plain"}', [{ topic: 'a', payload: '"plain"' }], 'data string'],
    ['{"topic":"a","data":{"x":{"y":[1,{"z":true}]}}}', [{ topic: 'a', payload: '{"x":{"y":[1,{"z":true}]}}' }], 'data nested'],
    ['{"topic":"a","data":{ "x" : 1 }}', [{ topic: 'a', payload: '{"x":1}' }], 'data re-encoded compactly'],
    [
      '{"topic":"a","data":{"__proto__":{"x":1}}}',
      [{ topic: 'a', payload: '{"__proto__":{"x":1}}' }],
      'data with a __proto__ key is kept as data',
    ],
    ['{"topic":"a","data":"é🎉"}', [{ topic: 'a', payload: '"é🎉"' }], 'unicode data'],
    [`{"topic":"${'x'.repeat(128)}","data":1}`, [{ topic: 'x'.repeat(128), payload: '1' }], 'topic of 128'],
    ['{"topic":"__proto__","data":1}', [{ topic: '__proto__', payload: '1' }], 'topic named __proto__'],
    // The data's own id (a string of 1-128 on an object) names the notification: the 202 says it.
    ['{"topic":"a","data":{"id":"n-1"}}', [{ topic: 'a', payload: '{"id":"n-1"}', id: 'n-1' }], 'data with its own id'],
    ['{"topic":"a","data":{"id":""}}', [{ topic: 'a', payload: '{"id":""}' }], 'empty id: none'],
    ['{"topic":"a","data":{"id":7}}', [{ topic: 'a', payload: '{"id":7}' }], 'numeric id: none'],
    ['{"topic":"a","data":[{"id":"x"}]}', [{ topic: 'a', payload: '[{"id":"x"}]' }], 'an array holding an id: none'],
    ['{"topic":"a","data":{"x":{"id":"deep"}}}', [{ topic: 'a', payload: '{"x":{"id":"deep"}}' }], 'a nested id: none'],
  ];
  for (const [body, items, name] of rows) t.strictSame(parsePublishBody(body, limits), { ok: true, items }, name);
});

t.test('an own id is 1-128 characters', async (t) => {
  const roomy = { ...limits, maxNotificationBytes: 1024 };
  const item = (id: string) => {
    const r = parsePublishBody(JSON.stringify({ topic: 'a', data: { id } }), roomy);
    return r.ok ? r.items[0]?.id : 'refused';
  };
  t.equal(item('i'.repeat(128)), 'i'.repeat(128));
  t.equal(item('i'.repeat(129)), undefined);
  t.equal(item('🎉'.repeat(64)), '🎉'.repeat(64), '128 UTF-16 units, as deliver.ts counts');
});

function failure(r: PublishParse): { reason: string; message: string } | undefined {
  return r.ok ? undefined : { reason: r.refusal.reason, message: r.message };
}

t.test('bad bodies are refused with a reason and a message that says where', async (t) => {
  const rows: Array<[body: string, reason: string, message: RegExp, name: string]> = [
    ['', 'invalid_json', /not valid JSON/, 'empty body'],
    ['{"topic":"a","data":1', 'invalid_json', /not valid JSON/, 'truncated JSON'],
    ["{'topic':'a','data':1}", 'invalid_json', /not valid JSON/, 'single quotes'],
    ['topic=a&data=1', 'invalid_json', /not valid JSON/, 'form encoding'],
    ['[]', 'invalid_body', /empty array/, 'empty array'],
    ['[1,2,3,4]', 'too_many_items', /at most 3/, 'too many items (checked before the items)'],
    [JSON.stringify(Array.from({ length: 100_000 }, () => ({ topic: 'a', data: 1 }))), 'too_many_items', /at most 3/, 'a huge batch'],
    ['null', 'invalid_body', /^body: /, 'null body'],
    ['42', 'invalid_body', /^body: /, 'number body'],
    ['"user:1"', 'invalid_body', /^body: /, 'string body'],
    ['{}', 'invalid_body', /^body: missing property "topic"$/, 'empty object'],
    ['{"topic":"a"}', 'invalid_body', /^body: missing property "data"$/, 'missing data'],
    ['{"data":1}', 'invalid_body', /^body: missing property "topic"$/, 'missing topic'],
    ['{"topic":"a","data":1,"extra":2}', 'invalid_body', /^body: unexpected property "extra"$/, 'extra property'],
    ['{"topic":"a","data":1,"__proto__":{"x":1}}', 'invalid_body', /^body: unexpected property "__proto__"$/, '__proto__ key'],
    ['{"topic":"a","data":1,"constructor":1}', 'invalid_body', /^body: unexpected property "constructor"$/, 'constructor key'],
    ['{"topic":"","data":1}', 'invalid_body', /^body: topic must be/, 'empty topic'],
    ['{"topic":"user 1","data":1}', 'invalid_body', /^body: topic must be/, 'topic with a space'],
    ['{"topic":"user:*","data":1}', 'invalid_body', /^body: topic must be/, 'glob topic'],
    ['{"topic":"us\u0435r:1","data":1}', 'invalid_body', /^body: topic must be/, 'Cyrillic е in the topic'],
    ['{"topic":"user:1\\n","data":1}', 'invalid_body', /^body: topic must be/, 'trailing newline in the topic'],
    [`{"topic":"${'x'.repeat(129)}","data":1}`, 'invalid_body', /^body: topic must be/, 'topic of 129'],
    ['{"topic":42,"data":1}', 'invalid_body', /^body: topic must be/, 'numeric topic'],
    ['{"topic":["a"],"data":1}', 'invalid_body', /^body: topic must be/, 'array topic'],
    ['[{"topic":"a","data":1},{"topic":"bad topic","data":1}]', 'invalid_body', /^\[1\]: topic must be/, 'second item bad'],
    ['[{"topic":"a","data":1},{"topic":"b"}]', 'invalid_body', /^\[1\]: missing property "data"$/, 'second item missing data'],
    ['[1]', 'invalid_body', /^\[0\]: /, 'array of a number'],
    ['[null]', 'invalid_body', /^\[0\]: /, 'array of null'],
    ['[[{"topic":"a","data":1}]]', 'invalid_body', /^\[0\]: /, 'nested array'],
  ];
  for (const [body, reason, message, name] of rows) {
    const f = failure(parsePublishBody(body, limits));
    t.equal(f?.reason, reason, `${name}: reason`);
    t.match(f?.message ?? '', message, `${name}: message`);
    t.ok((f?.message.length ?? 0) < 120, `${name}: message is bounded`);
  }
});

t.test('a long unexpected property name is cut short in the message', async (t) => {
  const f = failure(parsePublishBody(JSON.stringify({ topic: 'a', data: 1, ['k'.repeat(10_000)]: 1 }), limits));
  t.equal(f?.reason, 'invalid_body');
  t.ok((f?.message.length ?? Infinity) < 80, `message has ${f?.message.length} characters`);
});

t.test('the notification byte limit counts UTF-8 bytes of the encoded data', async (t) => {
  // maxNotificationBytes 64: '"' + n × 'é' (2 bytes) + '"' is 2n + 2 bytes.
  const rows: Array<[data: unknown, ok: boolean, name: string]> = [
    ['é'.repeat(31), true, '31 × é = 64 bytes'],
    ['é'.repeat(32), false, '32 × é = 66 bytes, though only 34 characters'],
    ['x'.repeat(62), true, '62 ASCII + quotes = 64 bytes'],
    ['x'.repeat(63), false, '63 ASCII + quotes = 65 bytes'],
    [`${'🎉'.repeat(15)}xx`, true, '15 emoji × 4 + 2 + quotes = 64 bytes'],
    ['🎉'.repeat(16), false, '16 emoji = 66 bytes with quotes'],
    ['€'.repeat(21), false, '21 × € = 65 bytes with quotes'],
    ['"'.repeat(31), true, '31 quotes escape to 62 + 2 = 64 bytes'],
    ['"'.repeat(32), false, '32 quotes escape to 66 bytes'],
    [{ k: 'x'.repeat(56) }, true, 'object of 64 bytes'],
    [{ k: 'x'.repeat(57) }, false, 'object of 65 bytes'],
  ];
  for (const [data, ok, name] of rows) {
    const r = parsePublishBody(JSON.stringify({ topic: 'a', data }), limits);
    t.equal(r.ok, ok, name);
    if (!r.ok) {
      t.equal(r.refusal.reason, 'notification_too_large', `${name}: reason`);
      t.match(r.message, /^body: data is over 64 bytes$/, `${name}: message`);
    }
  }
  const batch = parsePublishBody(
    JSON.stringify([
      { topic: 'a', data: 1 },
      { topic: 'b', data: 'é'.repeat(40) },
    ]),
    limits,
  );
  t.strictSame(failure(batch), { reason: 'notification_too_large', message: '[1]: data is over 64 bytes' }, 'names the item in a batch');
});

t.test('deeply nested data is refused with a reason instead of throwing', async (t) => {
  // 100 000 levels is 200 KB, well under the default 1 MiB body limit; JSON.parse
  // handles it, JSON.stringify overflows the stack.
  const depth = 100_000;
  const body = `{"topic":"a","data":${'['.repeat(depth)}${']'.repeat(depth)}}`;
  let result: PublishParse | undefined;
  t.doesNotThrow(() => {
    result = parsePublishBody(body, { maxBatch: 1000, maxNotificationBytes: 16_777_216 });
  }, 'parsePublishBody returns rather than throws');
  t.equal(result?.ok, false, 'the body is refused (400), not a 500');
});

t.test('parsing a body never pollutes Object.prototype', async (t) => {
  parsePublishBody('{"topic":"a","data":{"__proto__":{"polluted":1}}}', limits);
  parsePublishBody('[{"__proto__":{"polluted":1}}]', limits);
  t.equal(({} as Record<string, unknown>)['polluted'], undefined);
});

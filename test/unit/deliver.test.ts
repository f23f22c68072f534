import t from 'tap';
import { createDedupWindow } from '../../dist/dedup.js';
import { buildNotification, createDeliverer, type Fanout } from '../../dist/deliver.js';
import { createMetrics, type Metrics } from '../../dist/metrics.js';

const TS = 1_700_000_000_000;
let counter = 0;
const fixedId = () => `gen-${++counter}`;

type Row = { name: string; payload: string; id: string | 'generated'; data: unknown };

t.test('buildNotification wraps any payload in a frame that parses to {type, topic, id, ts, data}', async (t) => {
  const rows: Row[] = [
    { name: 'object with a string id', payload: '{"id":"n1","title":"hi"}', id: 'n1', data: { id: 'n1', title: 'hi' } },
    { name: 'object without id', payload: '{"title":"hi"}', id: 'generated', data: { title: 'hi' } },
    { name: 'numeric id', payload: '{"id":42}', id: 'generated', data: { id: 42 } },
    { name: 'null id', payload: '{"id":null}', id: 'generated', data: { id: null } },
    { name: 'object id', payload: '{"id":{"a":1}}', id: 'generated', data: { id: { a: 1 } } },
    { name: 'empty string id', payload: '{"id":""}', id: 'generated', data: { id: '' } },
    { name: 'id of 128 characters', payload: JSON.stringify({ id: 'i'.repeat(128) }), id: 'i'.repeat(128), data: { id: 'i'.repeat(128) } },
    { name: 'id of 129 characters', payload: JSON.stringify({ id: 'i'.repeat(129) }), id: 'generated', data: { id: 'i'.repeat(129) } },
    { name: 'id needing escapes', payload: '{"id":"a\\"b\\\\c\\n"}', id: 'a"b\\c\n', data: { id: 'a"b\\c\n' } },
    { name: 'unicode id', payload: '{"id":"🎉é"}', id: '🎉é', data: { id: '🎉é' } },
    { name: 'duplicate id keys: the last wins, as in the client', payload: '{"id":"a","id":"b"}', id: 'b', data: { id: 'b' } },
    {
      name: 'id nested under __proto__ is not the id',
      payload: '{"__proto__":{"id":"evil"}}',
      id: 'generated',
      data: JSON.parse('{"__proto__":{"id":"evil"}}'),
    },
    { name: 'array payload', payload: '[{"id":"x"},2]', id: 'generated', data: [{ id: 'x' }, 2] },
    { name: 'JSON string payload', payload: '"x"', id: 'generated', data: 'x' },
    { name: 'JSON number payload', payload: '42', id: 'generated', data: 42 },
    { name: 'JSON null payload', payload: 'null', id: 'generated', data: null },
    { name: 'JSON false payload', payload: 'false', id: 'generated', data: false },
    { name: 'non-JSON text', payload: 'hello world', id: 'generated', data: 'hello world' },
    { name: 'text that looks like JSON but is not', payload: '{"title":"hi"', id: 'generated', data: '{"title":"hi"' },
    { name: 'single-quoted object', payload: "{'id':'x'}", id: 'generated', data: "{'id':'x'}" },
    { name: 'empty string', payload: '', id: 'generated', data: '' },
    { name: 'whitespace only', payload: '  \n', id: 'generated', data: '  \n' },
    { name: 'payload with surrounding whitespace', payload: ' \n\t{"id":"w","a":1}\r\n ', id: 'w', data: { id: 'w', a: 1 } },
    { name: 'BOM before JSON is text', payload: '\uFEFF{"a":1}', id: 'generated', data: '\uFEFF{"a":1}' },
    { name: 'non-breaking space after JSON is text', payload: '{"a":1}\u00A0', id: 'generated', data: '{"a":1}\u00A0' },
    {
      name: 'unicode data',
      payload: '{"title":"héllo 🎉 日本","sep":"\u2028\u2029"}',
      id: 'generated',
      data: { title: 'héllo 🎉 日本', sep: '\u2028\u2029' },
    },
    { name: 'control characters in raw text', payload: 'a\u0000b\u001fc"d\\', id: 'generated', data: 'a\u0000b\u001fc"d\\' },
    { name: 'lone surrogate in raw text', payload: 'x\ud800y', id: 'generated', data: 'x\ud800y' },
    {
      name: 'script tag in raw text',
      payload: '</script><script>alert(1)</script>',
      id: 'generated',
      data: '</script><script>alert(1)</script>',
    },
    {
      name: 'large payload',
      payload: JSON.stringify({ id: 'big', body: 'x'.repeat(100_000) }),
      id: 'big',
      data: { id: 'big', body: 'x'.repeat(100_000) },
    },
  ];
  for (const row of rows) {
    const before = counter;
    const n = buildNotification('user:alice', row.payload, TS, fixedId);
    const expectedId = row.id === 'generated' ? `gen-${before + 1}` : row.id;
    t.equal(n.id, expectedId, `${row.name}: id`);
    t.equal(n.idFromPayload, row.id !== 'generated', `${row.name}: idFromPayload`);
    let frame: unknown;
    t.doesNotThrow(() => {
      frame = JSON.parse(n.frame);
    }, `${row.name}: frame parses`);
    t.same(frame, { type: 'notification', topic: 'user:alice', id: expectedId, ts: TS, data: row.data }, `${row.name}: frame`);
    t.strictSame(Object.keys(frame as object), ['type', 'topic', 'id', 'ts', 'data'], `${row.name}: exactly these keys`);
  }
});

t.test('buildNotification uses randomUUID by default, unique per call', async (t) => {
  const ids = new Set<string>();
  for (let i = 0; i < 1000; i++) ids.add(buildNotification('system', 'x', TS).id);
  t.equal(ids.size, 1000);
  for (const id of ids) {
    t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    break;
  }
});

t.test('a deeply nested payload is wrapped without recursion', async (t) => {
  const depth = 100_000;
  const payload = '['.repeat(depth) + ']'.repeat(depth);
  let n: ReturnType<typeof buildNotification> | undefined;
  t.doesNotThrow(() => {
    n = buildNotification('t', payload, TS, fixedId);
  });
  t.equal(n?.idFromPayload, false);
  t.ok(n?.frame.endsWith(`"data":${payload}}`), 'payload embedded as sent');
  let data: unknown = (JSON.parse(n?.frame ?? '{}') as { data: unknown }).data;
  let levels = 0;
  while (Array.isArray(data) && data.length > 0) {
    levels++;
    data = data[0];
  }
  t.equal(levels + (Array.isArray(data) ? 1 : 0), depth, 'the client sees every level');
});

t.test('the frame embeds valid JSON payloads as sent, not re-serialised', async (t) => {
  const payload = '{"b":1,  "a":[1,2.50,1e3]}';
  const n = buildNotification('t', payload, TS, fixedId);
  t.ok(n.frame.endsWith(`"data":${payload}}`), n.frame);
});

/** The injected fan-out seam (uWS app.publish), recording what it is handed. */
function recordingFanout(subscribers: Record<string, number>) {
  const published: Array<{ topic: string; frame: string }> = [];
  const fanout: Fanout = {
    publish(topic, frame) {
      published.push({ topic, frame });
      return true;
    },
    numSubscribers(topic) {
      return Object.hasOwn(subscribers, topic) ? (subscribers[topic] ?? 0) : 0;
    },
  };
  return { fanout, published };
}

async function counter_(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const match = values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return match?.value ?? 0;
}

function setup(subscribers: Record<string, number>, maxBytes = 1024) {
  const metrics = createMetrics();
  const { fanout, published } = recordingFanout(subscribers);
  const dedup = createDedupWindow({ windowMs: 60_000, maxEntries: 1000 });
  const deliverer = createDeliverer({ fanout, dedup, metrics, maxBytes });
  return { metrics, published, deliverer, dedup };
}

t.test('a notification is published once to its topic and counted once per subscriber', async (t) => {
  const { metrics, published, deliverer } = setup({ 'user:alice': 3 });
  t.equal(deliverer.deliver('user:alice', '{"id":"n1","title":"hi"}'), 'published');
  t.equal(published.length, 1);
  t.equal(published[0]?.topic, 'user:alice');
  t.has(JSON.parse(published[0]?.frame ?? 'null'), {
    type: 'notification',
    topic: 'user:alice',
    id: 'n1',
    data: { id: 'n1', title: 'hi' },
  });
  t.equal(await counter_(metrics, 'herald_notifications_published_total'), 1);
  t.equal(await counter_(metrics, 'herald_messages_sent_total'), 3);
  const latency = await metrics.registry.getSingleMetric('herald_delivery_latency_seconds')?.get();
  t.equal(
    latency?.values.find((v) => (v as { metricName?: string }).metricName === 'herald_delivery_latency_seconds_count')?.value,
    1,
    'one latency observation',
  );
});

t.test('a duplicate (topic, id) within the window is dropped and counted', async (t) => {
  const { metrics, published, deliverer } = setup({ 'user:alice': 1 });
  t.equal(deliverer.deliver('user:alice', '{"id":"n1"}'), 'published');
  t.equal(deliverer.deliver('user:alice', '{"id":"n1","other":"body"}'), 'duplicate');
  t.equal(deliverer.deliver('user:alice', ' {"id":"n1"} '), 'duplicate');
  t.equal(published.length, 1);
  t.equal(await counter_(metrics, 'herald_notifications_dropped_total', { reason: 'duplicate' }), 2);
  t.equal(await counter_(metrics, 'herald_notifications_published_total'), 1);
});

t.test('the same id on another topic is delivered', async (t) => {
  const { published, deliverer } = setup({ 'user:alice': 1, 'user:bob': 1 });
  t.equal(deliverer.deliver('user:alice', '{"id":"n1"}'), 'published');
  t.equal(deliverer.deliver('user:bob', '{"id":"n1"}'), 'published');
  t.strictSame(
    published.map((p) => p.topic),
    ['user:alice', 'user:bob'],
  );
});

t.test('a (topic, id) pair never passes for another pair whose parts join to the same text', async (t) => {
  // Topics contain ':' and ids may contain anything, so a naive join would collide.
  const { published, deliverer } = setup({ a: 1, 'a:b': 1, 'a:b:c': 1 });
  t.equal(deliverer.deliver('a', '{"id":"b:c"}'), 'published');
  t.equal(deliverer.deliver('a:b', '{"id":"c"}'), 'published');
  t.equal(deliverer.deliver('a', '{"id":"b\\nc"}'), 'published');
  t.equal(deliverer.deliver('a:b', '{"id":"\\nc"}'), 'published');
  t.equal(deliverer.deliver('a:b:c', '{"id":""}'), 'published');
  t.equal(published.length, 5);
});

t.test('notifications with generated ids are never deduplicated', async (t) => {
  const { metrics, published, deliverer, dedup } = setup({ system: 1 });
  for (const payload of ['{"title":"same"}', '{"title":"same"}', 'plain text', 'plain text', '{"id":5}', '{"id":5}', '[1]', '[1]']) {
    t.equal(deliverer.deliver('system', payload), 'published', payload);
  }
  t.equal(published.length, 8);
  t.equal(new Set(published.map((p) => (JSON.parse(p.frame) as { id: string }).id)).size, 8, 'every frame has its own id');
  t.equal(dedup.size, 0, 'generated ids are not stored');
  t.equal(await counter_(metrics, 'herald_notifications_dropped_total', { reason: 'duplicate' }), 0);
});

t.test('payloads over maxBytes are dropped and counted, measured in UTF-8 bytes', async (t) => {
  const rows: Array<[string, string, 'published' | 'too_large']> = [
    ['x'.repeat(100), '100 ASCII bytes', 'published'],
    ['x'.repeat(101), '101 ASCII bytes', 'too_large'],
    ['é'.repeat(50), '50 two-byte characters = 100 bytes', 'published'],
    ['é'.repeat(51), '51 two-byte characters = 102 bytes', 'too_large'],
    ['€'.repeat(34), '34 three-byte characters = 102 bytes', 'too_large'],
    [`${'€'.repeat(33)}x`, '33 three-byte characters and one = 100 bytes', 'published'],
    ['🎉'.repeat(25), '25 four-byte emoji = 100 bytes', 'published'],
    ['🎉'.repeat(26), '26 four-byte emoji = 104 bytes', 'too_large'],
    [JSON.stringify({ id: 'big', t: 'x'.repeat(200) }), 'JSON object with an id', 'too_large'],
    ['x'.repeat(1_000_000), 'a megabyte', 'too_large'],
  ];
  const { metrics, published, deliverer, dedup } = setup({ t: 1 }, 100);
  let tooLarge = 0;
  for (const [payload, name, want] of rows) {
    t.equal(deliverer.deliver('t', payload), want, name);
    if (want === 'too_large') tooLarge++;
  }
  t.equal(published.length, rows.length - tooLarge);
  t.equal(await counter_(metrics, 'herald_notifications_dropped_total', { reason: 'too_large' }), tooLarge);
  t.equal(dedup.size, 0, 'a dropped payload is not recorded for dedup');
});

t.test('a topic without subscribers is skipped before any parsing and counted as unrouted', async (t) => {
  const { metrics, published, deliverer, dedup } = setup({});
  t.equal(deliverer.deliver('user:nobody', '{"id":"n1"}'), 'no_subscribers');
  t.equal(deliverer.deliver('user:nobody', 'x'.repeat(1_000_000)), 'no_subscribers', 'not even the size is checked');
  t.equal(published.length, 0);
  t.equal(await counter_(metrics, 'herald_notifications_unrouted_total'), 2);
  t.equal(await counter_(metrics, 'herald_notifications_published_total'), 0);
  t.equal(await counter_(metrics, 'herald_messages_sent_total'), 0);
  t.equal(dedup.size, 0, 'nothing is recorded for dedup');
});

t.test('a recorded payload whose kind is known is embedded as stored, never parsed again', async (t) => {
  const position = { id: 'n-1', offset: '5-0', epoch: 'e1', ts: 5 };
  // Not JSON, but marked JSON when it was recorded: embedded as is, which shows no parse happened.
  const asIs = buildNotification('user:a', '{"a": 1,', 9, undefined, { ...position, json: true });
  t.equal(asIs.frame, '{"type":"notification","topic":"user:a","id":"n-1","ts":5,"offset":"5-0","epoch":"e1","data":{"a": 1,}');
  const text = buildNotification('user:a', '{"looks":"like json"}', 9, undefined, { ...position, json: false });
  t.same(JSON.parse(text.frame).data, '{"looks":"like json"}', 'marked text: a JSON string, whatever it looks like');
  const unchecked = buildNotification('user:a', ' {"a":1} ', 9, undefined, position);
  t.same(JSON.parse(unchecked.frame).data, { a: 1 }, 'unmarked (herald_publish without a kind): checked here');
});

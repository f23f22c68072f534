// The SDK's decoder of server frames (client/src/protocol.ts): typed frames for what
// PROTOCOL.md documents, undefined for anything else, unknown properties dropped.
import t from 'tap';
import { isTopic } from '../../client/dist/index.js';
import { type ClientFrame, decodeServerFrame, type ServerFrame } from '../../client/dist/protocol.js';
import {
  decodeClientFrame,
  encode,
  encodeNotification,
  type ClientFrame as GatewayClientFrame,
  type ServerFrame as GatewayServerFrame,
} from '../../dist/protocol.js';

// The SDK never imports gateway code, so the frame types exist twice. These two lines
// stop them drifting apart: tsc fails the test build if a frame the gateway sends does
// not fit the SDK's type, or a frame the SDK sends does not fit the gateway's.
const gatewayFramesFitTheSdk = (f: GatewayServerFrame): ServerFrame => f;
const sdkFramesFitTheGateway = (f: ClientFrame): GatewayClientFrame => f;

t.test('documented frames decode to their typed form', async (t) => {
  const rows: Array<[string, unknown]> = [
    [
      '{"type":"connected","connectionId":"c-1","userId":"alice","topics":["user:alice","system"],"heartbeatMs":30000,"serverTime":1795450121095}',
      {
        type: 'connected',
        connectionId: 'c-1',
        userId: 'alice',
        topics: ['user:alice', 'system'],
        heartbeatMs: 30000,
        serverTime: 1795450121095,
      },
    ],
    [
      '{"type":"notification","topic":"user:alice","id":"n-1","ts":1,"data":{"id":"n-1","title":"hi"}}',
      { type: 'notification', topic: 'user:alice', id: 'n-1', ts: 1, data: { id: 'n-1', title: 'hi' } },
    ],
    ['{"type":"notification","topic":"t","id":"n","ts":1,"data":null}', { type: 'notification', topic: 't', id: 'n', ts: 1, data: null }],
    ['{"type":"pong","id":"r1","ts":5}', { type: 'pong', id: 'r1', ts: 5 }],
    ['{"type":"pong","ts":5}', { type: 'pong', ts: 5 }],
    ['{"type":"subscribed","topic":"org:rio","id":1}', { type: 'subscribed', topic: 'org:rio', id: 1 }],
    ['{"type":"unsubscribed","topic":"org:rio"}', { type: 'unsubscribed', topic: 'org:rio' }],
    // The gateway's own changes (POST /control/subscribe, /control/unsubscribe): no id, server true.
    ['{"type":"subscribed","topic":"news","server":true}', { type: 'subscribed', topic: 'news', server: true }],
    ['{"type":"unsubscribed","topic":"news","server":true}', { type: 'unsubscribed', topic: 'news', server: true }],
    // Only `true` claims it: anything else is dropped like an unknown property.
    ['{"type":"subscribed","topic":"news","server":"true"}', { type: 'subscribed', topic: 'news' }],
    ['{"type":"unsubscribed","topic":"news","server":1,"id":2}', { type: 'unsubscribed', topic: 'news', id: 2 }],
    ['{"type":"acked","notificationId":"n1","id":"a"}', { type: 'acked', notificationId: 'n1', id: 'a' }],
    ['{"type":"marked_read","notificationId":"n1","id":9}', { type: 'marked_read', notificationId: 'n1', id: 9 }],
    // The list form of ack/mark_read (one reply for the whole frame).
    ['{"type":"acked","notificationIds":["n1","n2"],"id":"a"}', { type: 'acked', notificationIds: ['n1', 'n2'], id: 'a' }],
    ['{"type":"marked_read","notificationIds":["n1"],"id":9}', { type: 'marked_read', notificationIds: ['n1'], id: 9 }],
    // History replies: oldest first, each entry with its position; an empty page.
    [
      '{"type":"history","topic":"user:42","epoch":"18a2","notifications":[{"topic":"user:42","id":"n-1","ts":1,"offset":"1-0","epoch":"18a2","data":{"a":1}},{"topic":"user:42","id":"n-2","ts":2,"offset":"2-0","epoch":"18a2","data":null}],"id":3}',
      {
        type: 'history',
        topic: 'user:42',
        epoch: '18a2',
        notifications: [
          { topic: 'user:42', id: 'n-1', ts: 1, offset: '1-0', epoch: '18a2', data: { a: 1 } },
          { topic: 'user:42', id: 'n-2', ts: 2, offset: '2-0', epoch: '18a2', data: null },
        ],
        id: 3,
      },
    ],
    ['{"type":"history","topic":"t","epoch":"e","notifications":[]}', { type: 'history', topic: 't', epoch: 'e', notifications: [] }],
    [
      '{"type":"history","topic":"t","epoch":"e","notifications":[{"topic":"t","id":"n","ts":1,"offset":"1-0","epoch":"e","replayed":true,"x":1,"data":2}]}',
      { type: 'history', topic: 't', epoch: 'e', notifications: [{ topic: 't', id: 'n', ts: 1, offset: '1-0', epoch: 'e', data: 2 }] },
    ],
    [
      '{"type":"error","code":"history_unavailable","message":"no history","id":2}',
      { type: 'error', code: 'history_unavailable', message: 'no history', id: 2 },
    ],
    [
      '{"type":"error","code":"rate_limited","message":"too many messages","id":4,"retryAfterMs":4997}',
      { type: 'error', code: 'rate_limited', message: 'too many messages', id: 4, retryAfterMs: 4997 },
    ],
    ['{"type":"error","code":"some_future_code"}', { type: 'error', code: 'some_future_code', message: '' }],
    [
      '{"type":"authenticated","expiresAt":1795450121095,"topics":["user:a"],"revoked":["org:x"],"id":2}',
      { type: 'authenticated', expiresAt: 1795450121095, topics: ['user:a'], revoked: ['org:x'], id: 2 },
    ],
    ['{"type":"pong","ts":5,"extra":{"nested":true}}', { type: 'pong', ts: 5 }],
    // Durable delivery: the epoch, positions, replays, and resumed (a reply, or unsolicited).
    [
      '{"type":"connected","connectionId":"c-1","userId":"alice","topics":["user:alice"],"heartbeatMs":30000,"serverTime":1795450121095,"epoch":"18a2f3c4b5d6e7"}',
      {
        type: 'connected',
        connectionId: 'c-1',
        userId: 'alice',
        topics: ['user:alice'],
        heartbeatMs: 30000,
        serverTime: 1795450121095,
        epoch: '18a2f3c4b5d6e7',
      },
    ],
    [
      '{"type":"notification","topic":"user:42","id":"n-1","ts":1795450121095,"offset":"1795450121095-0","epoch":"18a2","data":{"a":1}}',
      { type: 'notification', topic: 'user:42', id: 'n-1', ts: 1795450121095, offset: '1795450121095-0', epoch: '18a2', data: { a: 1 } },
    ],
    [
      '{"type":"notification","topic":"user:42","id":"n-1","ts":1,"offset":"1-3","epoch":"18a2","replayed":true,"data":null}',
      { type: 'notification', topic: 'user:42', id: 'n-1', ts: 1, offset: '1-3', epoch: '18a2', replayed: true, data: null },
    ],
    [
      '{"type":"resumed","topics":{"user:42":{"recovered":true},"system":{"recovered":false}},"id":7}',
      { type: 'resumed', topics: { 'user:42': { recovered: true }, system: { recovered: false } }, id: 7 },
    ],
    [
      '{"type":"resumed","topics":{"user:42":{"recovered":false,"why":"x"}}}',
      { type: 'resumed', topics: { 'user:42': { recovered: false } } },
    ],
    ['{"type":"resumed","topics":{}}', { type: 'resumed', topics: {} }],
  ];
  for (const [text, want] of rows) t.same(decodeServerFrame(text), want, text);
});

t.test('a position is kept only whole and well-formed; replayed only when true', async (t) => {
  const base = { type: 'notification', topic: 't', id: 'n', ts: 1, data: 1 };
  const rows: Array<[Record<string, unknown>, Record<string, unknown>]> = [
    [{ offset: '1-0' }, {}], // no epoch: no position
    [{ epoch: 'e' }, {}],
    [{ offset: '1-0', epoch: '' }, {}],
    [{ offset: 'nope', epoch: 'e' }, {}],
    [{ offset: 5, epoch: 'e' }, {}],
    [{ offset: '1-0', epoch: 7 }, {}],
    [{ replayed: 'true' }, {}],
    [{ replayed: false }, {}],
    [
      { offset: '12-34', epoch: 'e', replayed: true },
      { offset: '12-34', epoch: 'e', replayed: true },
    ],
  ];
  for (const [extra, want] of rows) {
    t.same(decodeServerFrame(JSON.stringify({ ...base, ...extra })), { ...base, ...want }, JSON.stringify(extra));
  }
  t.same(
    decodeServerFrame('{"type":"connected","connectionId":"c","userId":"u","topics":[],"heartbeatMs":0,"serverTime":0,"epoch":5}'),
    { type: 'connected', connectionId: 'c', userId: 'u', topics: [], heartbeatMs: 0, serverTime: 0 },
    'an epoch that is not a string is dropped',
  );
  const proto = decodeServerFrame('{"type":"resumed","topics":{"__proto__":{"recovered":false}}}');
  t.same(Object.keys((proto as { topics: object }).topics), ['__proto__'], 'a topic named __proto__ stays a key');
  t.equal(Object.getPrototypeOf((proto as { topics: object }).topics), Object.prototype);
});

t.test('anything else is ignored (undefined): not JSON, not an object, unknown type, missing or mistyped fields', async (t) => {
  const rows = [
    '',
    'not json',
    '42',
    'null',
    '[]',
    '"connected"',
    '{}',
    '{"type":1}',
    '{"type":"hello"}',
    '{"type":"__proto__"}',
    '{"type":"constructor"}',
    '{"type":"toString"}',
    '{"type":"notification","topic":"t","id":"n","ts":1}', // no data
    '{"type":"notification","topic":"t","id":7,"ts":1,"data":1}', // a numeric id
    '{"type":"notification","topic":"t","id":"n","ts":"1","data":1}',
    '{"type":"connected","connectionId":"c","userId":"u","topics":[1],"heartbeatMs":0,"serverTime":0}',
    '{"type":"connected","connectionId":"c","userId":"u","topics":[],"heartbeatMs":null,"serverTime":0}',
    '{"type":"pong"}',
    '{"type":"subscribed","id":1}',
    '{"type":"unsubscribed","server":true}', // a server change without its topic
    '{"type":"acked","id":1}',
    '{"type":"acked","notificationIds":"n1"}',
    '{"type":"acked","notificationIds":[1]}',
    '{"type":"marked_read","notificationIds":null}',
    '{"type":"history","epoch":"e","notifications":[]}',
    '{"type":"history","topic":"t","notifications":[]}',
    '{"type":"history","topic":"t","epoch":"e"}',
    '{"type":"history","topic":"t","epoch":"e","notifications":{}}',
    // One entry that is not a whole notification with its position spoils the page: no partial page.
    '{"type":"history","topic":"t","epoch":"e","notifications":[null]}',
    '{"type":"history","topic":"t","epoch":"e","notifications":[{"topic":"t","id":"n","ts":1,"epoch":"e","data":1}]}',
    '{"type":"history","topic":"t","epoch":"e","notifications":[{"topic":"t","id":"n","ts":1,"offset":"x","epoch":"e","data":1}]}',
    '{"type":"history","topic":"t","epoch":"e","notifications":[{"topic":"t","id":"n","ts":1,"offset":"1-0","epoch":"","data":1}]}',
    '{"type":"history","topic":"t","epoch":"e","notifications":[{"topic":"t","id":"n","ts":1,"offset":"1-0","epoch":"e"}]}',
    '{"type":"history","topic":"t","epoch":"e","notifications":[{"topic":"t","id":5,"ts":1,"offset":"1-0","epoch":"e","data":1}]}',
    '{"type":"error","message":"no code"}',
    '{"type":"authenticated","revoked":[]}',
    '{"type":"resumed"}',
    '{"type":"resumed","topics":[]}',
    '{"type":"resumed","topics":null}',
    '{"type":"resumed","topics":{"t":true}}',
    '{"type":"resumed","topics":{"t":{}}}',
    '{"type":"resumed","topics":{"t":{"recovered":"yes"}}}',
  ];
  for (const text of rows) t.equal(decodeServerFrame(text), undefined, JSON.stringify(text));
});

t.test('an id that is not a string or a safe integer is dropped, never guessed', async (t) => {
  for (const id of ['1.5', '-1.5', '1e300', 'null', 'true', '{}', '[1]']) {
    t.same(decodeServerFrame(`{"type":"pong","ts":1,"id":${id}}`), { type: 'pong', ts: 1 }, id);
  }
});

t.test('topics follow the gateway grammar', async (t) => {
  for (const ok of ['org:rio', 'user:a@b.c', 'a', 'x'.repeat(128), 'feed:a_b-c.d']) t.ok(isTopic(ok), ok);
  for (const bad of ['', 'x'.repeat(129), 'org rio', 'org:*', 'usér:1', 'a\n', 'a/b']) t.notOk(isTopic(bad), JSON.stringify(bad));
});

t.test('every frame the gateway encodes decodes unchanged in the SDK', async (t) => {
  const frames: GatewayServerFrame[] = [
    { type: 'connected', connectionId: 'c', userId: 'u', topics: ['user:u', 'system'], heartbeatMs: 30000, serverTime: 1 },
    { type: 'pong', id: 'r1', ts: 2 },
    { type: 'pong', ts: 2 },
    { type: 'subscribed', topic: 'org:rio', id: 1 },
    { type: 'unsubscribed', topic: 'org:rio' },
    { type: 'subscribed', topic: 'news', server: true },
    { type: 'unsubscribed', topic: 'news', server: true },
    { type: 'acked', notificationId: 'n1', id: 'a' },
    { type: 'marked_read', notificationId: 'n1', id: 9 },
    { type: 'acked', notificationIds: ['n1', 'n2'], id: 'a' },
    { type: 'marked_read', notificationIds: ['n1'], id: 9 },
    { type: 'error', code: 'history_unavailable', message: 'no history on this gateway', id: 1 },
    { type: 'authenticated', expiresAt: 3, topics: ['user:u'], revoked: ['org:x'], id: 'renew-1' },
    { type: 'error', code: 'rate_limited', message: 'too many messages', id: 4, retryAfterMs: 4997 },
    { type: 'connected', connectionId: 'c', userId: 'u', topics: ['user:u'], heartbeatMs: 30000, serverTime: 1, epoch: '18a2f3c4b5d6e7' },
    { type: 'resumed', topics: { 'user:u': { recovered: true }, system: { recovered: false } }, id: 12 },
    { type: 'resumed', topics: { 'user:u': { recovered: false } } },
  ];
  for (const f of frames) t.same(decodeServerFrame(encode(f)), gatewayFramesFitTheSdk(f), f.type);
});

t.test('notification frames as the gateway builds them decode with their position', async (t) => {
  t.same(decodeServerFrame(encodeNotification('user:u', 'n-1', 5, '{"x":1}')), {
    type: 'notification',
    topic: 'user:u',
    id: 'n-1',
    ts: 5,
    data: { x: 1 },
  });
  t.same(decodeServerFrame(encodeNotification('user:u', 'n-1', 5, '{"x":1}', { offset: '5-0', epoch: '18a2' })), {
    type: 'notification',
    topic: 'user:u',
    id: 'n-1',
    ts: 5,
    offset: '5-0',
    epoch: '18a2',
    data: { x: 1 },
  });
  t.same(decodeServerFrame(encodeNotification('user:u', 'n-1', 5, '"s"', { offset: '5-1', epoch: '18a2', replayed: true })), {
    type: 'notification',
    topic: 'user:u',
    id: 'n-1',
    ts: 5,
    offset: '5-1',
    epoch: '18a2',
    replayed: true,
    data: 's',
  });
});

t.test("every frame the SDK sends passes the gateway's schema", async (t) => {
  const frames: ClientFrame[] = [
    { type: 'ping', id: 1 },
    { type: 'subscribe', topic: 'org:rio', id: 2 },
    { type: 'unsubscribe', topic: 'org:rio', id: 3 },
    { type: 'ack', notificationId: 'n-1', id: 4 },
    { type: 'mark_read', notificationId: 'n-1', id: 5 },
    { type: 'auth', token: 'eyJ.e30.sig', id: 6 },
    {
      type: 'resume',
      epoch: '18a2f3c4b5d6e7',
      topics: { 'user:42': { offset: '1795450121095-0' }, system: { since: 1795450119095 } },
      id: 7,
    },
  ];
  for (const f of frames) t.same(decodeClientFrame(JSON.stringify(f)), { kind: 'frame', frame: sdkFramesFitTheGateway(f) }, f.type);
});

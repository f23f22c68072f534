// POST /publish: the HTTP way for backends to notify. Embedded mode delivers to the
// gateway's own clients; Redis mode PUBLISHes, so every gateway on that Redis
// delivers. Bodies are bounded by HERALD_PUBLISH_MAX_BODY_BYTES whether or not
// the client says Content-Length, and batches by HERALD_PUBLISH_MAX_BATCH.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import t, { type Test } from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, type GatewayProcess, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

const KEY = 'publish-key-0123456789abcdef';
const MAX_BODY = 1024;
const MAX_BATCH = 3;

type Client = TestClient & { welcome: Frame };

interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

/** `authorization` null sends no Authorization header. */
async function post(base: string, body: unknown, authorization: string | null = `Bearer ${KEY}`): Promise<Reply> {
  const res = await fetch(`${base}/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization !== null ? { authorization } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

/** POST with `Transfer-Encoding: chunked` and no Content-Length, one write per chunk. */
function postChunked(
  base: string,
  chunks: string[],
): Promise<{ status: number; body: Record<string, unknown>; sentHeaders: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      timeout: 5000,
    });
    let answered = false;
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('response', (res) => {
      answered = true;
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString();
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, sentHeaders: req.getHeaders() }),
      );
      res.on('error', reject);
    });
    // The server may close as soon as it has answered 413: a late EPIPE is not a failure.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    for (const c of chunks) req.write(c);
    req.end();
  });
}

async function connect(t: Test, url: string, sub: string, roles: string[] = []): Promise<Client> {
  const c = await TestClient.connect(url, { headers: { authorization: `Bearer ${await token({ sub, roles })}` } });
  t.teardown(() => c.close());
  return c;
}

const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

/** POSTs a barrier to user:<userId> and asserts it is the next frame on each client, with nothing else waiting. */
async function barrier(t: Test, base: string, userId: string, ...clients: Client[]): Promise<void> {
  const marker = randomUUID();
  t.equal((await post(base, { topic: `user:${userId}`, data: { barrier: marker } })).status, 202);
  for (const c of clients) {
    t.same((await c.next('*'))['data'], { barrier: marker }, 'the barrier is the next frame: nothing was delivered before it');
    t.same(c.inbox, [], 'and nothing else is waiting');
  }
}

/** A valid single-item body of exactly `bytes` bytes. */
function bodyOfSize(topic: string, bytes: number): string {
  const shell = JSON.stringify({ topic, data: '' });
  return JSON.stringify({ topic, data: 'x'.repeat(bytes - Buffer.byteLength(shell)) });
}

t.test('embedded mode', async (t) => {
  const gw = await startGateway(
    baseEnv({
      HERALD_PUBLISH_KEY: KEY,
      HERALD_PUBLISH_MAX_BODY_BYTES: String(MAX_BODY),
      HERALD_PUBLISH_MAX_BATCH: String(MAX_BATCH),
    }),
  );
  t.teardown(() => gw.stop());

  t.test('a single notification is accepted with 202 {accepted: 1, notifications: [{topic, id}]} and delivered locally', async (t) => {
    const a = uid('a');
    const c = await connect(t, gw.ws, a);
    const r = await post(gw.http, { topic: `user:${a}`, data: { title: 'hi' } });
    t.equal(r.status, 202);
    const body = r.body as { notifications: Array<{ id: string }> };
    t.same(Object.keys(body), ['accepted', 'notifications']);
    t.match(body, { accepted: 1, notifications: [{ topic: `user:${a}`, id: /^[0-9a-f-]{36}$/ }] }, 'the id the gateway generated');
    t.notOk('offset' in (body.notifications[0] as object), 'no offset: embedded mode keeps no history');
    const n = await c.next('notification');
    t.equal(n['id'], body.notifications[0]?.id, 'the id delivered is the one the 202 named');
    t.equal(n['topic'], `user:${a}`);
    t.same(n['data'], { title: 'hi' });
    await barrier(t, gw.http, a, c);
  });

  t.test('an array is accepted with 202 {accepted: n} and delivered in order, whatever the data type', async (t) => {
    const a = uid('a');
    const c = await connect(t, gw.ws, a, ['ops']);
    const items = [
      { topic: `user:${a}`, data: 'a string' },
      { topic: 'role:ops', data: null },
    ];
    // The third item (of MAX_BATCH) goes to a topic nobody holds: accepted and listed too (PROTOCOL.md).
    const nobody = { topic: `user:${a}-nobody`, data: [1, 2] };
    const r = await post(gw.http, [...items, nobody]);
    t.equal(r.status, 202);
    const named = (r.body as { notifications: Array<{ topic: string; id: string }> }).notifications;
    t.match(r.body, { accepted: 3 });
    t.same(
      named.map((n) => n.topic),
      [...items, nobody].map((i) => i.topic),
      'one entry per item, in order, the one that reached no subscriber included',
    );
    t.equal(new Set(named.map((n) => n.id)).size, 3, 'each its own id');
    for (const [i, item] of items.entries()) {
      const n = await c.next('notification');
      t.same([n['topic'], n['data'], n['id']], [item.topic, item.data, named[i]?.id]);
    }
    await barrier(t, gw.http, a, c);
  });

  t.test('a data object with a string id keeps it as the notification id and is de-duplicated', async (t) => {
    const a = uid('a');
    const c = await connect(t, gw.ws, a);
    const id = randomUUID();
    const r = await post(gw.http, [
      { topic: `user:${a}`, data: { id, n: 1 } },
      { topic: `user:${a}`, data: { id, n: 2 } },
    ]);
    t.same(
      [r.status, r.body],
      [
        202,
        {
          accepted: 2,
          notifications: [
            { topic: `user:${a}`, id },
            { topic: `user:${a}`, id },
          ],
        },
      ],
      'both accepted and named by their own id (the repeat is dropped on delivery)',
    );
    const n = await c.next('notification');
    t.same([n['id'], n['data']], [id, { id, n: 1 }]);
    await barrier(t, gw.http, a, c);
  });

  t.test('a missing or wrong key gets 401 with WWW-Authenticate: Bearer and delivers nothing', async (t) => {
    const a = uid('a');
    const c = await connect(t, gw.ws, a);
    const item = { topic: `user:${a}`, data: { sneaky: true } };
    const rows: Array<[string, string | null]> = [
      ['no Authorization header', null],
      ['a wrong key', 'Bearer wrong-key-0123456789abcdef'],
      ['the key with one character missing', `Bearer ${KEY.slice(0, -1)}`],
      ['the key with a character more', `Bearer ${KEY}x`],
      ['the key under another scheme', `Basic ${KEY}`],
      ['the bare key', KEY],
      ['an empty bearer', 'Bearer '],
    ];
    for (const [what, authorization] of rows) {
      const r = await post(gw.http, item, authorization);
      t.equal(r.status, 401, `${what}: 401`);
      t.equal(r.headers.get('www-authenticate'), 'Bearer', `${what}: WWW-Authenticate`);
      t.same(r.body, { error: 'unauthorized', reason: 'invalid_publish_key' }, `${what}: reason`);
    }
    await barrier(t, gw.http, a, c);
  });

  t.test('a bad body gets 400 bad_request with a reason and a message, and nothing of it is delivered', async (t) => {
    const a = uid('a');
    const c = await connect(t, gw.ws, a);
    const ok = { topic: `user:${a}`, data: 'should not arrive' };
    const rows: Array<[string, string, string, RegExp]> = [
      ['invalid JSON', `{"topic":"user:${a}",`, 'invalid_json', /not valid JSON/],
      ['an empty body', '', 'invalid_json', /not valid JSON/],
      ['a bad topic', JSON.stringify({ topic: `user:${a} x`, data: 1 }), 'invalid_body', /topic/],
      ['a topic over 128 characters', JSON.stringify({ topic: `user:${'x'.repeat(124)}`, data: 1 }), 'invalid_body', /topic/],
      ['an extra property', JSON.stringify({ ...ok, extra: 1 }), 'invalid_body', /unexpected property "extra"/],
      ['a missing data', JSON.stringify({ topic: `user:${a}` }), 'invalid_body', /missing property "data"/],
      ['a missing topic', JSON.stringify({ data: 1 }), 'invalid_body', /missing property "topic"/],
      ['not an object', '42', 'invalid_body', /object/],
      ['an empty array', '[]', 'invalid_body', /empty/],
      [
        'a batch over HERALD_PUBLISH_MAX_BATCH',
        JSON.stringify(Array(MAX_BATCH + 1).fill(ok)),
        'too_many_items',
        new RegExp(`at most ${MAX_BATCH}`),
      ],
      ['a batch whose last item is bad', JSON.stringify([ok, ok, { topic: 'bad topic', data: 1 }]), 'invalid_body', /^\[2\]/],
    ];
    for (const [what, body, error, message] of rows) {
      const r = await post(gw.http, body);
      t.equal(r.status, 400, `${what}: 400`);
      t.equal(r.body['error'], 'bad_request', `${what}: error bad_request`);
      t.equal(r.body['reason'], error, `${what}: reason ${error}`);
      t.match(r.body['message'], message, `${what}: says why`);
    }
    await barrier(t, gw.http, a, c);
  });

  t.test('a body over HERALD_PUBLISH_MAX_BODY_BYTES gets 413, judged by Content-Length', async (t) => {
    const a = uid('a');
    const c = await connect(t, gw.ws, a);
    const atLimit = bodyOfSize(`user:${a}`, MAX_BODY);
    t.equal(Buffer.byteLength(atLimit), MAX_BODY);
    t.equal((await post(gw.http, atLimit)).status, 202, 'exactly the limit is accepted');
    t.equal((await c.next('notification'))['topic'], `user:${a}`);

    const r = await post(gw.http, bodyOfSize(`user:${a}`, MAX_BODY + 1));
    t.equal(r.status, 413);
    t.same(r.body, { error: 'payload_too_large', reason: 'body_too_large', limit: MAX_BODY });
    await barrier(t, gw.http, a, c);
  });

  t.test('a chunked body without Content-Length is bounded too: 202 under the limit, 413 over it', async (t) => {
    const a = uid('a');
    const c = await connect(t, gw.ws, a);
    const small = JSON.stringify({ topic: `user:${a}`, data: { via: 'chunks' } });
    const ok = await postChunked(gw.http, [small.slice(0, 10), small.slice(10)]);
    t.equal(ok.sentHeaders['content-length'], undefined, 'no Content-Length was sent');
    t.equal(ok.status, 202);
    t.same((await c.next('notification'))['data'], { via: 'chunks' });

    const big = bodyOfSize(`user:${a}`, MAX_BODY + 200);
    const r = await postChunked(gw.http, [big.slice(0, 600), big.slice(600)]);
    t.equal(r.status, 413);
    t.same(r.body, { error: 'payload_too_large', reason: 'body_too_large', limit: MAX_BODY });
    await barrier(t, gw.http, a, c);
  });

  t.test('other methods on /publish get 405 with Allow: POST', async (t) => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const res = await fetch(`${gw.http}/publish`, {
        method,
        headers: { authorization: `Bearer ${KEY}` },
        signal: AbortSignal.timeout(5000),
      });
      t.equal(res.status, 405, `${method}: 405`);
      t.equal(res.headers.get('allow'), 'POST', `${method}: Allow`);
      t.same(await res.json(), { error: 'method_not_allowed' });
    }
  });

  t.test('herald_publish_requests_total counts each answered request by status', async (t) => {
    const before = await scrape(gw.http);
    const a = uid('a');
    const expected: Record<string, number> = { 202: 2, 400: 3, 401: 2, 405: 1, 413: 2 };
    await post(gw.http, { topic: `user:${a}`, data: 1 });
    await post(gw.http, [
      { topic: `user:${a}`, data: 1 },
      { topic: `user:${a}`, data: 2 },
    ]);
    await post(gw.http, '{');
    await post(gw.http, '[]');
    await post(gw.http, { topic: 'no spaces allowed', data: 1 });
    await post(gw.http, { topic: `user:${a}`, data: 1 }, null);
    await post(gw.http, { topic: `user:${a}`, data: 1 }, 'Bearer nope');
    await post(gw.http, bodyOfSize(`user:${a}`, MAX_BODY + 1));
    await postChunked(gw.http, [bodyOfSize(`user:${a}`, MAX_BODY + 1)]);
    await fetch(`${gw.http}/publish`, { signal: AbortSignal.timeout(5000) }); // 405
    const after = await scrape(gw.http);
    for (const status of ['202', '400', '401', '405', '413', '503']) {
      const name = 'herald_publish_requests_total';
      t.equal(after.sum(name, { status }) - before.sum(name, { status }), expected[status] ?? 0, `status ${status}`);
    }
  });
});

t.test('without HERALD_PUBLISH_KEY, /publish does not exist (404)', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_PUBLISH_KEY: undefined }));
  t.teardown(() => gw.stop());
  const r = await post(gw.http, { topic: 'user:a', data: 1 });
  t.equal(r.status, 404);
  t.same(r.body, { error: 'not_found' });
  t.equal((await fetch(`${gw.http}/publish`, { signal: AbortSignal.timeout(5000) })).status, 404);
  t.equal((await post(gw.http, { topic: 'user:a', data: 1 }, null)).status, 404, 'with no key either');
});

t.test('redis mode', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const env = baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_PUBLISH_KEY: KEY });
  const gateways: GatewayProcess[] = [];
  for (let i = 0; i < 2; i++) {
    const gw = await startGateway(env);
    t.teardown(() => gw.stop());
    await gw.waitForLog((l) => l.msg === 'redis subscription active');
    gateways.push(gw);
  }
  const [gw1, gw2] = gateways as [GatewayProcess, GatewayProcess];

  t.test('a POST to one gateway is recorded, announced once in Redis and delivered by every gateway, once', async (t) => {
    const a = uid('a');
    const c1 = await connect(t, gw1.ws, a);
    const c2 = await connect(t, gw2.ws, a);
    const sub = redis.client();
    const seen: Array<[string, string]> = [];
    sub.on('message', (channel: string, message: string) => seen.push([channel, message]));
    sub.on('pmessage', (_p: string, channel: string, message: string) => seen.push([channel, message]));
    await sub.subscribe(`herald:notify:{user:${a}}`);
    await sub.psubscribe('notifications:*');

    const r = await post(gw1.http, { topic: `user:${a}`, data: { title: 'hi' } });
    t.equal(r.status, 202);
    const [f1, f2] = [await c1.next('notification'), await c2.next('notification')];
    for (const f of [f1, f2]) t.same(f['data'], { title: 'hi' });
    t.same([f1['id'], f1['offset']], [f2['id'], f2['offset']], 'the same notification on both');
    t.same(
      r.body,
      { accepted: 1, notifications: [{ topic: `user:${a}`, id: f1['id'], offset: f1['offset'] }] },
      'the 202 named its id and offset',
    );
    await barrier(t, gw1.http, a, c1, c2);
    // The gateways may deliver the barrier before this test's own subscriber hears its
    // announcement; Redis keeps order on that one connection, so once the barrier's is
    // in, any repeat of the first announcement is in too.
    const notified = (): Array<[string, string]> => seen.filter(([channel]) => channel.startsWith('herald:notify:'));
    await waitFor('the barrier announcement', () => notified().some(([, m]) => m.includes('"barrier"')), 5000);
    const announced = notified();
    t.equal(announced.length, 2, 'announced once each (the notification and the barrier), on the topic channel');
    t.equal(
      announced[0]?.[1],
      `${f1['offset']} ${f1['epoch']} j ${String(f1['id']).length} ${f1['id']}{"title":"hi"}`,
      'as <offset> <epoch> <kind: j = JSON> <id length> <id><data>',
    );
    t.same(
      seen.filter(([channel]) => channel.startsWith('notifications:')),
      [],
      'never on <prefix>:<topic>: no recorder is in its path',
    );
  });

  t.test("a batch is answered with each item's id and offset, in order: its own id or the derived one", async (t) => {
    const a = uid('a');
    const c = await connect(t, gw2.ws, a, ['ops']);
    const items = [
      { topic: `user:${a}`, data: { id: 'own-1', n: 1 } },
      { topic: 'role:ops', data: 'no id' },
      { topic: `user:${a}`, data: { n: 3 } },
    ];
    const r = await post(gw1.http, items);
    t.equal(r.status, 202);
    const named = (r.body as { accepted: number; notifications: Array<{ topic: string; id: string; offset: string }> }).notifications;
    t.same(
      named.map((n) => Object.keys(n)),
      [
        ['topic', 'id', 'offset'],
        ['topic', 'id', 'offset'],
        ['topic', 'id', 'offset'],
      ],
    );
    t.same(
      named.map((n) => n.topic),
      items.map((i) => i.topic),
    );
    t.equal(named[0]?.id, 'own-1');
    for (const n of named.slice(1)) t.match(n.id, new RegExp(`^${n.offset}@[0-9a-f]{8}$`), 'an id-less payload is named after its entry');
    const delivered = [await c.next('notification'), await c.next('notification'), await c.next('notification')];
    t.same(
      delivered.map((f) => [f['topic'], f['id'], f['offset']]),
      named.map((n) => [n.topic, n.id, n.offset]),
      'exactly what was delivered, by the other gateway too',
    );
  });

  t.test("with history off, an item's own id is named and one without is not (each gateway names it)", async (t) => {
    const off = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_PUBLISH_KEY: KEY, HERALD_HISTORY_SIZE: '0' }));
    t.teardown(() => off.stop());
    await off.waitForLog((l) => l.msg === 'redis subscription active');
    const a = uid('a');
    const r = await post(off.http, [
      { topic: `user:${a}`, data: { id: 'mine' } },
      { topic: `user:${a}`, data: 'no id' },
    ]);
    t.same([r.status, r.body], [202, { accepted: 2, notifications: [{ topic: `user:${a}`, id: 'mine' }, { topic: `user:${a}` }] }]);
  });

  t.test('with Redis down it answers 503 redis_unavailable, and 202 again once Redis is back', async (t) => {
    const a = uid('a');
    const c = await connect(t, gw2.ws, a);
    const before = await scrape(gw1.http);
    await redis.stop();
    const down = await post(gw1.http, { topic: `user:${a}`, data: 'lost' });
    t.equal(down.status, 503);
    t.same(down.body, { error: 'unavailable', reason: 'redis_unavailable' });

    await redis.start();
    let unavailable = 1;
    let accepted = 0;
    const nobody = `user:${uid('nobody')}`;
    await waitFor(
      'POST /publish accepted again',
      async () => {
        const r = await post(gw1.http, { topic: nobody, data: 'probe' });
        if (r.status === 503) unavailable++;
        else if (r.status === 202) accepted++;
        else throw new Error(`unexpected ${r.status} ${JSON.stringify(r.body)}`);
        return r.status === 202;
      },
      10_000,
      100,
    );
    t.pass('POST /publish answers 202 again');
    const after = await scrape(gw1.http);
    const count = (m: typeof after, status: string) => m.sum('herald_publish_requests_total', { status });
    t.equal(count(after, '503') - count(before, '503'), unavailable, 'every 503 counted');
    t.equal(count(after, '202') - count(before, '202'), accepted, 'every 202 counted');

    // Delivery resumes once gw2's subscriber is back.
    await waitFor(
      'gw2 ready again',
      async () => (await fetch(`${gw2.http}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200,
      10_000,
      50,
    );
    const back = await post(gw1.http, { topic: `user:${a}`, data: 'back' });
    t.equal(back.status, 202);
    t.equal(
      (await c.next('notification'))['data'],
      'back',
      'the next notification is the one sent after recovery: the 503 one was never sent',
    );
    // Redis came back without its data (a new epoch): gw2 cannot tell what its
    // subscription missed, so it says so for every topic its client holds.
    const signalled = [await c.next('resumed'), await c.next('resumed')].flatMap((f) => Object.entries(f['topics'] as object));
    t.same(
      new Map(signalled),
      new Map([
        [`user:${a}`, { recovered: false }],
        ['system', { recovered: false }],
      ]),
      'each held topic signalled recovered: false',
    );
    t.same(c.inbox, [], 'nothing else');
    t.equal(c.ws.readyState, c.ws.OPEN, 'the client stayed connected through the outage');
  });
});

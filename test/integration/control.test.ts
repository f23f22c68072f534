// The control API (issue 17): POST /control/{disconnect,unsubscribe,subscribe,revoke}
// on any gateway acts on the user's connections on every gateway (Redis: the user's
// control channel; embedded: this process), and is refused with the code table's
// answers when the key, method, body or Redis is wrong. Two gateways and a private
// redis-server; real ws clients; backends' calls over fetch.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import t, { type Test } from 'tap';
import { type Frame, refusedUpgrade, TestClient } from '../support/client.js';
import { CONTROL_KEY, closeOf, control, type HttpReply, PUBLISH_KEY, presence, presenceQuery, userCount } from '../support/control.js';
import { baseEnv, type GatewayProcess, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { type RedisServer, startRedis } from '../support/redis.js';
import { token } from '../support/tokens.js';

type Client = TestClient & { welcome: Frame };
const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;
const KEYS = { HERALD_CONTROL_KEY: CONTROL_KEY, HERALD_PUBLISH_KEY: PUBLISH_KEY };
/** Server-side subscribes beyond the base topics count against this. */
const MAX_TOPICS = 3;

async function redisGateways(t: Test, redis: RedisServer, n: number): Promise<GatewayProcess[]> {
  const out: GatewayProcess[] = [];
  for (let i = 0; i < n; i++) {
    const gw = await startGateway(
      baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_LOG_LEVEL: 'info', HERALD_MAX_TOPICS_PER_CONNECTION: String(MAX_TOPICS), ...KEYS }),
    );
    t.teardown(() => gw.stop('SIGKILL'));
    await gw.waitForLog((l) => l.msg === 'redis subscription active');
    out.push(gw);
  }
  return out;
}

async function connectWith(t: Test, gw: GatewayProcess, jwt: string): Promise<Client> {
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${jwt}` } });
  t.teardown(() => c.close());
  return c;
}

async function connect(t: Test, gw: GatewayProcess, sub: string, topics: string[] = []): Promise<Client> {
  return connectWith(t, gw, await token({ sub, topics }));
}

async function publish(gw: GatewayProcess, topic: string, data: unknown): Promise<void> {
  const res = await fetch(`${gw.http}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ topic, data }),
    signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 202) throw new Error(`/publish answered ${res.status}: ${await res.text()}`);
}

/** The connection still answers a ping. */
async function alive(t: Test, c: Client, what: string): Promise<void> {
  t.equal((await c.request({ type: 'ping', id: `alive-${randomUUID()}` }))['type'], 'pong', what);
}

/** A marker to each client's user topic (one per user) must be its next frame, with nothing else waiting. */
async function barrier(t: Test, gw: GatewayProcess, clients: Client[]): Promise<void> {
  const markers = new Map<string, string>();
  for (const c of clients) {
    const user = String(c.welcome['userId']);
    if (markers.has(user)) continue;
    markers.set(user, randomUUID());
    await publish(gw, `user:${user}`, { barrier: markers.get(user) });
  }
  for (const c of clients) {
    const f = await c.next('*');
    t.same(f['data'], { barrier: markers.get(String(c.welcome['userId'])) }, 'the barrier is the next frame: nothing came before it');
    t.same(c.inbox, [], 'and nothing else is waiting');
  }
}

const closedWith = (code: number, reason: string) => ({ code, reason });

t.test('two gateways, one redis-server', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const r = redis.client();
  const [a, b] = (await redisGateways(t, redis, 2)) as [GatewayProcess, GatewayProcess];

  t.test("disconnect closes the user's connections on both gateways with 4000 disconnected", async (t) => {
    const u = uid('d');
    const bystander = await connect(t, b, uid('other'));
    const conns = [await connect(t, a, u), await connect(t, a, u), await connect(t, b, u)];
    const before = await Promise.all([a, b].map((g) => scrape(g.http)));
    const res = await control(a.http, 'disconnect', { user: u });
    t.equal(res.status, 200);
    t.strictSame(res.body, { user: u, gateways: 2 }, 'both gateways held the user and heard it');
    for (const c of conns) t.strictSame(await closeOf(c), closedWith(4000, 'disconnected'));
    await alive(t, bystander, 'another user on the same gateway is untouched');
    const after = await Promise.all([a, b].map((g) => scrape(g.http)));
    t.strictSame(
      after.map(
        (m, i) =>
          m.value('herald_control_applied_total', { action: 'disconnect' }) -
          (before[i]?.value('herald_control_applied_total', { action: 'disconnect' }) ?? 0),
      ),
      [2, 1],
      'herald_control_applied_total counts the connections each gateway closed',
    );
    t.equal(
      after[0]?.value('herald_control_requests_total', { action: 'disconnect', status: '200' }),
      1,
      'the request counted where it was made',
    );
    await waitFor('the user to be offline', async () => (await userCount(b.http, u)) === 0, 5000, 50);
    // The gateways leave the user's control channel within their unsubscribe batch (about a second).
    await waitFor(
      'no gateway to hear the user',
      async () => (await control(b.http, 'disconnect', { user: u })).body['gateways'] === 0,
      5000,
      100,
    );
    t.pass('once no gateway holds the user, none hears it');
  });

  t.test('with reconnect:true the close is 4001 reconnect; `gateways` counts only the gateways holding the user', async (t) => {
    const u = uid('rc');
    const c = await connect(t, b, u);
    const res = await control(a.http, 'disconnect', { user: u, reconnect: true });
    t.strictSame(res.body, { user: u, gateways: 1 }, 'only gateway b holds the user');
    t.strictSame(await closeOf(c), closedWith(4001, 'reconnect'));
    const w = uid('rc');
    const d = await connect(t, a, w);
    t.strictSame((await control(b.http, 'disconnect', { user: w, reconnect: false })).body, { user: w, gateways: 1 });
    t.strictSame(await closeOf(d), closedWith(4000, 'disconnected'), 'reconnect:false is a plain disconnect');
  });

  t.test('with connectionId only that connection closes, on whichever gateway holds it', async (t) => {
    const u = uid('cid');
    const x = await connect(t, a, u);
    const y = await connect(t, b, u);
    const z = await connect(t, b, u);
    const res = await control(a.http, 'disconnect', { user: u, connectionId: y.welcome['connectionId'] });
    t.strictSame(res.body, { user: u, gateways: 2 }, 'both gateways hold the user and heard the message');
    t.strictSame(await closeOf(y), closedWith(4000, 'disconnected'));
    await alive(t, x, 'the connection on the other gateway stays');
    await alive(t, z, 'and so does the other one on the same gateway');
    const none = await control(b.http, 'disconnect', { user: u, connectionId: randomUUID() });
    t.equal(none.status, 200, 'an unknown connection id is no error');
    await alive(t, x, 'and closes nothing');
    await alive(t, z, 'nothing at all');
  });

  t.test("revoke closes the user's connections with older tokens on both gateways; those tokens are refused everywhere", async (t) => {
    const u = uid('rv');
    const old = await token({ sub: u }, { issuedAt: -60 });
    const r1 = await connectWith(t, a, old);
    const r2 = await connectWith(t, b, old);
    // Issued after the revocation (a clock a little ahead): stays.
    const later = await connectWith(t, b, await token({ sub: u }, { issuedAt: 60 }));
    const bystander = await connectWith(t, a, await token({ sub: uid('other') }, { issuedAt: -60 }));

    const startS = Math.floor(Date.now() / 1000);
    const res = await control(a.http, 'revoke', { user: u });
    const endS = Math.floor(Date.now() / 1000);
    t.equal(res.status, 200);
    t.match(res.body, { user: u, gateways: 2, revokedBefore: Number });
    t.strictSame(Object.keys(res.body).sort(), ['gateways', 'revokedBefore', 'user']);
    const revokedBefore = res.body['revokedBefore'] as number;
    t.ok(revokedBefore >= startS && revokedBefore <= endS, 'revokedBefore is the time of the request, in seconds');
    t.strictSame(await closeOf(r1), closedWith(1008, 'token_revoked'), 'closed on the gateway that took the request');
    t.strictSame(await closeOf(r2), closedWith(1008, 'token_revoked'), 'and on the other');
    await alive(t, later, 'a connection whose token was issued after the revocation stays');
    await alive(t, bystander, 'another user is untouched');

    t.equal(await r.get(`herald:revoked:{user:${u}}`), String(revokedBefore), 'stored in Redis');
    const ttl = await r.ttl(`herald:revoked:{user:${u}}`);
    t.ok(ttl > 604_700 && ttl <= 604_800, `kept for HERALD_JWT_MAX_LIFETIME_S (ttl ${ttl} s)`);

    for (const [name, gw] of [
      ['a', a],
      ['b', b],
    ] as const) {
      const refused = await refusedUpgrade(gw.ws, { headers: { authorization: `Bearer ${old}` } });
      t.equal(refused.status, 401, `the old token is refused on gateway ${name}`);
      t.strictSame(refused.body, { error: 'unauthorized', reason: 'token_revoked' });
    }
    const fresh = await token({ sub: u });
    const n1 = await connectWith(t, a, fresh);
    const n2 = await connectWith(t, b, fresh);
    t.equal(n1.welcome.type, 'connected', 'a token issued now connects on a');
    t.equal(n2.welcome.type, 'connected', 'and on b');

    // Renewal with an old token on open connections: one opened after the revocation, one before.
    for (const [name, c] of [
      ['opened after the revocation', n1],
      ['opened before it', later],
    ] as const) {
      const refused = await c.request({ type: 'auth', token: old, id: 'renew-old' });
      t.match(
        refused,
        { type: 'error', code: 'auth_failed', reason: 'token_revoked', id: 'renew-old' },
        `auth with an old token refused (${name})`,
      );
      await alive(t, c, 'the connection stays, on its current token');
      const renewed = await c.request({ type: 'auth', token: await token({ sub: u }), id: 'renew-new' });
      t.equal(renewed['type'], 'authenticated', 'a fresh token renews');
    }
    t.ok((await scrape(b.http)).value('herald_control_applied_total', { action: 'revoke' }) >= 1, 'counted');
  });

  t.test('server-side subscribe delivers a topic the token does not grant; unsubscribe stops it', async (t) => {
    const u = uid('ss');
    const secret = `secret:${uid('s')}`;
    const s1 = await connect(t, a, u, ['feed:*']);
    const s2 = await connect(t, b, u);
    const forbidden = await s1.request({ type: 'subscribe', topic: secret, id: 'own' });
    t.match(forbidden, { type: 'error', code: 'forbidden' }, 'the token does not grant the topic');

    const res = await control(b.http, 'subscribe', { user: u, topic: secret });
    t.strictSame(res.body, { user: u, gateways: 2 });
    for (const c of [s1, s2]) t.strictSame(await c.next('*'), { type: 'subscribed', topic: secret, server: true }, 'told first');
    await publish(a, secret, { n: 1 });
    for (const c of [s1, s2]) t.match(await c.next('*'), { type: 'notification', topic: secret, data: { n: 1 } }, 'then delivered');
    await waitFor('the topic to count 2', async () => (await presence(a.http, [], [secret])).topics[secret]?.connections === 2, 5000, 50);
    t.pass('presence counts the server-subscribed connections');

    // An `auth` renewal whose token does not grant it keeps it; a client-subscribed granted topic goes.
    t.equal((await s1.request({ type: 'subscribe', topic: 'feed:x', id: 'feed' }))['type'], 'subscribed');
    const renewed = await s1.request({ type: 'auth', token: await token({ sub: u }), id: 'renew' });
    t.equal(renewed['type'], 'authenticated');
    t.strictSame(renewed['revoked'], ['feed:x'], 'the granted topic the new token lacks is revoked, the server topic is not');
    t.ok((renewed['topics'] as string[]).includes(secret), 'the server topic is still held');
    await publish(b, secret, { n: 2 });
    t.match(await s1.next('*'), { type: 'notification', topic: secret, data: { n: 2 } }, 'delivered after the renewal');
    t.match(await s2.next('*'), { type: 'notification', topic: secret, data: { n: 2 } });

    t.strictSame((await control(a.http, 'subscribe', { user: u, topic: secret })).body, { user: u, gateways: 2 });
    await barrier(t, a, [s1, s2]);
    t.pass('subscribing again a connection that holds the topic sends nothing');

    t.strictSame((await control(a.http, 'unsubscribe', { user: u, topic: secret })).body, { user: u, gateways: 2 });
    for (const c of [s1, s2]) t.strictSame(await c.next('*'), { type: 'unsubscribed', topic: secret, server: true });
    await publish(a, secret, { n: 3 });
    await barrier(t, a, [s1, s2]);
    t.pass('no delivery after the server-side unsubscribe');
    t.strictSame((await control(b.http, 'unsubscribe', { user: u, topic: secret })).body, { user: u, gateways: 2 });
    await barrier(t, b, [s1, s2]);
    t.pass('unsubscribing a topic not held sends nothing');
    await waitFor('the topic to count 0', async () => (await presence(b.http, [], [secret])).topics[secret]?.connections === 0, 5000, 50);
    t.pass('and presence forgets it');
  });

  t.test('server-side subscribe skips a connection holding HERALD_MAX_TOPICS_PER_CONNECTION topics', async (t) => {
    const u = uid('full');
    const full = await connect(t, a, u, ['feed:*']);
    for (let i = 0; i < MAX_TOPICS; i++)
      t.equal((await full.request({ type: 'subscribe', topic: `feed:${i}`, id: i }))['type'], 'subscribed');
    const roomy = await connect(t, b, u);
    const topic = `secret:${uid('lim')}`;
    const before = (await scrape(a.http)).value('herald_control_applied_total', { action: 'subscribe' });
    t.strictSame((await control(a.http, 'subscribe', { user: u, topic })).body, { user: u, gateways: 2 });
    t.strictSame(await roomy.next('*'), { type: 'subscribed', topic, server: true }, 'the connection with room joins');
    await publish(a, topic, { n: 1 });
    t.match(await roomy.next('*'), { type: 'notification', topic });
    await barrier(t, a, [full]);
    t.pass('the full connection got neither the subscribed frame nor the notification');
    t.equal(
      (await scrape(a.http)).value('herald_control_applied_total', { action: 'subscribe' }),
      before,
      'and is not counted as acted on',
    );
  });

  t.test('two server-side subscribes at once: one subscribed frame, one topic counted', async (t) => {
    const u = uid('twice');
    const c = await connect(t, a, u, ['feed:*']);
    // A topic no connection holds: the first subscribe waits for Redis while the second comes.
    const topic = `secret:${uid('tw')}`;
    const answers = await Promise.all([control(a.http, 'subscribe', { user: u, topic }), control(b.http, 'subscribe', { user: u, topic })]);
    t.strictSame(
      answers.map((x) => x.status),
      [200, 200],
    );
    t.strictSame(await c.next('*'), { type: 'subscribed', topic, server: true });
    await barrier(t, a, [c]);
    t.pass('told once');
    t.strictSame((await control(a.http, 'unsubscribe', { user: u, topic })).status, 200);
    t.strictSame(await c.next('*'), { type: 'unsubscribed', topic, server: true });
    for (let i = 0; i < MAX_TOPICS; i++) {
      const res = await c.request({ type: 'subscribe', topic: `feed:tw${i}`, id: i });
      t.equal(res['type'], 'subscribed', `feed ${i + 1} of ${MAX_TOPICS}: the server topic left no slot taken`);
    }
  });

  t.test('an unsubscribe right after a subscribe, while Redis sets the topic up, leaves the connection unsubscribed', async (t) => {
    const u = uid('race');
    const c = await connect(t, a, u);
    const topics = Array.from({ length: 10 }, (_, i) => `secret:${uid(`r${i}`)}`);
    for (const topic of topics) {
      // A topic no connection holds: the subscribe waits for Redis while the unsubscribe comes
      // (one pair at a time: subscribes waiting count against HERALD_MAX_TOPICS_PER_CONNECTION).
      t.equal((await control(a.http, 'subscribe', { user: u, topic })).status, 200);
      t.equal((await control(a.http, 'unsubscribe', { user: u, topic })).status, 200);
      t.strictSame(await c.next('*'), { type: 'subscribed', topic, server: true }, `${topic}: subscribed`);
      t.strictSame(await c.next('*'), { type: 'unsubscribed', topic, server: true }, `${topic}: then unsubscribed`);
    }
    for (const topic of topics) await publish(a, topic, { n: 1 });
    await barrier(t, a, [c]);
    t.pass('none of the topics delivers');
  });

  t.test('refusals: key, method, path, body, query', async (t) => {
    const body = { user: 'someone' };
    const wrong = [null, 'not-the-key-0123456789', CONTROL_KEY.slice(0, -1)];
    for (const key of wrong) {
      const res = await control(a.http, 'disconnect', body, key);
      t.equal(res.status, 401, `/control with key ${String(key)}: 401`);
      t.strictSame(res.body, { error: 'unauthorized', reason: 'invalid_control_key' });
      t.equal(res.headers.get('www-authenticate'), 'Bearer');
      const p = await presenceQuery(a.http, 'user=someone', key);
      t.equal(p.status, 401, `/presence with key ${String(key)}: 401`);
      t.strictSame(p.body, { error: 'unauthorized', reason: 'invalid_control_key' });
      t.equal(p.headers.get('www-authenticate'), 'Bearer');
    }
    const basic = await fetch(`${a.http}/control/revoke`, {
      method: 'POST',
      headers: { authorization: `Basic ${CONTROL_KEY}` },
      body: JSON.stringify(body),
    });
    t.equal(basic.status, 401, 'the key under another scheme is refused');
    t.equal((await control(a.http, 'disconnect', body, `${CONTROL_KEY}x`)).status, 401, 'the key with a character more is refused');
    t.equal((await control(a.http, 'disconnect', body)).status, 200, 'the key itself is taken');

    for (const action of ['disconnect', 'unsubscribe', 'subscribe', 'revoke']) {
      const res = await control(
        a.http,
        action,
        { user: 'someone', ...(action.endsWith('subscribe') ? { topic: 'news' } : {}) },
        PUBLISH_KEY,
      );
      t.equal(res.status, 403, `the publish key on /control/${action}: 403`);
      t.strictSame(res.body, { error: 'forbidden', reason: 'control_key_required' });
    }
    const byPublisher = await presenceQuery(a.http, 'user=someone&topic=news', PUBLISH_KEY);
    t.equal(byPublisher.status, 200, 'the publish key reads presence');
    t.strictSame(byPublisher.body, { users: { someone: { online: false, connections: 0 } }, topics: { news: { connections: 0 } } });

    for (const method of ['GET', 'PUT', 'DELETE']) {
      const res = await fetch(`${a.http}/control/disconnect`, { method, headers: { authorization: `Bearer ${CONTROL_KEY}` } });
      t.equal(res.status, 405, `${method} /control/disconnect: 405`);
      t.equal(res.headers.get('allow'), 'POST');
      t.equal(((await res.json()) as Record<string, unknown>)['error'], 'method_not_allowed');
    }
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await fetch(`${a.http}/presence?user=x`, { method, headers: { authorization: `Bearer ${CONTROL_KEY}` } });
      t.equal(res.status, 405, `${method} /presence: 405`);
      t.equal(res.headers.get('allow'), 'GET');
      await res.arrayBuffer();
    }
    for (const path of ['/control/kick', '/control', '/control/', '/control/disconnect/x']) {
      const res = await fetch(`${a.http}${path}`, { method: 'POST', headers: { authorization: `Bearer ${CONTROL_KEY}` }, body: '{}' });
      t.equal(res.status, 404, `POST ${path}: 404`);
      await res.arrayBuffer();
    }

    const invalid: Array<[string, string, unknown]> = [
      ['disconnect', 'no user', {}],
      ['disconnect', 'an empty user', { user: '' }],
      ['disconnect', 'a user with a space', { user: 'a b' }],
      ['disconnect', 'a user with a colon', { user: 'a:b' }],
      ['disconnect', 'a user of 124 characters', { user: 'u'.repeat(124) }],
      ['disconnect', 'a numeric user', { user: 42 }],
      ['disconnect', 'a user list', { user: ['42'] }],
      ['disconnect', 'an unknown property', { user: '42', kick: true }],
      ['disconnect', '__proto__ as a property', JSON.parse('{"user":"42","__proto__":{"x":1}}')],
      ['disconnect', 'a topic on disconnect', { user: '42', topic: 'news' }],
      ['disconnect', 'an empty connectionId', { user: '42', connectionId: '' }],
      ['disconnect', 'a connectionId of 65 characters', { user: '42', connectionId: 'c'.repeat(65) }],
      ['disconnect', 'a connectionId with a slash', { user: '42', connectionId: 'a/b' }],
      ['disconnect', 'a numeric connectionId', { user: '42', connectionId: 7 }],
      ['disconnect', 'reconnect as a string', { user: '42', reconnect: 'yes' }],
      ['subscribe', 'no topic', { user: '42' }],
      ['subscribe', 'a topic with a space', { user: '42', topic: 'a b' }],
      ['subscribe', 'a topic of 129 characters', { user: '42', topic: 't'.repeat(129) }],
      ['subscribe', 'a wildcard topic', { user: '42', topic: 'feed:*' }],
      ['unsubscribe', 'a numeric topic', { user: '42', topic: 5 }],
      ['unsubscribe', 'reconnect on unsubscribe', { user: '42', topic: 'news', reconnect: true }],
      ['revoke', 'a topic on revoke', { user: '42', topic: 'news' }],
      ['revoke', 'before chosen by the caller', { user: '42', before: 0 }],
      ['revoke', 'an array body', [{ user: '42' }]],
      ['revoke', 'a string body', '"42"'],
      ['revoke', 'a null body', 'null'],
      ['revoke', 'a number body', '42'],
    ];
    for (const [action, name, bad] of invalid) {
      const res = await control(a.http, action, bad);
      t.equal(res.status, 400, `${action}, ${name}: 400`);
      t.match(res.body, { error: 'bad_request', reason: 'invalid_request', message: String }, `${name}: invalid_request with a message`);
    }
    for (const text of ['', 'not json', '{"user":', "{'user':'42'}", '{"user":"42"}x']) {
      const res = await control(a.http, 'disconnect', text);
      t.equal(res.status, 400, `body ${JSON.stringify(text)}: 400`);
      t.equal(res.body['reason'], 'invalid_json');
    }

    // 4096 bytes is within the limit (refused for its property), 4097 and 5000 are not.
    const padded = (bytes: number): string => {
      const shell = JSON.stringify({ user: '42', pad: '' });
      return JSON.stringify({ user: '42', pad: 'x'.repeat(bytes - shell.length) });
    };
    t.equal((await control(a.http, 'disconnect', padded(4096))).body['reason'], 'invalid_request', '4096 bytes are read');
    for (const bytes of [4097, 5000]) {
      const res = await control(a.http, 'disconnect', padded(bytes));
      t.equal(res.status, 413, `${bytes} bytes: 413`);
      t.strictSame(res.body, { error: 'payload_too_large', reason: 'body_too_large', limit: 4096 });
    }
    const chunked = await postChunked(`${a.http}/control/disconnect`, [padded(5000).slice(0, 2500), padded(5000).slice(2500)]);
    t.equal(chunked.status, 413, 'a chunked body without Content-Length is bounded too');
    t.equal(chunked.body['reason'], 'body_too_large');

    const users = (n: number): string => Array.from({ length: n }, (_, i) => `user=u${i}`).join('&');
    const badQueries: Array<[string, string]> = [
      ['no parameters', ''],
      ['101 parameters', users(101)],
      ['101 parameters, users and topics', `${users(60)}&${Array.from({ length: 41 }, (_, i) => `topic=t${i}`).join('&')}`],
      ['an unknown parameter', 'user=a&who=b'],
      ['a user with a space', 'user=a%20b'],
      ['an empty user', 'user='],
      ['a user of 124 characters', `user=${'u'.repeat(124)}`],
      ['a topic with a brace', 'topic=a%7Bb%7D'],
      ['a wildcard topic', 'topic=feed:*'],
      ['__proto__ as a parameter', '__proto__=x'],
    ];
    for (const [name, q] of badQueries) {
      const res = await presenceQuery(a.http, q);
      t.equal(res.status, 400, `presence, ${name}: 400`);
      t.match(res.body, { error: 'bad_request', reason: 'invalid_request', message: String });
    }
    const hundred = await presenceQuery(a.http, users(100));
    t.equal(hundred.status, 200, '100 parameters are allowed');
    t.equal(Object.keys(hundred.body['users'] as object).length, 100, 'and each is answered');
    const proto = await presenceQuery(a.http, 'user=__proto__&user=constructor&topic=__proto__');
    t.equal(proto.status, 200, 'prototype names are ordinary names');
    // JSON.parse makes `__proto__` an own key, as any JSON reader sees it.
    const protoUsers = proto.body['users'] as Record<string, unknown>;
    t.strictSame(Object.keys(protoUsers).sort(), ['__proto__', 'constructor'], 'both are answered as own keys');
    t.strictSame(Object.getOwnPropertyDescriptor(protoUsers, '__proto__')?.value, { online: false, connections: 0 });
    t.strictSame(protoUsers['constructor'], { online: false, connections: 0 });
    t.strictSame(Object.keys(proto.body['topics'] as object), ['__proto__']);
  });
});

/** POST with `Transfer-Encoding: chunked` and no Content-Length, one write per chunk. */
function postChunked(url: string, chunks: string[]): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${CONTROL_KEY}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
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
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, headers: new Headers() }),
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

t.test('Redis stopped: control and presence answer 503 redis_unavailable', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const [gw] = (await redisGateways(t, redis, 1)) as [GatewayProcess];
  t.equal((await control(gw.http, 'disconnect', { user: 'x' })).status, 200, 'answered while Redis is up');
  await redis.stop(); // this test's redis-server, by its pid
  await waitFor('the gateway to see Redis down', async () => (await scrape(gw.http)).value('herald_redis_up') === 0, 10_000, 50);
  for (const [action, body] of [
    ['disconnect', { user: 'x' }],
    ['subscribe', { user: 'x', topic: 'news' }],
    ['unsubscribe', { user: 'x', topic: 'news' }],
    ['revoke', { user: 'x' }],
  ] as const) {
    const res = await control(gw.http, action, body);
    t.equal(res.status, 503, `${action}: 503`);
    t.strictSame(res.body, { error: 'unavailable', reason: 'redis_unavailable' });
  }
  const p = await presenceQuery(gw.http, 'user=x');
  t.equal(p.status, 503, 'presence: 503');
  t.strictSame(p.body, { error: 'unavailable', reason: 'redis_unavailable' });
  t.equal((await control(gw.http, 'disconnect', { user: '' })).status, 400, 'a bad body is still a 400: checked before Redis');
  t.equal((await control(gw.http, 'disconnect', { user: 'x' }, null)).status, 401, 'and a missing key a 401');
  const m = await scrape(gw.http);
  t.equal(m.value('herald_control_requests_total', { action: 'revoke', status: '503' }), 1, 'counted by status');
  t.equal(m.value('herald_presence_requests_total', { status: '503' }), 1);
});

t.test('which routes exist follows the keys', async (t) => {
  const publishOnly = await startGateway(baseEnv({ HERALD_PUBLISH_KEY: PUBLISH_KEY }));
  t.teardown(() => publishOnly.stop('SIGKILL'));
  const none = await startGateway(baseEnv());
  t.teardown(() => none.stop('SIGKILL'));
  for (const action of ['disconnect', 'unsubscribe', 'subscribe', 'revoke']) {
    const res = await control(publishOnly.http, action, { user: 'x' }, PUBLISH_KEY);
    t.equal(res.status, 404, `/control/${action} is 404 without HERALD_CONTROL_KEY`);
  }
  t.equal((await fetch(`${publishOnly.http}/control/disconnect`)).status, 404, 'whatever the method');
  const p = await presenceQuery(publishOnly.http, 'user=x', PUBLISH_KEY);
  t.equal(p.status, 200, '/presence exists with the publish key alone');
  t.strictSame(p.body, { users: { x: { online: false, connections: 0 } }, topics: {} });
  t.equal((await presenceQuery(none.http, 'user=x', null)).status, 404, '/presence is 404 with neither key');
  t.equal((await control(none.http, 'disconnect', { user: 'x' }, null)).status, 404);
});

t.test('embedded mode (no Redis): presence and control act on this process', async (t) => {
  const gw = await startGateway(baseEnv({ HERALD_LOG_LEVEL: 'info', ...KEYS }));
  t.teardown(() => gw.stop('SIGKILL'));

  t.test('presence counts this process connections at once', async (t) => {
    const u = uid('e');
    const e1 = await connect(t, gw, u);
    const e2 = await connect(t, gw, u);
    t.strictSame(await presence(gw.http, [u], [`user:${u}`]), {
      users: { [u]: { online: true, connections: 2 } },
      topics: { [`user:${u}`]: { connections: 2 } },
    });
    await e2.close();
    await waitFor('one connection left', async () => (await userCount(gw.http, u)) === 1, 5000, 50);
    await e1.close();
    await waitFor('none left', async () => (await userCount(gw.http, u)) === 0, 5000, 50);
    t.strictSame((await presence(gw.http, [u])).users[u], { online: false, connections: 0 });
  });

  t.test('disconnect, subscribe and unsubscribe act locally', async (t) => {
    const u = uid('el');
    const secret = `secret:${uid('s')}`;
    const c = await connect(t, gw, u);
    t.strictSame((await control(gw.http, 'subscribe', { user: u, topic: secret })).body, { user: u, gateways: 1 });
    t.strictSame(await c.next('*'), { type: 'subscribed', topic: secret, server: true });
    await publish(gw, secret, { n: 1 });
    t.match(await c.next('*'), { type: 'notification', topic: secret, data: { n: 1 } });
    t.strictSame((await control(gw.http, 'unsubscribe', { user: u, topic: secret })).body, { user: u, gateways: 1 });
    t.strictSame(await c.next('*'), { type: 'unsubscribed', topic: secret, server: true });
    await publish(gw, secret, { n: 2 });
    await barrier(t, gw, [c]);
    t.strictSame((await control(gw.http, 'disconnect', { user: uid('nobody') })).body['gateways'], 0, 'nobody here: 0');
    t.strictSame((await control(gw.http, 'disconnect', { user: u, reconnect: true })).body, { user: u, gateways: 1 });
    t.strictSame(await closeOf(c), closedWith(4001, 'reconnect'));
  });

  t.test('revoke closes older tokens here and refuses them at reconnect and renewal', async (t) => {
    const u = uid('er');
    const old = await token({ sub: u }, { issuedAt: -60 });
    const c = await connectWith(t, gw, old);
    const res = await control(gw.http, 'revoke', { user: u });
    t.match(res.body, { user: u, gateways: 1, revokedBefore: Number });
    t.strictSame(await closeOf(c), closedWith(1008, 'token_revoked'));
    const refused = await refusedUpgrade(gw.ws, { headers: { authorization: `Bearer ${old}` } });
    t.equal(refused.status, 401, 'the old token is refused at reconnect');
    t.strictSame(refused.body, { error: 'unauthorized', reason: 'token_revoked' });
    const fresh = await connect(t, gw, u);
    t.equal(fresh.welcome.type, 'connected', 'a new token connects');
    t.match(await fresh.request({ type: 'auth', token: old, id: 1 }), { type: 'error', code: 'auth_failed', reason: 'token_revoked' });

    // A user with no connection here: the revocation is still kept.
    const v = uid('away');
    const vOld = await token({ sub: v }, { issuedAt: -60 });
    t.match((await control(gw.http, 'revoke', { user: v })).body, { user: v, gateways: 0, revokedBefore: Number });
    t.equal((await refusedUpgrade(gw.ws, { headers: { authorization: `Bearer ${vOld}` } })).body['reason'], 'token_revoked');
    t.equal((await connect(t, gw, v)).welcome.type, 'connected');
  });
});

// Tokens over time: a connection ends with 1008 token_expired when its JWT does, and
// an `auth` frame renews it in place (same user; the new claims replace the old
// grants and roles). One private redis-server and one gateway serve the file; each
// test uses its own users. "Did not receive" is proven with a barrier notification.
import { randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import t, { type Test } from 'tap';
import { type Frame, TestClient } from '../support/client.js';
import { baseEnv, startGateway } from '../support/gateway.js';
import { scrape } from '../support/prometheus.js';
import { startRedis } from '../support/redis.js';
import { type TokenOptions, token } from '../support/tokens.js';

const redis = await startRedis();
t.teardown(() => redis.close());
const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url, HERALD_LOG_LEVEL: 'info' }));
t.teardown(() => gw.stop());
await gw.waitForLog((l) => l.msg === 'redis subscription active');
const pub = redis.client();

type Client = TestClient & { welcome: Frame };
type Claims = { sub: string; roles?: string[]; topics?: string[] };

const uid = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

async function connect(t: Test, claims: Claims, opts: TokenOptions = {}): Promise<Client> {
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token(claims, opts)}` } });
  t.teardown(() => c.close());
  return c;
}

let seq = 0;
/** Publishes to `topic` through Redis and returns the notification id. */
async function publish(topic: string): Promise<string> {
  const id = `n${++seq}`;
  await pub.publish(`notifications:${topic}`, JSON.stringify({ id }));
  return id;
}

/** The ids of the notifications `c` received before a barrier sent to user:<sub>. */
async function receivedBeforeBarrier(c: Client, sub: string): Promise<string[]> {
  const barrier = await publish(`user:${sub}`);
  const ids: string[] = [];
  for (;;) {
    const f = await c.next('notification');
    if (f['id'] === barrier) return ids;
    ids.push(String(f['id']));
  }
}

t.test('a connection is closed with 1008 token_expired when its token expires, and counted', async (t) => {
  const before = (await scrape(gw.http)).value('herald_connections_closed_total', { reason: 'token_expired' });
  const jwt = await token({ sub: uid('expiring') }, { expiresIn: 2 });
  const exp = Number(decodeJwt(jwt).exp);
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${jwt}` } });
  t.teardown(() => c.close());
  const pong = await c.request({ type: 'ping', id: 1 });
  t.equal(pong.type, 'pong', 'open and answering before expiry');
  const closed = await c.closed;
  const lateMs = Date.now() - exp * 1000;
  t.strictSame(closed, { code: 1008, reason: 'token_expired' });
  t.ok(lateMs >= -50, `not closed before exp (${lateMs} ms after)`);
  t.ok(lateMs < 3000, `closed soon after exp (${lateMs} ms after)`);
  t.equal((await scrape(gw.http)).value('herald_connections_closed_total', { reason: 'token_expired' }), before + 1);
});

t.test('a connection whose token lasts an hour is not touched by the sweep', async (t) => {
  const short = await connect(t, { sub: uid('short') }, { expiresIn: 1 });
  const long = await connect(t, { sub: uid('long') });
  t.equal((await short.closed).reason, 'token_expired');
  t.equal((await long.request({ type: 'ping', id: 'still-here' })).type, 'pong');
});

t.test('an auth frame with a fresh token for the same user extends the connection past the old expiry', async (t) => {
  const sub = uid('renewer');
  const c = await connect(t, { sub }, { expiresIn: 2 });
  const fresh = await token({ sub }, { expiresIn: 3600 });
  const reply = await c.request({ type: 'auth', token: fresh, id: 'renew' });
  t.equal(reply.type, 'authenticated');
  const want = (Math.floor(Date.now() / 1000) + 3600) * 1000;
  t.ok(Math.abs(Number(reply['expiresAt']) - want) <= 1000, 'expiresAt is the new exp, in ms');
  t.strictSame(reply['revoked'], []);
  t.strictSame([...(reply['topics'] as string[])].sort(), [`user:${sub}`, 'system'].sort());
  // Outlive the first token by a margin, then prove the connection still works.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  t.equal((await c.request({ type: 'ping', id: 'after' })).type, 'pong', 'still open after the old exp');
  t.same(await receivedBeforeBarrier(c, sub), [], 'still receiving: the barrier arrived');
  t.equal((await scrape(gw.http)).value('herald_reauth_total', { result: 'ok' }) >= 1, true);
});

t.test('a renewed token that expires sooner moves the close earlier', async (t) => {
  const sub = uid('shorter');
  const c = await connect(t, { sub });
  const reply = await c.request({ type: 'auth', token: await token({ sub }, { expiresIn: 1 }), id: 1 });
  t.equal(reply.type, 'authenticated');
  t.strictSame(await c.closed, { code: 1008, reason: 'token_expired' });
});

t.test('refused renewals answer auth_failed with a reason and leave the old token in force', async (t) => {
  const sub = uid('refused');
  const rows: Array<{ name: string; token: () => Promise<string>; reason: string }> = [
    { name: "another user's token", token: () => token({ sub: uid('mallory') }), reason: 'subject_mismatch' },
    { name: 'an expired token', token: () => token({ sub }, { expiresIn: -60 }), reason: 'token_expired' },
    { name: 'a token signed with another secret', token: () => token({ sub }, { secret: 'x'.repeat(48) }), reason: 'invalid_signature' },
    { name: 'a token with an alg that is not allowed', token: () => token({ sub }, { alg: 'HS512' }), reason: 'algorithm_not_allowed' },
    { name: 'garbage', token: async () => 'not-a-jwt', reason: 'malformed_token' },
    {
      name: 'a token adding a role that contains a colon',
      token: () => token({ sub, roles: ['staff', 'staff:eu'] }),
      reason: 'invalid_claims',
    },
    { name: 'a token over HERALD_MAX_TOKEN_BYTES', token: () => token({ sub, pad: 'x'.repeat(6400) }), reason: 'token_too_large' },
  ];
  const c = await connect(t, { sub, roles: ['staff'] }, { expiresIn: 6 });
  for (const [i, row] of rows.entries()) {
    const before = (await scrape(gw.http)).value('herald_reauth_total', { result: row.reason });
    const reply = await c.request({ type: 'auth', token: await row.token(), id: i });
    t.equal(reply.type, 'error', row.name);
    t.equal(reply['code'], 'auth_failed', row.name);
    t.equal(reply['reason'], row.reason, row.name);
    t.equal((await scrape(gw.http)).value('herald_reauth_total', { result: row.reason }), before + 1, `${row.name}: counted`);
  }
  t.same(await receivedBeforeBarrier(c, sub), [], 'still the same user, still receiving');
  t.strictSame(await c.closed, { code: 1008, reason: 'token_expired' }, 'the first token still ends the connection');
});

t.test('an auth frame that fails the schema is invalid_message, not a verification', async (t) => {
  const c = await connect(t, { sub: uid('schema') });
  for (const [i, frame] of [
    { type: 'auth' },
    { type: 'auth', token: '' },
    { type: 'auth', token: 42 },
    { type: 'auth', token: 'a.b.c', extra: 1 },
  ].entries()) {
    const reply = await c.request({ ...frame, id: i });
    t.equal(reply['code'], 'invalid_message', JSON.stringify(frame));
  }
});

t.test('the new claims replace the old grants: topics no longer granted are unsubscribed', async (t) => {
  const sub = uid('grants');
  const org = uid('org');
  const c = await connect(t, { sub, topics: [`org:${org}-*`] });
  for (const topic of [`org:${org}-keep`, `org:${org}-lose`])
    t.equal((await c.request({ type: 'subscribe', topic, id: topic })).type, 'subscribed');

  const reply = await c.request({ type: 'auth', token: await token({ sub, topics: [`org:${org}-keep`] }), id: 'narrow' });
  t.equal(reply.type, 'authenticated');
  t.strictSame(reply['revoked'], [`org:${org}-lose`]);
  t.notOk((reply['topics'] as string[]).includes(`org:${org}-lose`));

  const kept = await publish(`org:${org}-keep`);
  await publish(`org:${org}-lose`);
  t.same(await receivedBeforeBarrier(c, sub), [kept], 'the revoked topic delivers nothing, the kept one does');

  const again = await c.request({ type: 'subscribe', topic: `org:${org}-lose`, id: 'again' });
  t.equal(again['code'], 'forbidden', 'and it cannot be subscribed again');
});

t.test('a role removed by the new token is unsubscribed and a role added is joined', async (t) => {
  const sub = uid('roles');
  const [oldRole, newRole] = [uid('old'), uid('new')];
  const c = await connect(t, { sub, roles: [oldRole] });
  t.ok((c.welcome['topics'] as string[]).includes(`role:${oldRole}`));
  const reply = await c.request({ type: 'auth', token: await token({ sub, roles: [newRole] }), id: 'roles' });
  t.strictSame(reply['revoked'], [`role:${oldRole}`]);
  t.ok((reply['topics'] as string[]).includes(`role:${newRole}`));
  await publish(`role:${oldRole}`);
  const joined = await publish(`role:${newRole}`);
  t.same(await receivedBeforeBarrier(c, sub), [joined], 'the old role delivers nothing, the new one does');
});

t.test('sockets and topics are released after expiry: nothing is left on the wheel or in uWS', async (t) => {
  const users = Array.from({ length: 50 }, () => uid('bulk'));
  const base = await scrape(gw.http);
  const clients = await Promise.all(users.map((sub) => connect(t, { sub, topics: [`inbox:${sub}`] }, { expiresIn: 2 })));
  await Promise.all(clients.map((c, i) => c.request({ type: 'subscribe', topic: `inbox:${users[i]}`, id: 1 })));
  const closes = await Promise.all(clients.map((c) => c.closed));
  t.ok(
    closes.every((c) => c.code === 1008 && c.reason === 'token_expired'),
    'all 50 closed by the sweep',
  );
  const after = await scrape(gw.http);
  t.equal(after.value('herald_connections'), base.value('herald_connections'));
  t.equal(after.value('herald_topics'), base.value('herald_topics'), 'their user: and inbox: topics are gone');
});

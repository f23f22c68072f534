// Admission control and request limits on real upgrades: the global cap (503), the
// per-address cap and upgrade rate (429, Retry-After: 1), X-Forwarded-For only behind
// a trusted proxy, and oversized requests refused before any JWT work. Each test
// starts its own gateway with the one limit it exercises, so counts never mix.
// Clients are spread over 127.0.0.x with ws's localAddress to get distinct addresses.

import { connect as tcpConnect } from 'node:net';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { type Frame, TestClient } from '../support/client.js';
import { type RawResponse, rawExchange, wsFrameText } from '../support/fuzz.js';
import { baseEnv, type GatewayProcess, startGateway } from '../support/gateway.js';
import { waitFor } from '../support/ports.js';
import { scrape } from '../support/prometheus.js';
import { TEST_SECRET, token } from '../support/tokens.js';

type Client = TestClient & { welcome: Frame };

interface Refused {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

interface AttemptOptions {
  headers?: Record<string, string>;
  protocols?: string[];
  localAddress?: string;
}

async function gateway(t: Test, env: Record<string, string>): Promise<GatewayProcess> {
  const gw = await startGateway(baseEnv(env));
  t.teardown(() => gw.stop());
  return gw;
}

const bearer = async (sub: string) => ({ authorization: `Bearer ${await token({ sub })}` });

async function connect(t: Test, gw: GatewayProcess, sub: string, opts: AttemptOptions = {}): Promise<Client> {
  const c = await TestClient.connect(gw.ws, { ...opts, headers: { ...(await bearer(sub)), ...opts.headers } });
  t.teardown(() => c.close());
  return c;
}

/**
 * One upgrade attempt that may succeed or be refused (support's refusedUpgrade has no
 * localAddress). An accepted socket is terminated at once: only the outcome matters.
 */
function attempt(url: string, opts: AttemptOptions = {}): Promise<{ status: 101 } | Refused> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? [], {
      ...(opts.headers !== undefined ? { headers: opts.headers } : {}),
      ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
    });
    ws.once('open', () => {
      ws.terminate();
      resolve({ status: 101 });
    });
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString();
      });
      res.on('end', () => {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          body = { raw: text };
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
        ws.terminate();
      });
    });
  });
}

async function refused(url: string, opts: AttemptOptions = {}): Promise<Refused> {
  const r = await attempt(url, opts);
  if (r.status === 101) throw new Error('upgrade unexpectedly succeeded');
  return r as Refused;
}

const admissionRefused = async (gw: GatewayProcess, reason: string) =>
  (await scrape(gw.http)).value('herald_admission_refused_total', { reason });

t.test(
  'with HERALD_MAX_CONNECTIONS=3 the fourth upgrade gets 503 too_many_connections with Retry-After, and a closed connection frees its place',
  async (t) => {
    const gw = await gateway(t, { HERALD_MAX_CONNECTIONS: '3' });
    const clients = [
      await connect(t, gw, 'a', { localAddress: '127.0.0.2' }),
      await connect(t, gw, 'b', { localAddress: '127.0.0.3' }),
      await connect(t, gw, 'c', { localAddress: '127.0.0.4' }),
    ];
    const r = await refused(gw.ws, { headers: await bearer('d'), localAddress: '127.0.0.5' });
    t.equal(r.status, 503);
    t.strictSame(r.body, { error: 'unavailable', reason: 'too_many_connections' });
    t.equal(r.headers['retry-after'], '1', 'Retry-After: 1');
    t.equal(await admissionRefused(gw, 'too_many_connections'), 1, 'counted once in herald_admission_refused_total');

    await clients[0]?.close();
    await waitFor('the gateway to count 2 open connections', async () => (await scrape(gw.http)).value('herald_connections') === 2, 3000);
    const d = await connect(t, gw, 'd', { localAddress: '127.0.0.5' });
    t.equal(d.welcome.type, 'connected', 'a new client takes the released place');
    t.equal(await admissionRefused(gw, 'too_many_connections'), 1, 'and was not refused');
  },
);

t.test(
  'with HERALD_MAX_CONNECTIONS_PER_IP=2 a third connection from one address gets 429 while another address still connects',
  async (t) => {
    const gw = await gateway(t, { HERALD_MAX_CONNECTIONS_PER_IP: '2' });
    await connect(t, gw, 'a1', { localAddress: '127.0.0.2' });
    await connect(t, gw, 'a2', { localAddress: '127.0.0.2' });
    const r = await refused(gw.ws, { headers: await bearer('a3'), localAddress: '127.0.0.2' });
    t.equal(r.status, 429);
    t.strictSame(r.body, { error: 'too_many_requests', reason: 'too_many_connections_from_address' });
    t.equal(r.headers['retry-after'], '1', 'Retry-After: 1');
    const other = await connect(t, gw, 'b1', { localAddress: '127.0.0.3' });
    t.equal(other.welcome.type, 'connected', '127.0.0.3 is not affected');
    t.equal(await admissionRefused(gw, 'too_many_connections_from_address'), 1);
  },
);

t.test('an upgrade refused for a bad token does not use up a place for its address', async (t) => {
  const gw = await gateway(t, { HERALD_MAX_CONNECTIONS_PER_IP: '2' });
  for (let i = 0; i < 5; i++) {
    const r = await refused(gw.ws, { headers: { authorization: 'Bearer not-a-jwt' }, localAddress: '127.0.0.2' });
    t.equal(r.status, 401, `bad token ${i + 1} gets 401`);
  }
  const missing = await refused(gw.ws, { localAddress: '127.0.0.2' });
  t.equal(missing.status, 401, 'and so does an upgrade with no token at all');
  await connect(t, gw, 'ok1', { localAddress: '127.0.0.2' });
  const second = await connect(t, gw, 'ok2', { localAddress: '127.0.0.2' });
  t.equal(second.welcome.type, 'connected', 'two good tokens still connect from the same address');
  t.equal(await admissionRefused(gw, 'too_many_connections_from_address'), 0);
});

t.test(
  'with HERALD_UPGRADE_RATE_PER_IP=3 a burst of 5 from one address gets 429 upgrade_rate_exceeded for some, and another address is unaffected',
  async (t) => {
    const gw = await gateway(t, { HERALD_UPGRADE_RATE_PER_IP: '3' });
    const headers = await bearer('burst');
    const results = await Promise.all(Array.from({ length: 5 }, () => attempt(gw.ws, { headers, localAddress: '127.0.0.2' })));
    const ok = results.filter((r) => r.status === 101).length;
    const limited = results.filter((r): r is Refused => r.status === 429);
    // A burst of 3 is allowed; refilling at 3/s, a fourth could sneak in on a slow machine.
    t.ok(ok >= 3 && ok <= 4, `3 (at most 4) of 5 upgrade, got ${ok}`);
    t.equal(ok + limited.length, 5, 'every other attempt is a 429');
    for (const r of limited) {
      t.strictSame(r.body, { error: 'too_many_requests', reason: 'upgrade_rate_exceeded' });
      t.equal(r.headers['retry-after'], '1');
    }
    t.equal(await admissionRefused(gw, 'upgrade_rate_exceeded'), limited.length, 'each refusal counted');
    const other = await connect(t, gw, 'other', { localAddress: '127.0.0.3' });
    t.equal(other.welcome.type, 'connected', '127.0.0.3 has its own bucket');
  },
);

t.test('with HERALD_TRUST_PROXY=true the per-address cap follows the first X-Forwarded-For hop', async (t) => {
  const gw = await gateway(t, { HERALD_TRUST_PROXY: 'true', HERALD_MAX_CONNECTIONS_PER_IP: '1' });
  await connect(t, gw, 'x1', { headers: { 'x-forwarded-for': '203.0.113.1, 10.0.0.1' } });
  const second = await connect(t, gw, 'x2', { headers: { 'x-forwarded-for': '203.0.113.2, 10.0.0.1' } });
  t.equal(second.welcome.type, 'connected', 'same socket address, different first hop: both connect');
  const r = await refused(gw.ws, { headers: { ...(await bearer('x3')), 'x-forwarded-for': ' 203.0.113.1 ,10.0.0.9' } });
  t.equal(r.status, 429, 'a repeated first hop is over the cap');
  t.equal(r.body['reason'], 'too_many_connections_from_address');
});

t.test(
  'IPv6 clients count by their /64 (HERALD_IPV6_PREFIX): a second address of the same /64 is over a per-address cap of 1',
  async (t) => {
    // Behind a trusted proxy, so the test can choose IPv6 client addresses.
    const gw = await gateway(t, { HERALD_TRUST_PROXY: 'true', HERALD_MAX_CONNECTIONS_PER_IP: '1' });
    await connect(t, gw, 'v6a', { headers: { 'x-forwarded-for': '2001:db8:1:2::a' } });
    const r = await refused(gw.ws, { headers: { ...(await bearer('v6b')), 'x-forwarded-for': '2001:db8:1:2:ffff:ffff:ffff:b' } });
    t.equal(r.status, 429, 'another address of 2001:db8:1:2::/64 is the same client');
    t.equal(r.body['reason'], 'too_many_connections_from_address');
    const next = await connect(t, gw, 'v6c', { headers: { 'x-forwarded-for': '2001:db8:1:3::a' } });
    t.equal(next.welcome.type, 'connected', 'the next /64 is another client');
    const v4 = await connect(t, gw, 'v4', { headers: { 'x-forwarded-for': '203.0.113.9' } });
    t.equal(v4.welcome.type, 'connected', 'IPv4 addresses are unaffected');
  },
);

t.test('with HERALD_IPV6_PREFIX=128 every IPv6 address is its own client', async (t) => {
  const gw = await gateway(t, { HERALD_TRUST_PROXY: 'true', HERALD_MAX_CONNECTIONS_PER_IP: '1', HERALD_IPV6_PREFIX: '128' });
  await connect(t, gw, 'v6a', { headers: { 'x-forwarded-for': '2001:db8:1:2::a' } });
  const b = await connect(t, gw, 'v6b', { headers: { 'x-forwarded-for': '2001:db8:1:2::b' } });
  t.equal(b.welcome.type, 'connected');
  const r = await refused(gw.ws, { headers: { ...(await bearer('v6a2')), 'x-forwarded-for': '2001:db8:1:2:0:0:0:a' } });
  t.equal(r.status, 429, 'the same address written another way is still the same client');
});

t.test('on a dual-stack listener (HERALD_HOST=::) IPv4 clients keep one place each and ::1 counts on its own', async (t) => {
  // uWS reports IPv4 clients of a :: listener as IPv4-mapped IPv6 addresses, which all
  // share one /64: they must count as their IPv4 addresses, not as one client.
  const gw = await gateway(t, { HERALD_HOST: '::', HERALD_MAX_CONNECTIONS_PER_IP: '1' });
  await connect(t, gw, 'd2', { localAddress: '127.0.0.2' });
  const d3 = await connect(t, gw, 'd3', { localAddress: '127.0.0.3' });
  t.equal(d3.welcome.type, 'connected', '127.0.0.3 is not 127.0.0.2');
  const again = await refused(gw.ws, { headers: await bearer('d2b'), localAddress: '127.0.0.2' });
  t.equal(again.status, 429, 'a second connection from 127.0.0.2 is over its cap');
  const v6 = await TestClient.connect(`ws://[::1]:${gw.port}/ws`, { headers: await bearer('d6') });
  t.teardown(() => v6.close());
  t.equal(v6.welcome.type, 'connected', '::1 is another client');
  const v6again = await refused(`ws://[::1]:${gw.port}/ws`, { headers: await bearer('d6b') });
  t.equal(v6again.status, 429, 'and has its own cap');
});

t.test('without HERALD_TRUST_PROXY, X-Forwarded-For is ignored and the socket address counts', async (t) => {
  const gw = await gateway(t, { HERALD_MAX_CONNECTIONS_PER_IP: '1' });
  await connect(t, gw, 'y1', { headers: { 'x-forwarded-for': '203.0.113.1' } });
  const r = await refused(gw.ws, { headers: { ...(await bearer('y2')), 'x-forwarded-for': '203.0.113.2' } });
  t.equal(r.status, 429, 'a different X-Forwarded-For from the same socket address does not help');
  t.equal(r.body['reason'], 'too_many_connections_from_address');
});

t.test('oversized upgrade requests are refused before any token work, each with its reason and counted', async (t) => {
  const gw = await gateway(t, { HERALD_MAX_TOKEN_BYTES: '1024' });
  const headers = await bearer('limits');

  const query = await refused(`${gw.ws}?pad=${'a'.repeat(10 * 1024)}`, { headers });
  t.equal(query.status, 414, 'a 10 KB query (limit 1024 + 1024) gets 414');
  t.strictSame(query.body, { error: 'uri_too_long', reason: 'uri_too_long' });

  const protocols = Array.from({ length: 9 }, (_, i) => `p${i}`);
  const many = await refused(gw.ws, { headers, protocols });
  t.equal(many.status, 400, '9 Sec-WebSocket-Protocol entries get 400');
  t.strictSame(many.body, { error: 'bad_request', reason: 'too_many_protocols' });

  const big = await refused(gw.ws, { headers: { authorization: `Bearer ${'x'.repeat(2048)}` } });
  t.equal(big.status, 401, 'a 2 KB Authorization header gets 401');
  t.equal(big.body['reason'], 'token_too_large');

  const m = await scrape(gw.http);
  t.equal(m.value('herald_admission_refused_total', { reason: 'uri_too_long' }), 1);
  t.equal(m.value('herald_admission_refused_total', { reason: 'too_many_protocols' }), 1);
  t.equal(m.value('herald_auth_failures_total', { reason: 'token_too_large' }), 1);
  t.equal(m.value('herald_connections_opened_total'), 0, 'nothing was upgraded');

  const eight = await connect(t, gw, 'eight', { protocols: ['herald.v1', ...Array.from({ length: 7 }, (_, i) => `p${i}`)] });
  t.equal(eight.ws.protocol, 'herald.v1', 'eight entries are still accepted');
});

/**
 * One raw upgrade request with `connection` as its Connection header: the response,
 * and whether the server closed the socket within a second (past the drop this uWS
 * build makes right after upgrading a Connection: close request, and the 400's close).
 */
async function rawUpgrade(
  port: number,
  connection: string,
  authorization: string,
): Promise<{ response: RawResponse | undefined; closedByServer: boolean }> {
  const head = Buffer.from(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: ${connection}\r\nUpgrade: websocket\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: ${authorization}\r\n\r\n`,
  );
  const r = await rawExchange({ port, head, deadlineMs: 1000, awaitClose: true, keep: true });
  if (r.socket === undefined) return { response: r.response, closedByServer: r.end !== 'deadline' };
  const socket = r.socket;
  // The server's FIN may have been read with the 101 already.
  const closed =
    socket.readableEnded ||
    socket.destroyed ||
    (await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 1000);
      const ended = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      socket.on('error', () => undefined); // a reset ends like a close: 'close' follows
      socket.once('end', ended);
      socket.once('close', ended);
    }));
  socket.destroy();
  return { response: r.response, closedByServer: closed };
}

t.test(
  'an upgrade whose Connection header does not list upgrade is refused with 400; the usual forms are upgraded and stay open',
  async (t) => {
    const gw = await gateway(t, {});
    const { authorization } = await bearer('conn');
    for (const connection of ['close', 'keep-alive']) {
      const r = await rawUpgrade(gw.port, connection, authorization);
      t.equal(r.response?.status, 400, `Connection: ${connection} gets 400`);
      t.equal(r.response?.body.toString(), '{"error":"bad_request","reason":"connection_not_upgrade"}');
      t.ok(r.closedByServer, 'and the connection is closed after the reply');
    }
    for (const connection of ['Upgrade', 'keep-alive, Upgrade', 'upgrade']) {
      const r = await rawUpgrade(gw.port, connection, authorization);
      t.equal(r.response?.status, 101, `Connection: ${connection} is upgraded`);
      t.match(r.response === undefined ? '' : wsFrameText(r.response.body), /"type":"connected"/, 'the connected frame arrives');
      t.notOk(r.closedByServer, 'and the socket stays open');
    }
    const m = await scrape(gw.http);
    t.equal(m.value('herald_admission_refused_total', { reason: 'connection_not_upgrade' }), 2);
    t.equal(m.value('herald_connections_opened_total'), 3, 'only the three handshakes were upgraded');
  },
);

/**
 * Sends `count` upgrade requests on one kept-alive TCP connection, each as soon as
 * the previous one is answered, and collects the status of every answer. Not
 * pipelined: uWS closes a connection that sends a request while an earlier one still
 * waits for its token to verify.
 */
function keptAlive(port: number, authorization: string, count: number): Promise<number[]> {
  const request =
    'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: ${authorization}\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ port, host: '127.0.0.1' });
    let text = '';
    let sent = 0;
    // A body is JSON, so a status line is the only place `HTTP/1.1 ` appears.
    const statuses = (): number[] => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    const send = (): void => {
      sent++;
      socket.write(request);
    };
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${statuses().length} of ${count} answers within 20 s`));
    }, 20_000);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const answered = statuses().length;
      if (answered >= count) {
        clearTimeout(timer);
        socket.destroy();
        resolve(statuses());
      } else if (answered === sent) {
        send();
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (statuses().length < count) reject(new Error(`the server closed the connection after ${statuses().length} of ${count} answers`));
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    send();
  });
}

t.test('on one kept-alive connection every upgrade request passes admission before its token is verified', async (t) => {
  const gw = await gateway(t, { HERALD_UPGRADE_RATE_PER_IP: '5' });
  // A well-formed token signed with another key: refusing it costs a real verification.
  const forged = `Bearer ${await token({ sub: 'flood' }, { secret: `${TEST_SECRET}-not-this-one` })}`;
  const started = performance.now();
  const statuses = await keptAlive(gw.port, forged, 40);
  // The bucket refills 5 a second: on a loaded machine the 40 round trips may take long
  // enough for a token or two more. What must hold is that only admitted upgrades are verified.
  const refilled = Math.floor(((performance.now() - started) / 1000) * 5);
  const verified = statuses.filter((s) => s === 401).length;
  t.ok(verified >= 5 && verified <= 5 + refilled, `the burst of 5 (+${refilled} refilled) is verified and refused: ${verified}`);
  t.equal(statuses.filter((s) => s === 429).length, 40 - verified, 'the others are refused by admission');
  const m = await scrape(gw.http);
  t.equal(m.value('herald_auth_duration_seconds_count'), verified, 'only the admitted ones were verified');
  t.equal(m.value('herald_admission_refused_total', { reason: 'upgrade_rate_exceeded' }), 40 - verified);
});

t.test('a flood of refused upgrades logs 5 lines per reason and one summary with the counts, not a line each', async (t) => {
  const gw = await gateway(t, { HERALD_LOG_LEVEL: 'info' });
  const forged = `Bearer ${await token({ sub: 'flood' }, { secret: `${TEST_SECRET}-not-this-one` })}`;
  const statuses = await keptAlive(gw.port, forged, 300);
  t.ok(statuses.length === 300 && statuses.every((s) => s === 401), '300 refusals, every one a 401');
  t.equal((await scrape(gw.http)).value('herald_auth_failures_total', { reason: 'invalid_signature' }), 300, 'the metric counts every one');
  const summary = await gw.waitForLog((l) => l.msg === 'upgrade refusals (summary)', 15_000);
  const lines = gw.logs.filter((l) => l.msg === 'upgrade refused' && l['reason'] === 'invalid_signature');
  t.equal(lines.length, 5, 'five refusals have their own line');
  t.equal(lines[0]?.['remote'], '127.0.0.1', 'which names the client');
  t.strictSame(summary['refused'], { invalid_signature: 300 }, 'the summary counts all 300');
  t.equal(summary['suppressed'], 295);
  t.equal(summary['intervalS'], 10);
  t.equal(summary['level'], 'warn');
});

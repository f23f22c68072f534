// Fuzzing WebSocket upgrade requests (the hardening issue): thousands of requests with
// generated headers: Authorization (valid, expired, mistyped, forged, oversized,
// near-JWT, oddly written), Sec-WebSocket-Protocol lists (many entries, odd
// characters, empty entries, bearer tokens, long), cookies, Origins, long and odd query
// strings, extra headers, other methods and paths, missing handshake headers. An oracle
// written from docs/PROTOCOL.md (§ Connecting: Tokens, Subprotocols, Origins, Refused
// upgrades) predicts each answer: 101 with the right user and subprotocol, or the
// documented status with its exact JSON body and headers. Requests are written by hand
// on raw sockets, so every byte is ours (Node's http client refuses control
// characters); clients come from several 127.0.0.x addresses, one of them already
// holding HERALD_MAX_CONNECTIONS_PER_IP connections (so its upgrades get 429).
//
// Below Herald, uWS parses the request. A header block much over 128 KB gets uWS's own
// 431 or a reset (PROTOCOL.md). Measured on this uWS build and not in PROTOCOL.md: a
// request with a control character in a header, a header name outside [A-Za-z0-9-],
// or more than 48 headers gets no answer at all and is held until uWS's idle timeout
// closes it. Both are checked separately: no answer (or the 431), closed by the
// server, gateway unharmed. Two more uWS habits the oracle follows are noted where
// they apply: header values lose bytes above 0x7f at either end (header()), and a
// header block over 4 KB that arrives in several reads is dropped (upgrade()).
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { TestClient } from '../support/client.js';
import {
  checkAlive,
  checkNoLeak,
  deathOf,
  type FailureGate,
  fuzzCheck,
  fuzzSeed,
  lanes,
  maybe,
  memoryReport,
  type RawExchange,
  rawExchange,
  WS_CLOSE_FRAME,
  wsFrameText,
} from '../support/fuzz.js';
import { baseEnv, startGateway } from '../support/gateway.js';
import { INSPECTOR_ENV, type Memory, memoryAfterGc } from '../support/inspector.js';
import { TEST_SECRET, token, unsignedToken } from '../support/tokens.js';

const SEED = fuzzSeed(20_261_125);
const MAX_TOKEN = 1024; // HERALD_MAX_TOKEN_BYTES: small, so every size limit is in reach
const MAX_QUERY = MAX_TOKEN + 1024;
const MAX_PROTOCOLS_HEADER = MAX_TOKEN + 64 + 256;
const MAX_AUTHORIZATION = MAX_TOKEN + 64;
const MAX_PER_IP = 2;
const LANES = 4;
const MIN_REQUESTS = 3000;
/** Oversized and malformed requests (uWS refuses them) per phase. */
const UWS_REFUSED = 30;
const FULL_ADDRESS = '127.0.0.200';
/** uWS buffers at most this much of a header block split across reads (measured: 4,043 bytes pass, 4,139 do not). */
const UWS_SPLIT_HEADERS = 4000;

const gw = await startGateway(
  baseEnv({
    ...INSPECTOR_ENV, // memory is measured after a forced GC (support/inspector.ts)
    HERALD_LOG_LEVEL: 'info',
    HERALD_MAX_TOKEN_BYTES: String(MAX_TOKEN),
    HERALD_ALLOWED_ORIGINS: 'https://app.example.com,https://*.example.org',
    HERALD_MAX_CONNECTIONS_PER_IP: String(MAX_PER_IP),
  }),
);
t.teardown(() => gw.stop());

// FULL_ADDRESS holds its quota for the whole file (ws answers the server's pings, so
// the idle timeout never frees a place).
for (let i = 0; i < MAX_PER_IP; i++) {
  const c = await TestClient.connect(gw.ws, {
    headers: { authorization: `Bearer ${await token({ sub: `holder${i}` })}` },
    localAddress: FULL_ADDRESS,
  });
  t.teardown(() => c.close());
}

// ---------------------------------------------------------------------------------
// Tokens with known fates (PROTOCOL.md § Refused upgrades, reasons)

type Fate = { kind: 'user'; sub: string } | { kind: 'refused'; reason: string };

const later = 3600;
const KNOWN = new Map<string, Fate>();
async function known(fate: Fate, jwt: Promise<string> | string): Promise<string> {
  const s = await jwt;
  KNOWN.set(s, fate);
  return s;
}
const TOKENS = {
  alice: await known({ kind: 'user', sub: 'alice' }, token({ sub: 'alice', roles: ['ops'] })),
  bob: await known({ kind: 'user', sub: 'bob' }, token({ sub: 'bob' })),
  expired: await known({ kind: 'refused', reason: 'token_expired' }, token({ sub: 'carol' }, { expiresIn: -60 })),
  notYet: await known({ kind: 'refused', reason: 'token_not_yet_valid' }, token({ sub: 'carol' }, { notBefore: later })),
  forged: await known({ kind: 'refused', reason: 'invalid_signature' }, token({ sub: 'mallory' }, { secret: `${TEST_SECRET}-not-ours` })),
  unsigned: await known({ kind: 'refused', reason: 'algorithm_not_allowed' }, unsignedToken({ sub: 'mallory' })),
  hs384: await known({ kind: 'refused', reason: 'algorithm_not_allowed' }, token({ sub: 'carol' }, { alg: 'HS384' })),
  badSub: await known({ kind: 'refused', reason: 'invalid_claims' }, token({ sub: 'has space' })),
  noExp: await known({ kind: 'refused', reason: 'invalid_claims' }, token({ sub: 'carol' }, { noExp: true })),
  badRoles: await known({ kind: 'refused', reason: 'invalid_claims' }, token({ sub: 'carol', roles: ['ok', 'not ok'] })),
  // Signed and valid, but longer than HERALD_MAX_TOKEN_BYTES: refused before any crypto.
  huge: await known({ kind: 'refused', reason: 'token_too_large' }, token({ sub: 'carol', pad: 'p'.repeat(MAX_TOKEN) })),
};
// A signature one character longer or shorter still decodes: it just does not verify.
KNOWN.set(`${TOKENS.alice}x`, { kind: 'refused', reason: 'invalid_signature' });
KNOWN.set(TOKENS.alice.slice(0, -1), { kind: 'refused', reason: 'invalid_signature' });
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The fate of any token string: known ones as listed, anything else is malformed (or too large). */
function fateOf(tok: string): Fate {
  return KNOWN.get(tok) ?? { kind: 'refused', reason: tok.length > MAX_TOKEN ? 'token_too_large' : 'malformed_token' };
}

/**
 * Token strings: the known ones, valid ones with one payload or signature character
 * changed (the signature no longer verifies), and near-JWTs and garbage. Every one is
 * free of `,` `;` whitespace and quotes, so it survives each source unchanged.
 */
const tokenText: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...Object.values(TOKENS)) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom(TOKENS.alice, TOKENS.bob), fc.nat(), fc.nat(63)).map(([jwt, at, c]) => {
      const [h = '', p = '', sig = ''] = jwt.split('.');
      // Any payload character, or a signature character but the last (whose low bits are padding).
      const inPayload = at % 2 === 0;
      const seg = inPayload ? p : sig.slice(0, -1);
      const i = at % seg.length;
      const ch = B64URL[c] === seg[i] ? B64URL[(c + 1) % 64] : B64URL[c];
      const changed = `${seg.slice(0, i)}${ch ?? 'A'}${seg.slice(i + 1)}`;
      const mutated = inPayload ? `${h}.${changed}.${sig}` : `${h}.${p}.${changed}${sig.slice(-1)}`;
      KNOWN.set(mutated, { kind: 'refused', reason: 'invalid_signature' });
      return mutated;
    }),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.constantFrom(
        'x',
        'a.b',
        'a.b.c',
        '..',
        'eyJ',
        'eyJhbGciOiJIUzI1NiJ9..',
        'null',
        'undefined',
        'Bearer',
        'bearer.x',
        `${TOKENS.alice}.`,
        `${TOKENS.alice}x`,
        TOKENS.alice.slice(0, -1),
      ),
      fc.string({ unit: fc.constantFrom(...B64URL, '.', '.', '='), minLength: 1, maxLength: 300 }),
      fc.string({ unit: fc.constantFrom(...B64URL, '.'), minLength: MAX_TOKEN - 2, maxLength: MAX_TOKEN + 2 }),
    ),
  },
);

// ---------------------------------------------------------------------------------
// Requests

interface UpgradeRequest {
  method: string;
  path: string;
  /** Raw query string, written as is; undefined: no `?`. */
  query: string | undefined;
  /** In order; the handshake headers included (or not). */
  headers: Array<[string, string]>;
  /** Send from FULL_ADDRESS (holding its quota) instead of the lane's own address. */
  fromFull: boolean;
}

/** Printable ASCII: header values uWS accepts (it ignores requests with control characters). */
const printable = (maxLength: number, minLength = 0): fc.Arbitrary<string> =>
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength, maxLength });
/**
 * Bytes above 0x7f that never start or form valid UTF-8 (so whether a reader decodes
 * them as latin1 or as UTF-8, none is whitespace): uWS passes them through in values.
 */
const highBytes = fc.string({
  unit: fc
    .constantFrom(
      ...[...Array(0x20).keys()].map((i) => 0x80 + i),
      ...[...Array(0x1f).keys()].map((i) => 0xa1 + i),
      0xc0,
      0xc1,
      0xf5,
      0xfe,
      0xff,
    )
    .map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 6,
});
const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,30}$/);

const authorizationValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: tokenText.map((tok) => `Bearer ${tok}`) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('bearer ', 'BEARER ', 'Bearer\t', 'Bearer   ', 'Bearer \t '), tokenText, fc.constantFrom('', ' ', '\t', '  '))
      .map(([a, tok, b]) => `${a}${tok}${b}`),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.constantFrom(
        '',
        'Bearer',
        'Bearer ',
        'Basic YWxhZGRpbjpvcGVuc2VzYW1l',
        `Bearer ${TOKENS.alice} ${TOKENS.bob}`,
        `Bearer${TOKENS.alice}`,
        TOKENS.alice,
        `Token ${TOKENS.alice}`,
        `Bearer "${TOKENS.alice}"`,
      ),
      printable(100),
      fc.tuple(printable(20), highBytes).map(([a, b]) => `Bearer ${a.replace(/\s/g, '')}${b}`),
    ),
  },
  // Around the Authorization limit (HERALD_MAX_TOKEN_BYTES + 64), and far beyond.
  {
    weight: 1,
    arbitrary: fc
      .oneof(fc.integer({ min: MAX_AUTHORIZATION - 10, max: MAX_AUTHORIZATION + 10 }), fc.integer({ min: MAX_AUTHORIZATION, max: 100_000 }))
      .map((n) => `Bearer ${'x'.repeat(n - 7)}`),
  },
);

const protocolEntry: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('herald.v1', 'herald.v1', 'HERALD.V1', 'herald.v2', 'herald', 'v1', 'bearer.', 'BEARER.', '') },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('bearer.', 'Bearer.', 'BEARER.'), tokenText).map(([p, tok]) => `${p}${tok}`) },
  { weight: 2, arbitrary: printable(20).map((s) => s.replace(/,/g, '')) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 2000 }).map((n) => `p${'x'.repeat(n)}`) },
);
const protocolsValue: fc.Arbitrary<string> = fc
  .tuple(fc.array(protocolEntry, { maxLength: 12 }), fc.constantFrom(',', ', ', ' , ', ',,', '\t,'))
  .map(([entries, sep]) => entries.join(sep));

const queryValue: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: tokenText.map((tok) => `token=${tok}`) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'token=',
          'token',
          'Token=x',
          'tok=en',
          '',
          '=',
          '&',
          'token=%',
          'token=%zz',
          'token=a+b',
          'token=%61.b.c',
        ),
      },
      { weight: 2, arbitrary: fc.tuple(printable(10), printable(20)).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`) },
      { weight: 1, arbitrary: fc.tuple(highBytes, printable(5)).map(([a, b]) => `x=${a}${encodeURIComponent(b)}`) },
      // Around the query limit (HERALD_MAX_TOKEN_BYTES + 1024), and beyond.
      {
        weight: 1,
        arbitrary: fc
          .oneof(fc.integer({ min: MAX_QUERY - 10, max: MAX_QUERY + 10 }), fc.integer({ min: MAX_QUERY, max: 60_000 }))
          .map((n) => `pad=${'a'.repeat(n - 4)}`),
      },
    ),
    { minLength: 1, maxLength: 4 },
  )
  .map((parts) => parts.join('&'));

const cookieValue: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: tokenText.map((tok) => `herald_token=${tok}`) },
      { weight: 1, arbitrary: tokenText.map((tok) => `herald_token="${tok}"`) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'herald_token=',
          'herald_token=""',
          'herald_token',
          ' herald_token = x',
          'HERALD_TOKEN=x',
          'herald_token2=x',
          '=x',
          '',
        ),
      },
      { weight: 2, arbitrary: fc.tuple(fc.stringMatching(/^[a-z_]{1,10}$/), printable(20)).map(([k, v]) => `${k}=${v.replace(/;/g, '')}`) },
    ),
    { minLength: 1, maxLength: 4 },
  )
  .map((parts) => parts.join('; '));

const originValue: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'https://app.example.com',
      'https://APP.example.com',
      'HTTPS://APP.EXAMPLE.COM',
      'https://a.example.org',
      'https://a.b.example.org',
      'https://x-1.example.org',
    ),
  },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'http://app.example.com',
      'https://app.example.com:8443',
      'https://app.example.com/',
      'https://example.org',
      'https://.example.org',
      'https://a..example.org',
      'https://a_b.example.org',
      'https://evil.com',
      'https://app.example.com.evil.com',
      'https://evil.com#.example.org',
      'https://evil.com?.example.org',
      'null',
      'file://',
      'https://*.example.org',
      'https://a.example.org:443',
      'https://a.example.org.',
      ' ',
      'https://app.example.co',
    ),
  },
  { weight: 1, arbitrary: printable(60) },
);

const handshake = (connection: string): Array<[string, string]> => [
  ['Upgrade', 'websocket'],
  ['Connection', connection],
  ['Sec-WebSocket-Version', '13'],
  ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
];

/** Mostly what browsers and ws send; sometimes a header without the upgrade token (400). */
const connectionValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 20, arbitrary: fc.constantFrom('Upgrade', 'keep-alive, Upgrade', 'upgrade', 'Upgrade, close') },
  { weight: 1, arbitrary: fc.constantFrom('close', 'keep-alive', 'Upgraded', 'close, keep-alive') },
);

/** A request uWS hands to Herald: header names of [A-Za-z0-9-], printable values, at most 48 headers, a block well under 128 KB. */
const request: fc.Arbitrary<UpgradeRequest> = fc
  .record({
    method: fc.oneof({ weight: 40, arbitrary: fc.constant('GET') }, { weight: 1, arbitrary: fc.constantFrom('POST', 'PUT', 'DELETE') }),
    path: fc.oneof(
      { weight: 40, arbitrary: fc.constant('/ws') },
      { weight: 1, arbitrary: fc.constantFrom('/ws/', '/WS', '//ws', '/ws%2F', '/wss', '/', '/healthz/x') },
    ),
    query: maybe(queryValue, 0.3),
    handshake: fc.oneof({ weight: 30, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    connection: connectionValue,
    authorization: maybe(authorizationValue, 0.6),
    protocols: maybe(protocolsValue, 0.3),
    cookie: maybe(cookieValue, 0.2),
    origin: maybe(originValue, 0.3),
    extra: fc.array(fc.tuple(headerName, printable(40)), { maxLength: 6 }),
    // A repeated header: uWS hands Herald the first one.
    repeat: maybe(fc.tuple(fc.constantFrom('Authorization', 'Origin', 'Sec-WebSocket-Protocol', 'Cookie'), printable(30)), 0.05),
    upperCase: fc.boolean(),
    fromFull: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  })
  .map((r) => {
    const name = (n: string): string => (r.upperCase ? n.toUpperCase() : n);
    const headers: Array<[string, string]> = [['Host', '127.0.0.1']];
    if (r.handshake) headers.push(...handshake(r.connection));
    if (r.authorization !== undefined) headers.push([name('Authorization'), r.authorization]);
    if (r.protocols !== undefined) headers.push([name('Sec-WebSocket-Protocol'), r.protocols]);
    if (r.cookie !== undefined) headers.push([name('Cookie'), r.cookie]);
    if (r.origin !== undefined) headers.push([name('Origin'), r.origin]);
    if (r.repeat !== undefined) headers.push(r.repeat);
    headers.push(...r.extra);
    return { method: r.method, path: r.path, query: r.query, headers, fromFull: r.fromFull };
  });

// ---------------------------------------------------------------------------------
// The oracle

type Answer =
  | { status: 101; sub: string; protocol: string | undefined }
  | { status: number; body: Record<string, unknown>; headers: Record<string, string>; closes: boolean };

const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' };
const unauthorized = (reason: string): Answer => ({
  status: 401,
  body: { error: 'unauthorized', reason },
  headers: { ...JSON_HEADERS, 'www-authenticate': 'Bearer error="invalid_token"' },
  closes: false,
});

/**
 * The first header of that name (case-insensitive) as Herald gets it; '' when absent.
 * uWS strips the optional whitespace around the value, and with it any bytes above 0x7f
 * at either end (measured: `Bearer \xc3\xa9` arrives as `Bearer`; see the report).
 */
function header(req: UpgradeRequest, name: string): string {
  const h = req.headers.find(([n]) => n.toLowerCase() === name);
  return h === undefined ? '' : h[1].replace(/^[ \t\x80-\xff]+|[ \t\x80-\xff]+$/g, '');
}

/** "bearer.<jwt>" entries: the list split on commas, each entry trimmed. */
const entries = (protocols: string): string[] =>
  protocols
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');

/**
 * PROTOCOL.md § Origins, for HERALD_ALLOWED_ORIGINS=https://app.example.com,https://*.example.org:
 * an exact entry (case-insensitive), or any subdomain (host-name labels) under the wildcard,
 * never the wildcard's own domain; no Origin at all is always allowed.
 */
function isOriginAllowed(origin: string): boolean {
  if (origin === '') return true; // no Origin: not a browser
  const o = origin.toLowerCase();
  return o === 'https://app.example.com' || /^https:\/\/[a-z0-9-]+(\.[a-z0-9-]+)*\.example\.org$/.test(o);
}

/** Every token of the request, in the documented order of sources (empty ones count as absent). */
function tokensOf(req: UpgradeRequest): string[] {
  const found: string[] = [];
  const auth = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header(req, 'authorization'));
  if (auth?.[1] !== undefined) found.push(auth[1]);
  for (const p of entries(header(req, 'sec-websocket-protocol'))) {
    if (p.length > 7 && p.toLowerCase().startsWith('bearer.')) found.push(p.slice(7));
  }
  found.push(...new URLSearchParams(req.query ?? '').getAll('token').filter((q) => q !== ''));
  for (const part of header(req, 'cookie').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === 'herald_token') {
      let v = part.slice(eq + 1).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      if (v !== '') found.push(v);
    }
  }
  return found;
}

/** The answer PROTOCOL.md gives for `req`. */
function answer(req: UpgradeRequest): Answer {
  const notFound: Answer = { status: 404, body: { error: 'not_found' }, headers: JSON_HEADERS, closes: false };
  if (req.path !== '/ws') return notFound;
  if (req.method !== 'GET') return notFound;
  if (header(req, 'upgrade') === '') {
    return { status: 426, body: { error: 'upgrade_required' }, headers: { ...JSON_HEADERS, upgrade: 'websocket' }, closes: false };
  }
  const connection = header(req, 'connection');
  if (!connection.split(',').some((p) => p.trim().toLowerCase() === 'upgrade')) {
    // uWS takes any 5-byte Connection value for `close` and then does not echo it.
    const echo = connection.length === 5 ? {} : { connection: 'close' };
    return {
      status: 400,
      body: { error: 'bad_request', reason: 'connection_not_upgrade' },
      headers: { ...JSON_HEADERS, ...echo },
      closes: true,
    };
  }
  const query = req.query ?? '';
  if (query.length > MAX_QUERY) {
    // "and has a `token=` parameter"
    if (/(?:^|&)token=/.test(query)) return unauthorized('token_too_large');
    return {
      status: 414,
      body: { error: 'uri_too_long', reason: 'uri_too_long' },
      headers: { ...JSON_HEADERS, connection: 'close' },
      closes: true,
    };
  }
  const protocols = header(req, 'sec-websocket-protocol');
  // Entries as the limit counts them: one per comma, plus one (see the report).
  if (protocols !== '' && protocols.split(',').length > 8) {
    return {
      status: 400,
      body: { error: 'bad_request', reason: 'too_many_protocols' },
      headers: { ...JSON_HEADERS, connection: 'close' },
      closes: true,
    };
  }
  if (protocols.length > MAX_PROTOCOLS_HEADER) return unauthorized('token_too_large');
  if (header(req, 'authorization').length > MAX_AUTHORIZATION) return unauthorized('token_too_large');
  if (req.fromFull) {
    return {
      status: 429,
      body: { error: 'too_many_requests', reason: 'too_many_connections_from_address' },
      headers: { ...JSON_HEADERS, 'retry-after': '1' },
      closes: false,
    };
  }
  if (!isOriginAllowed(header(req, 'origin')))
    return { status: 403, body: { error: 'forbidden', reason: 'origin_not_allowed' }, headers: JSON_HEADERS, closes: false };
  const fate = (tok: string | undefined): Answer => {
    if (tok === undefined) return unauthorized('missing_token');
    const f = fateOf(tok);
    return f.kind === 'refused'
      ? unauthorized(f.reason)
      : { status: 101, sub: f.sub, protocol: entries(protocols).includes('herald.v1') ? 'herald.v1' : undefined };
  };
  // Herald looks in all four sources; two different tokens are a conflict.
  const found = tokensOf(req);
  return found.some((tok) => tok !== found[0]) ? unauthorized('conflicting_tokens') : fate(found[0]);
}

// ---------------------------------------------------------------------------------
// One request

function requestBytes(req: UpgradeRequest): Buffer {
  const target = `${req.path}${req.query !== undefined ? `?${req.query}` : ''}`;
  const lines = [`${req.method} ${target} HTTP/1.1`, ...req.headers.map(([n, v]) => `${n}: ${v}`)];
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

const show = (req: UpgradeRequest): string => {
  const clip = (s: string): string => (s.length > 160 ? `${s.slice(0, 160)}…(${s.length})` : s);
  const target = `${req.path}${req.query !== undefined ? `?${clip(req.query)}` : ''}`;
  return `${req.method} ${target}${req.fromFull ? ` from ${FULL_ADDRESS}` : ''} ${JSON.stringify(req.headers.slice(1).map(([n, v]) => `${n}: ${clip(v)}`))}`;
};

/** How a socket ends when the server resets it (the kernel's word for an abortive close). */
const RESET = new Set(['ECONNRESET', 'EPIPE']);

/** Why `r` is not `a`, or undefined when it is. */
function mismatch(a: Answer, r: RawExchange): string | undefined {
  const res = r.response;
  if (res === undefined) return `no answer (${r.end}, ${r.received} bytes)`;
  if (res.status !== a.status) return `status ${res.status}`;
  if ('sub' in a) {
    if (res.headers['sec-websocket-protocol'] !== a.protocol) return `subprotocol ${JSON.stringify(res.headers['sec-websocket-protocol'])}`;
    const welcome = JSON.parse(wsFrameText(res.body)) as Record<string, unknown>;
    if (welcome['type'] !== 'connected' || welcome['userId'] !== a.sub) return `first frame ${JSON.stringify(welcome).slice(0, 200)}`;
    return undefined;
  }
  const body = res.body.toString();
  if (body !== JSON.stringify(a.body)) return `body ${body.slice(0, 200)}`;
  for (const [h, v] of Object.entries(a.headers)) if (res.headers[h] !== v) return `header ${h}: ${JSON.stringify(res.headers[h])}`;
  if (a.closes && r.end !== 'closed' && !RESET.has(r.end)) return `connection not closed after the ${res.status} (${r.end})`;
  return undefined;
}

const describe = (a: Answer): string =>
  'sub' in a ? `101 as ${a.sub} (${a.protocol ?? 'no subprotocol'})` : `${a.status} ${JSON.stringify(a.body)}`;
const counts = { requests: 0, dropped: 0, byAnswer: new Map<string, number>() };

async function upgrade(lane: number, req: UpgradeRequest): Promise<void> {
  const want = answer(req);
  const r = await rawExchange({
    port: gw.port,
    localAddress: req.fromFull ? FULL_ADDRESS : `127.0.0.${10 + lane}`,
    head: requestBytes(req),
    deadlineMs: 10_000,
    // PROTOCOL.md: the connection is closed after a 414 or a 400.
    awaitClose: (res) => res.status === 414 || res.status === 400,
    keep: true,
  });
  counts.requests++;
  try {
    // A header block over 4 KB that reaches uWS in more than one read is dropped by uWS
    // without an answer (closed, or reset when bytes were left unread): its buffer for a
    // split block is 4 KB, whatever Herald's limits say (see the report). On loopback a
    // big request usually arrives in one read, but not always (a few in a hundred at
    // 40-100 KB). Only there is an end without an answer accepted, and counted.
    if (
      r.response === undefined &&
      r.received === 0 &&
      (r.end === 'closed' || RESET.has(r.end)) &&
      requestBytes(req).length > UWS_SPLIT_HEADERS
    ) {
      counts.dropped++;
      return;
    }
    const problem = mismatch(want, r);
    if (problem !== undefined) {
      const got = r.response === undefined ? `nothing (${r.end})` : `${r.response.status} ${r.response.body.subarray(0, 200).toString()}`;
      throw new Error(`${show(req)}\n  got ${got}\n  expected ${describe(want)} (differs: ${problem})`);
    }
    const key = 'sub' in want ? '101' : `${want.status} ${String(want.body['reason'] ?? want.body['error'])}`;
    counts.byAnswer.set(key, (counts.byAnswer.get(key) ?? 0) + 1);
  } finally {
    if (r.socket !== undefined) {
      // Close the WebSocket properly and wait for the server to end it, so the address's
      // place is given back before this lane's next request.
      const s = r.socket;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        s.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        s.on('error', () => undefined);
        s.write(WS_CLOSE_FRAME);
        s.resume();
      });
      s.destroy();
    }
  }
}

// ---------------------------------------------------------------------------------
// Requests uWS refuses before Herald sees them

/** A control character in a header, a header name outside [A-Za-z0-9-], or more than 48 headers. */
const malformed: fc.Arbitrary<Buffer> = fc
  .record({
    req: request,
    how: fc.oneof(
      fc.record({ kind: fc.constant('control' as const), byte: fc.constantFrom(0, 1, 7, 8, 11, 12, 14, 27, 31), at: fc.nat() }),
      fc.record({ kind: fc.constant('name' as const), ch: fc.constantFrom('_', '.', '@', '(', ' ', '"', '\u00e9', '/', '[') }),
      fc.record({ kind: fc.constant('count' as const), n: fc.integer({ min: 60, max: 90 }) }),
    ),
  })
  .map(({ req, how }) => {
    const headers = [...req.headers];
    if (how.kind === 'control') {
      if (headers.length === 1) headers.push(['X-Test', 'v']);
      // Into any header but Host (the first).
      const i = 1 + (how.at % (headers.length - 1));
      const [n, v] = headers[i] as [string, string];
      const at = how.at % (v.length + 1);
      headers[i] = [n, `${v.slice(0, at)}${String.fromCharCode(how.byte)}${v.slice(at)}`];
    } else if (how.kind === 'name') {
      headers.push([`X${how.ch}Test`, 'v']);
    } else {
      for (let i = 0; i < how.n; i++) headers.push([`X-Filler-${i}`, 'v']);
    }
    return requestBytes({ ...req, headers });
  });

/** A header block of 140-400 KB (uWS's limit is about 128 KB). */
const oversized: fc.Arbitrary<Buffer> = fc
  .tuple(request, fc.integer({ min: 140_000, max: 400_000 }), fc.constantFrom('Authorization', 'Cookie', 'X-Big'))
  .map(([req, n, name]) => requestBytes({ ...req, headers: [...req.headers, [name, 'x'.repeat(n)]] }));

/**
 * uWS answers an oversized block with its 431 or nothing, and closes; it holds a
 * malformed request, unanswered, until its idle timeout (about 10 s here; we allow 30).
 * A reset is accepted as the end (the client may still be writing a block the server
 * stopped reading).
 */
async function unanswered(bytes: Buffer, deadlineMs: number, allow431: boolean): Promise<void> {
  const r = await rawExchange({ port: gw.port, localAddress: '127.0.0.50', head: bytes, deadlineMs, awaitClose: true });
  const answered = r.received !== 0 && !(allow431 && r.response?.status === 431);
  if (answered || r.end === 'deadline') {
    throw new Error(
      `${JSON.stringify(bytes.subarray(0, 300).toString('latin1'))}… (${bytes.length} bytes): got ${r.received} bytes (${r.response?.status ?? '-'}), end ${r.end}`,
    );
  }
}

// ---------------------------------------------------------------------------------

async function phase(t: Test, requests: number, seed: number): Promise<void> {
  const gate: FailureGate = { owner: undefined };
  const failures: string[] = [];
  const report = (r: string | undefined): void => {
    if (r !== undefined) failures.push(r);
  };
  // The same number of oversized and malformed requests in every phase, so that the
  // warm-up reaches the measured run's peak (30 connections held by uWS at once).
  await Promise.all([
    lanes(LANES, (lane) =>
      fuzzCheck(gate, `lane ${lane}`, request, (req) => upgrade(lane, req), seed + lane, Math.ceil(requests / LANES), show).then(report),
    ),
    // Dropped at once: one after another.
    fuzzCheck(
      gate,
      'oversized header blocks',
      oversized,
      (b) => unanswered(b, 5000, true),
      seed + 10,
      UWS_REFUSED,
      (b) => `${b.length} bytes`,
    ).then(report),
    // Held ~10 s each: all at once, alongside the rest.
    lanes(UWS_REFUSED, (i) =>
      fuzzCheck(
        gate,
        `malformed ${i}`,
        malformed,
        (b) => unanswered(b, 30_000, false),
        seed + 100 + i,
        1,
        (b) => JSON.stringify(b.toString('latin1').slice(0, 400)),
      ).then(report),
    ),
  ]);
  const death = deathOf(gw);
  if (death !== undefined) failures.unshift(death);
  t.same(failures, [], 'every upgrade request got the documented answer');
}

t.comment(`fuzz seed ${SEED} (replay or vary with HERALD_FUZZ_SEED=<n>)`);
let before: Memory | undefined;

t.test('warm-up: the same mix of requests, so the measured run starts from a warmed heap', async (t) => {
  await phase(t, 600, SEED + 1_000_000);
  before = await memoryAfterGc(gw);
  t.comment(`after warm-up: ${await memoryReport(gw)}`);
});

t.test(`${MIN_REQUESTS} generated upgrade requests each get the documented answer`, async (t) => {
  const started = Date.now();
  counts.requests = 0;
  counts.byAnswer.clear();
  counts.dropped = 0;
  await phase(t, MIN_REQUESTS, SEED);
  t.comment(
    `${counts.requests} requests in ${((Date.now() - started) / 1000).toFixed(1)} s, ${counts.dropped} over 4 KB dropped by uWS; by answer: ${JSON.stringify([...counts.byAnswer].sort())}`,
  );
  t.ok(counts.requests >= MIN_REQUESTS, `${counts.requests} requests answered by Herald (at least ${MIN_REQUESTS})`);
  for (const answer of [
    '101',
    '400 connection_not_upgrade',
    '400 too_many_protocols',
    '401 conflicting_tokens',
    '401 missing_token',
    '401 malformed_token',
    '401 token_too_large',
    '401 invalid_signature',
    '401 token_expired',
    '403 origin_not_allowed',
    '404 not_found',
    '414 uri_too_long',
    '426 upgrade_required',
    '429 too_many_connections_from_address',
  ]) {
    t.ok(counts.byAnswer.has(answer), `some requests were answered ${answer}`);
  }
});

t.test('afterwards the gateway is alive and, after a forced GC, its heap and RSS are within 10% of before', async (t) => {
  await checkAlive(t, gw);
  if (before === undefined) throw new Error('the warm-up did not measure memory');
  await checkNoLeak(t, gw, before);
});

import t from 'tap';
import {
  chooseSubprotocol,
  connectionListsUpgrade,
  findToken,
  isOriginAllowed,
  SUBPROTOCOLS,
  TOKEN_COOKIE,
  type UpgradeRequest,
} from '../../dist/handshake.js';

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln';
const none: UpgradeRequest = { authorization: '', protocols: '', cookie: '', origin: '', query: '' };
const req = (r: Partial<UpgradeRequest>): UpgradeRequest => ({ ...none, ...r });

/** The token found, 'CONFLICT' for two different ones, undefined for none. */
function tokenOf(r: UpgradeRequest): string | undefined {
  const found = findToken(r);
  return found.kind === 'token' ? found.token : found.kind === 'conflict' ? 'CONFLICT' : undefined;
}
function sourceOf(r: UpgradeRequest): string | undefined {
  const found = findToken(r);
  return found.kind === 'token' ? found.source : undefined;
}

t.test('findToken names the first source holding the token: header, subprotocol, query, cookie', async (t) => {
  const all = req({ authorization: 'Bearer T', protocols: 'herald.v1, bearer.T', query: 'token=T', cookie: 'herald_token=T' });
  t.strictSame(findToken(all), { kind: 'token', token: 'T', source: 'header' }, 'the same token in all four sources');
  t.strictSame(findToken({ ...all, authorization: '' }), { kind: 'token', token: 'T', source: 'subprotocol' });
  t.strictSame(findToken({ ...all, authorization: '', protocols: 'herald.v1' }), { kind: 'token', token: 'T', source: 'query' });
  t.strictSame(findToken({ ...all, authorization: '', protocols: '', query: '' }), { kind: 'token', token: 'T', source: 'cookie' });
  t.strictSame(findToken(none), { kind: 'none' }, 'nothing anywhere');
});

t.test('findToken refuses to choose between two different tokens', async (t) => {
  const rows: Array<[Partial<UpgradeRequest>, string[], string]> = [
    [{ authorization: 'Bearer A', query: 'token=B' }, ['header', 'query'], 'header and query'],
    [{ authorization: 'Bearer A', cookie: 'herald_token=B' }, ['header', 'cookie'], 'header and cookie'],
    [{ protocols: 'herald.v1, bearer.A', cookie: 'herald_token=B' }, ['subprotocol', 'cookie'], 'subprotocol and cookie'],
    [{ protocols: 'bearer.A, bearer.B' }, ['subprotocol'], 'two subprotocol entries'],
    [{ query: 'token=A&token=B' }, ['query'], 'a repeated query parameter'],
    [{ cookie: 'herald_token=A; herald_token=B' }, ['cookie'], 'two cookies'],
    [
      { authorization: 'Bearer A', protocols: 'bearer.A', query: 'token=A', cookie: 'herald_token=B' },
      ['header', 'subprotocol', 'query', 'cookie'],
      'three agree, the cookie differs',
    ],
    [{ authorization: 'Bearer A', query: 'token=a' }, ['header', 'query'], 'tokens differ only in case'],
  ];
  for (const [r, sources, name] of rows) t.strictSame(findToken(req(r)), { kind: 'conflict', sources }, name);
});

t.test('findToken reads the Authorization header only in the Bearer form', async (t) => {
  const rows: Array<[string, string | undefined, string]> = [
    [`Bearer ${JWT}`, JWT, 'canonical'],
    [`bearer ${JWT}`, JWT, 'lower-case scheme'],
    [`BEARER ${JWT}`, JWT, 'upper-case scheme'],
    [`Bearer \t ${JWT}  `, JWT, 'extra spaces and tab'],
    ['Bearer', undefined, 'scheme without token'],
    ['Bearer ', undefined, 'scheme and space without token'],
    [`Basic ${Buffer.from('a:b').toString('base64')}`, undefined, 'Basic'],
    [`Bearer ${JWT} extra`, undefined, 'two values'],
    [`Bearer${JWT}`, undefined, 'no separator'],
    [`Token ${JWT}`, undefined, 'other scheme'],
    [` Bearer ${JWT}`, undefined, 'leading space'],
    [`B\u0435arer ${JWT}`, undefined, 'Cyrillic е in the scheme'],
    [`Bearer\n${JWT}`, undefined, 'newline as separator'],
    [JWT, undefined, 'bare token without scheme'],
  ];
  for (const [authorization, want, name] of rows) {
    t.equal(tokenOf(req({ authorization })), want, name);
    if (want !== undefined) t.equal(sourceOf(req({ authorization })), 'header', `${name}: source`);
  }
});

t.test('a malformed Authorization header falls through to the next source', async (t) => {
  for (const authorization of ['Basic abc', 'Bearer', 'Bearer a b']) {
    t.strictSame(findToken(req({ authorization, query: 'token=Q' })), { kind: 'token', token: 'Q', source: 'query' }, authorization);
  }
});

t.test('findToken reads a bearer.<jwt> subprotocol entry in any case', async (t) => {
  const rows: Array<[string, string | undefined, string]> = [
    [`bearer.${JWT}`, JWT, 'alone'],
    [`herald.v1, bearer.${JWT}`, JWT, 'after the herald protocol'],
    [`bearer.${JWT}, herald.v1`, JWT, 'before the herald protocol'],
    [`Bearer.${JWT}`, JWT, 'capitalised'],
    [`BEARER.${JWT}`, JWT, 'upper case'],
    [`  bearer.${JWT}  ,herald.v1`, JWT, 'padded'],
    ['bearer.', undefined, 'prefix without token'],
    ['bearer', undefined, 'no dot'],
    [`bearer${JWT}`, undefined, 'no dot before the token'],
    [`xbearer.${JWT}`, undefined, 'look-alike prefix'],
    [`b\u0435arer.${JWT}`, undefined, 'Cyrillic е'],
    ['herald.v1', undefined, 'only the herald protocol'],
    [',,,', undefined, 'only commas'],
    ['bearer.A, bearer.B', 'CONFLICT', 'two different bearer entries'],
    ['bearer.A, bearer.A', 'A', 'the same bearer entry twice'],
  ];
  for (const [protocols, want, name] of rows) {
    t.equal(tokenOf(req({ protocols })), want, name);
    if (want !== undefined && want !== 'CONFLICT') t.equal(sourceOf(req({ protocols })), 'subprotocol', `${name}: source`);
  }
});

t.test('findToken reads ?token= among other query parameters and decodes it', async (t) => {
  const rows: Array<[string, string | undefined, string]> = [
    [`token=${JWT}`, JWT, 'alone'],
    [`a=1&token=${JWT}&b=2`, JWT, 'among others'],
    ['token=abc%2Edef%2Eghi', 'abc.def.ghi', 'URL-encoded'],
    ['token=A&token=B', 'CONFLICT', 'repeated with different values'],
    ['token=A&token=A', 'A', 'repeated with the same value'],
    ['token=', undefined, 'empty value'],
    ['token', undefined, 'no value'],
    ['xtoken=abc', undefined, 'look-alike name'],
    ['Token=abc', undefined, 'name is case-sensitive'],
    ['tok%65n=abc', 'abc', 'encoded name decodes to token'],
    ['a=1', undefined, 'no token parameter'],
    [`__proto__=x&token=${JWT}`, JWT, 'prototype name in the query'],
  ];
  for (const [query, want, name] of rows) {
    t.equal(tokenOf(req({ query })), want, name);
    if (want !== undefined && want !== 'CONFLICT') t.equal(sourceOf(req({ query })), 'query', `${name}: source`);
  }
});

t.test('findToken reads the herald_token cookie and no look-alike', async (t) => {
  t.equal(TOKEN_COOKIE, 'herald_token');
  const rows: Array<[string, string | undefined, string]> = [
    [`herald_token=${JWT}`, JWT, 'alone'],
    [`a=1; herald_token=${JWT}; b=2`, JWT, 'among others'],
    [`a=1;herald_token=${JWT}`, JWT, 'no space after the semicolon'],
    [`  herald_token = ${JWT}  `, JWT, 'spaces around name and value'],
    [`xherald_token=X; herald_token=${JWT}`, JWT, 'similar name before the real one'],
    ['xherald_token=X', undefined, 'similar name only'],
    ['herald_tokenx=X', undefined, 'longer name only'],
    ['Herald_Token=X', undefined, 'name is case-sensitive'],
    ['her\u0430ld_token=X', undefined, 'Cyrillic а look-alike'],
    ['herald_token=', undefined, 'empty value'],
    ['herald_token=  ', undefined, 'blank value'],
    ['herald_token', undefined, 'no equals sign'],
    ['=herald_token', undefined, 'empty name'],
    [`herald_token=${JWT}=`, `${JWT}=`, 'value containing =, kept whole'],
    ['herald_token=; herald_token=B', 'B', 'an empty one, then a real one'],
    ['herald_token=A; herald_token=B', 'CONFLICT', 'two with different values'],
    [';;;', undefined, 'only separators'],
  ];
  for (const [cookie, want, name] of rows) {
    t.equal(tokenOf(req({ cookie })), want, name);
    if (want !== undefined && want !== 'CONFLICT') t.equal(sourceOf(req({ cookie })), 'cookie', `${name}: source`);
  }
});

t.test('findToken stays quick on a huge hostile header', async (t) => {
  const huge = 'a'.repeat(200_000);
  const start = process.hrtime.bigint();
  t.strictSame(findToken(req({ authorization: `Bearer ${huge} x`, protocols: `${huge},`.repeat(5), cookie: `${huge};`.repeat(5) })), {
    kind: 'none',
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  t.ok(ms < 500, `took ${ms.toFixed(1)} ms`);
});

t.test('chooseSubprotocol answers herald.v1 when offered, and never the bearer entry', async (t) => {
  t.strictSame([...SUBPROTOCOLS], ['herald.v1']);
  const rows: Array<[string, string, string]> = [
    ['herald.v1', 'herald.v1', 'alone'],
    [`bearer.${JWT}, herald.v1`, 'herald.v1', 'after the bearer entry'],
    [`herald.v1, bearer.${JWT}`, 'herald.v1', 'before the bearer entry'],
    [`bearer.${JWT}`, '', 'only the bearer entry'],
    ['bearer.herald.v1', '', 'bearer entry whose token looks like the protocol'],
    ['', '', 'nothing offered'],
    ['herald.v2', '', 'another version'],
    ['herald.v1x', '', 'look-alike suffix'],
    ['xherald.v1', '', 'look-alike prefix'],
    ['her\u0430ld.v1', '', 'Cyrillic а'],
    ['chat, superchat', '', "someone else's protocols"],
    [' herald.v1 ', 'herald.v1', 'padded'],
  ];
  for (const [protocols, want, name] of rows) {
    const got = chooseSubprotocol(protocols);
    t.equal(got, want, name);
    t.notMatch(got, /bearer/i, `${name}: never the bearer entry`);
  }
});

t.test('chooseSubprotocol answers only a value the client offered, verbatim (RFC 6455 4.2.2)', async (t) => {
  // Clients compare the answer with what they sent, case-sensitively (ws: "Server
  // sent an invalid subprotocol"), so the answer must be one of the offered entries.
  for (const protocols of ['HERALD.V1', 'Herald.V1', `bearer.${JWT}, HERALD.v1`, 'herald.v1']) {
    const offered = protocols.split(',').map((p) => p.trim());
    const got = chooseSubprotocol(protocols);
    t.ok(got === '' || offered.includes(got), `${protocols} -> ${JSON.stringify(got)} is '' or an offered entry`);
  }
});

t.test('isOriginAllowed accepts only listed origins and subdomains of wildcard rules', async (t) => {
  const allowed = ['https://app.example.com', 'http://localhost:3000', 'https://*.example.org'];
  const rows: Array<[string, boolean, string]> = [
    ['', true, 'no Origin header (not a browser)'],
    ['https://app.example.com', true, 'exact'],
    ['HTTPS://APP.EXAMPLE.COM', true, 'upper case'],
    ['http://localhost:3000', true, 'exact with port'],
    ['http://localhost:3001', false, 'port mismatch'],
    ['http://localhost', false, 'port missing'],
    ['https://app.example.com:443', false, 'explicit default port is a different string'],
    ['http://app.example.com', false, 'scheme mismatch'],
    ['wss://app.example.com', false, 'ws scheme'],
    ['https://app.example.com.evil.com', false, 'allowed origin as a prefix of an evil host'],
    ['https://evil.com/app.example.com', false, 'allowed host in a path'],
    ['https://evilapp.example.com', false, 'suffix match without a dot'],
    ['https://app.\u0435xample.com', false, 'Cyrillic е look-alike'],
    ['https://app.example.com/', false, 'trailing slash'],
    ['https://app.example.com ', false, 'trailing space'],
    ['null', false, 'opaque origin "null"'],
    ['https://a.example.org', true, 'wildcard subdomain'],
    ['https://a.b.example.org', true, 'wildcard nested subdomain'],
    ['https://example.org', false, 'wildcard does not cover the bare domain'],
    ['https://.example.org', false, 'wildcard with an empty label'],
    ['https://a..example.org', false, 'wildcard with an empty inner label'],
    ['https://evil.com/.example.org', false, 'wildcard suffix after a path'],
    ['https://evil.com?.example.org', false, 'wildcard suffix after a query'],
    ['https://evil.com#.example.org', false, 'wildcard suffix after a fragment'],
    ['https://user@a.example.org', false, 'userinfo in a wildcard match'],
    ['http://a.example.org', false, 'wildcard scheme mismatch'],
    ['https://a.example.org:8443', false, 'wildcard port mismatch'],
    ['https://a.\u0435xample.org', false, 'wildcard with Cyrillic е'],
    ['https://\u0430.example.org', false, 'wildcard subdomain with Cyrillic а'],
    ['https://a.example.org.evil.com', false, 'wildcard domain as a prefix of an evil host'],
    ['https://*.example.org', false, "the wildcard rule's own text is not an origin"],
    [`https://${'a.'.repeat(50_000)}example.org`, true, 'very long subdomain chain still ends in the domain'],
  ];
  for (const [origin, want, name] of rows) t.equal(isOriginAllowed(origin, allowed), want, name);
});

t.test('a wildcard rule with a port matches only that port', async (t) => {
  const allowed = ['https://*.example.org:8443'];
  t.ok(isOriginAllowed('https://a.example.org:8443', allowed));
  t.notOk(isOriginAllowed('https://a.example.org', allowed));
  t.notOk(isOriginAllowed('https://a.example.org:8444', allowed));
  t.notOk(isOriginAllowed('https://a.example.org:84430', allowed));
});

t.test('an unset allowlist accepts every origin; an empty one accepts only requests without Origin', async (t) => {
  for (const origin of ['https://evil.com', 'null', '', '__proto__']) t.ok(isOriginAllowed(origin, undefined), origin);
  t.notOk(isOriginAllowed('https://app.example.com', []));
  t.ok(isOriginAllowed('', []));
});

t.test('a handshake is one whose Connection header lists the upgrade token', async (t) => {
  const rows: Array<[string, boolean]> = [
    ['Upgrade', true],
    ['upgrade', true],
    ['UPGRADE', true],
    ['keep-alive, Upgrade', true],
    ['Upgrade , keep-alive', true],
    [' upgrade ', true],
    ['close', false],
    ['keep-alive', false],
    ['', false],
    ['Upgraded', false],
    ['no-upgrade', false],
    ['Upgrade;q=1', false],
    ['close, keep-alive', false],
  ];
  for (const [header, want] of rows) t.equal(connectionListsUpgrade(header), want, JSON.stringify(header));
});

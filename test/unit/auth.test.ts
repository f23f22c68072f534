import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import t from 'tap';
import { AuthFailure, type AuthResult, createVerifier, identityFromClaims, reasonForJoseError } from '../../dist/auth.js';
import { ConfigError, type Env, type JwtConfig, loadConfig } from '../../dist/config.js';
import { freePort } from '../support/ports.js';
import { TEST_SECRET, token, unsignedToken } from '../support/tokens.js';

const now = () => Math.floor(Date.now() / 1000);

function jwtConfig(env: Env): JwtConfig {
  return loadConfig(env).jwt;
}

function tempDir(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'herald-auth-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
type Tap = { teardown(fn: () => void): void };

function reason(r: AuthResult): string {
  return r.ok ? 'ok' : r.reason;
}

async function signWith(key: CryptoKey | KeyObject | Uint8Array, alg: string, claims: JWTPayload, kid?: string): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg, ...(kid !== undefined ? { kid } : {}) })
    .setIssuedAt()
    .setExpirationTime(now() + 3600)
    .sign(key);
}

t.test('with an HS256 secret, a good token yields the identity in its claims', async (t) => {
  const v = await createVerifier(jwtConfig({ HERALD_JWT_SECRET: TEST_SECRET }));
  t.strictSame([...v.algorithms], ['HS256']);
  const exp = now() + 600;
  const jwt = await new SignJWT({ sub: 'alice', roles: ['admin', 'ops'], topics: ['org:rio', 'feed:*'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(TEST_SECRET));
  const r = await v.verify(jwt);
  t.ok(r.ok, 'accepted');
  if (!r.ok) return;
  t.equal(r.identity.userId, 'alice');
  t.strictSame([...r.identity.roles], ['admin', 'ops']);
  t.strictSame([...r.identity.grants.exact], ['org:rio']);
  t.strictSame([...r.identity.grants.prefixes], ['feed:']);
  t.equal(r.identity.expiresAt, exp * 1000);
});

t.test('with an HS256 secret, each bad token maps to its bounded reason', async (t) => {
  const v = await createVerifier(
    jwtConfig({ HERALD_JWT_SECRET: TEST_SECRET, HERALD_JWT_ISSUER: 'https://id.example.com', HERALD_JWT_AUDIENCE: 'herald' }),
  );
  const good = { issuer: 'https://id.example.com', audience: 'herald' };
  const rows: Array<[name: string, jwt: Promise<string> | string, want: string]> = [
    ['good token', token({ sub: 'alice' }, good), 'ok'],
    ['audience among several', token({ sub: 'alice' }, { ...good, audience: ['other', 'herald'] }), 'ok'],
    ['missing sub', token({}, good), AuthFailure.InvalidClaims],
    ['empty sub', token({ sub: '' }, good), AuthFailure.InvalidClaims],
    ['sub with a space', token({ sub: 'al ice' }, good), AuthFailure.InvalidClaims],
    ['sub with a Cyrillic а', token({ sub: '\u0430lice' }, good), AuthFailure.InvalidClaims],
    ['sub too long for a topic', token({ sub: 'x'.repeat(124) }, good), AuthFailure.InvalidClaims],
    ['sub of the longest allowed length', token({ sub: 'x'.repeat(123) }, good), 'ok'],
    ['sub not a string', token({ sub: 42 } as unknown as JWTPayload, good), AuthFailure.InvalidClaims],
    // With a colon, sub "alice:billing" would own user:alice:billing, which alice's user:alice:* grant covers.
    ['sub with a colon', token({ sub: 'alice:billing' }, good), AuthFailure.InvalidClaims],
    ['sub that is a lone colon', token({ sub: ':' }, good), AuthFailure.InvalidClaims],
    ['sub ending in a colon', token({ sub: 'alice:' }, good), AuthFailure.InvalidClaims],
    ['sub with a star', token({ sub: 'alice*' }, good), AuthFailure.InvalidClaims],
    ['sub with every allowed punctuation', token({ sub: 'a_l.i@c-e' }, good), 'ok'],
    ['no exp', token({ sub: 'alice' }, { ...good, noExp: true }), AuthFailure.InvalidClaims],
    ['expired', token({ sub: 'alice' }, { ...good, expiresIn: -60 }), AuthFailure.TokenExpired],
    ['nbf in the future', token({ sub: 'alice' }, { ...good, notBefore: 600 }), AuthFailure.TokenNotYetValid],
    ['nbf in the past', token({ sub: 'alice' }, { ...good, notBefore: -600 }), 'ok'],
    ['wrong secret', token({ sub: 'alice' }, { ...good, secret: `${TEST_SECRET}x` }), AuthFailure.InvalidSignature],
    ['alg none', unsignedToken({ sub: 'alice', iss: good.issuer, aud: good.audience }), AuthFailure.AlgorithmNotAllowed],
    [
      'HS512 when only HS256 is allowed',
      token({ sub: 'alice' }, { ...good, alg: 'HS512', secret: TEST_SECRET.repeat(2) }),
      AuthFailure.AlgorithmNotAllowed,
    ],
    [
      'HS384 when only HS256 is allowed',
      token({ sub: 'alice' }, { ...good, alg: 'HS384', secret: TEST_SECRET.repeat(2) }),
      AuthFailure.AlgorithmNotAllowed,
    ],
    ['wrong issuer', token({ sub: 'alice' }, { ...good, issuer: 'https://evil.example.com' }), AuthFailure.InvalidClaims],
    ['no issuer', token({ sub: 'alice' }, { audience: 'herald' }), AuthFailure.InvalidClaims],
    ['wrong audience', token({ sub: 'alice' }, { ...good, audience: 'other' }), AuthFailure.InvalidClaims],
    ['audience look-alike', token({ sub: 'alice' }, { ...good, audience: 'her\u0430ld' }), AuthFailure.InvalidClaims],
    ['no audience', token({ sub: 'alice' }, { issuer: good.issuer }), AuthFailure.InvalidClaims],
    ['roles not an array', token({ sub: 'alice', roles: 'admin' }, good), AuthFailure.InvalidClaims],
    ['roles with a number', token({ sub: 'alice', roles: ['admin', 1] }, good), AuthFailure.InvalidClaims],
    ['roles with an invalid role', token({ sub: 'alice', roles: ['ad min'] }, good), AuthFailure.InvalidClaims],
    ['roles with an empty role', token({ sub: 'alice', roles: [''] }, good), AuthFailure.InvalidClaims],
    ['roles with a colon', token({ sub: 'alice', roles: ['admin', 'ops:eu'] }, good), AuthFailure.InvalidClaims],
    ['roles with a star', token({ sub: 'alice', roles: ['ops*'] }, good), AuthFailure.InvalidClaims],
    ['role of the longest allowed length', token({ sub: 'alice', roles: ['r'.repeat(123)] }, good), 'ok'],
    ['role one character too long', token({ sub: 'alice', roles: ['r'.repeat(124)] }, good), AuthFailure.InvalidClaims],
    ['roles as an object', token({ sub: 'alice', roles: { 0: 'admin', length: 1 } }, good), AuthFailure.InvalidClaims],
    ['topics not an array', token({ sub: 'alice', topics: 'feed:*' }, good), AuthFailure.InvalidClaims],
    ['topics with an invalid entry', token({ sub: 'alice', topics: ['org:rio', 'bad topic'] }, good), AuthFailure.InvalidClaims],
    ['topics with a bad glob', token({ sub: 'alice', topics: ['fe*ed'] }, good), AuthFailure.InvalidClaims],
    ['topics with a number', token({ sub: 'alice', topics: [1] }, good), AuthFailure.InvalidClaims],
    ['not a JWT at all', 'abc', AuthFailure.MalformedToken],
    ['empty string', '', AuthFailure.MalformedToken],
    ['three empty segments', '..', AuthFailure.MalformedToken],
    ['garbage in three segments', 'a.b.c', AuthFailure.MalformedToken],
    ['a JWE-like five segments', 'a.b.c.d.e', AuthFailure.MalformedToken],
    ['standard base64 characters', 'a+b.c/d.e=', AuthFailure.MalformedToken],
    ['header that is not JSON', `${Buffer.from('nope').toString('base64url')}.e30.sig`, AuthFailure.MalformedToken],
    ['oversized token', token({ sub: 'alice', pad: 'x'.repeat(9000) }, good), AuthFailure.TokenTooLarge],
  ];
  for (const [name, jwt, want] of rows) {
    const r = await v.verify(await jwt);
    t.equal(reason(r), want, name);
  }
});

t.test('a good token with trailing whitespace is malformed, not trimmed into acceptance', async (t) => {
  const v = await createVerifier(jwtConfig({ HERALD_JWT_SECRET: TEST_SECRET }));
  const jwt = await token({ sub: 'alice' });
  t.equal(reason(await v.verify(jwt)), 'ok');
  for (const bad of [` ${jwt}`, `${jwt} `, `${jwt}\n`, `${jwt}.`])
    t.equal(reason(await v.verify(bad)), AuthFailure.MalformedToken, JSON.stringify(bad.slice(-3)));
});

t.test('the token size limit is checked before any parsing', async (t) => {
  const v = await createVerifier(jwtConfig({ HERALD_JWT_SECRET: TEST_SECRET, HERALD_MAX_TOKEN_BYTES: '256' }));
  t.equal(reason(await v.verify('x'.repeat(257))), AuthFailure.TokenTooLarge, 'garbage over the limit');
  t.equal(reason(await v.verify('x'.repeat(10_000_000))), AuthFailure.TokenTooLarge, 'ten megabytes');
  t.equal(reason(await v.verify(await token({ sub: 'a' }))), 'ok', 'a short token under the limit');
});

t.test('several HMAC algorithms can be allowed together', async (t) => {
  const v = await createVerifier(jwtConfig({ HERALD_JWT_SECRET: TEST_SECRET, HERALD_JWT_ALGORITHMS: 'HS256,HS512' }));
  t.equal(reason(await v.verify(await token({ sub: 'a' }, { alg: 'HS512' }))), 'ok', 'HS512');
  t.equal(reason(await v.verify(await token({ sub: 'a' }, { alg: 'HS256' }))), 'ok', 'HS256');
  t.equal(reason(await v.verify(await token({ sub: 'a' }, { alg: 'HS384' }))), AuthFailure.AlgorithmNotAllowed, 'HS384');
});

for (const [kind, alg] of [
  ['RSA', 'RS256'],
  ['EC P-256', 'ES256'],
] as const) {
  t.test(`a ${kind} PEM public key verifies ${alg} tokens, inline or from a file`, async (t) => {
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
    const pem = await exportSPKI(publicKey);
    const dir = tempDir(t);
    const file = join(dir, 'key.pem');
    writeFileSync(file, pem);
    const sources: Array<[string, string]> = [
      ['inline', pem],
      ['inline on one line with \\n escapes', pem.trim().replace(/\n/g, '\\n')],
      ['file path', file],
    ];
    const other = await generateKeyPair(alg);
    for (const [name, source] of sources) {
      const v = await createVerifier(jwtConfig({ HERALD_JWT_PUBLIC_KEY: source }));
      t.strictSame([...v.algorithms], [alg], `${name}: algorithm derived from the key`);
      t.equal(reason(await v.verify(await signWith(privateKey, alg, { sub: 'alice' }))), 'ok', `${name}: good token`);
      t.equal(
        reason(await v.verify(await signWith(other.privateKey, alg, { sub: 'alice' }))),
        AuthFailure.InvalidSignature,
        `${name}: another key's token`,
      );
      t.equal(reason(await v.verify(await token({ sub: 'alice' }))), AuthFailure.AlgorithmNotAllowed, `${name}: an HS256 token`);
      t.equal(reason(await v.verify(unsignedToken({ sub: 'alice' }))), AuthFailure.AlgorithmNotAllowed, `${name}: alg none`);
    }
  });
}

t.test('an HS256 token signed with the PEM text as the secret is refused (algorithm confusion)', async (t) => {
  const { publicKey } = await generateKeyPair('RS256', { extractable: true });
  const pem = await exportSPKI(publicKey);
  const v = await createVerifier(jwtConfig({ HERALD_JWT_PUBLIC_KEY: pem }));
  for (const secret of [pem, pem.trim(), `${pem.trim()}\n`]) {
    const forged = await signWith(new TextEncoder().encode(secret), 'HS256', { sub: 'admin', roles: ['admin'] });
    t.equal(reason(await v.verify(forged)), AuthFailure.AlgorithmNotAllowed);
  }
});

t.test("a PEM verifier with an explicit allowlist refuses the key's own algorithm when not listed", async (t) => {
  // A node:crypto RSA key pair signs both RS256 and PS256 with the same material.
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const v = await createVerifier(jwtConfig({ HERALD_JWT_PUBLIC_KEY: pem, HERALD_JWT_ALGORITHMS: 'PS256' }));
  t.equal(reason(await v.verify(await signWith(privateKey, 'RS256', { sub: 'a' }))), AuthFailure.AlgorithmNotAllowed);
  t.equal(reason(await v.verify(await signWith(privateKey, 'PS256', { sub: 'a' }))), 'ok');
});

t.test('a JWKS file with two keys selects the key by kid and refuses an unknown kid', async (t) => {
  const rsa = await generateKeyPair('RS256', { extractable: true });
  const ec = await generateKeyPair('ES256', { extractable: true });
  const rsa2 = await generateKeyPair('RS256', { extractable: true });
  const jwks = {
    keys: [
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ],
  };
  const dir = tempDir(t);
  const file = join(dir, 'jwks.json');
  writeFileSync(file, JSON.stringify(jwks));
  const v = await createVerifier(jwtConfig({ HERALD_JWT_JWKS: file }));
  const rows: Array<[string, Promise<string>, string]> = [
    ['RSA key by kid', signWith(rsa.privateKey, 'RS256', { sub: 'a' }, 'rsa-1'), 'ok'],
    ['EC key by kid', signWith(ec.privateKey, 'ES256', { sub: 'a' }, 'ec-1'), 'ok'],
    ['unknown kid', signWith(rsa.privateKey, 'RS256', { sub: 'a' }, 'rsa-2'), AuthFailure.UnknownKey],
    ['kid of a prototype name', signWith(rsa.privateKey, 'RS256', { sub: 'a' }, '__proto__'), AuthFailure.UnknownKey],
    ['RSA token claiming the EC kid', signWith(rsa.privateKey, 'RS256', { sub: 'a' }, 'ec-1'), AuthFailure.UnknownKey],
    [
      'signed by a key not in the set, with a known kid',
      signWith(rsa2.privateKey, 'RS256', { sub: 'a' }, 'rsa-1'),
      AuthFailure.InvalidSignature,
    ],
    ['HS256 token', token({ sub: 'a' }, { kid: 'rsa-1' }), AuthFailure.AlgorithmNotAllowed],
    ['alg none', Promise.resolve(unsignedToken({ sub: 'a' })), AuthFailure.AlgorithmNotAllowed],
    [
      'expired',
      new SignJWT({ sub: 'a' })
        .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
        .setExpirationTime(now() - 60)
        .sign(rsa.privateKey),
      AuthFailure.TokenExpired,
    ],
  ];
  for (const [name, jwt, want] of rows) t.equal(reason(await v.verify(await jwt)), want, name);
});

t.test('a bad key source rejects with a ConfigError naming the variable', async (t) => {
  const dir = tempDir(t);
  const write = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const { publicKey } = await generateKeyPair('RS256', { extractable: true });
  const pem = await exportSPKI(publicKey);
  const aFile = write('plain.txt', 'x');
  const rows: Array<[string, Env, string]> = [
    [
      'PEM with a garbage body',
      { HERALD_JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----' },
      'HERALD_JWT_PUBLIC_KEY',
    ],
    ['PEM truncated', { HERALD_JWT_PUBLIC_KEY: pem.slice(0, 80) }, 'HERALD_JWT_PUBLIC_KEY'],
    [
      'PEM with a garbage body and an explicit algorithm',
      { HERALD_JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----', HERALD_JWT_ALGORITHMS: 'RS256' },
      'HERALD_JWT_PUBLIC_KEY',
    ],
    ['RSA PEM with an EC algorithm', { HERALD_JWT_PUBLIC_KEY: pem, HERALD_JWT_ALGORITHMS: 'ES256' }, 'HERALD_JWT_PUBLIC_KEY'],
    ['PEM file that does not exist', { HERALD_JWT_PUBLIC_KEY: join(dir, 'missing.pem') }, 'HERALD_JWT_PUBLIC_KEY'],
    ['PEM path that is a directory', { HERALD_JWT_PUBLIC_KEY: dir }, 'HERALD_JWT_PUBLIC_KEY'],
    ['PEM path that cannot be opened (under a regular file)', { HERALD_JWT_PUBLIC_KEY: join(aFile, 'key.pem') }, 'HERALD_JWT_PUBLIC_KEY'],
    ['PEM file that is empty', { HERALD_JWT_PUBLIC_KEY: write('empty.pem', '') }, 'HERALD_JWT_PUBLIC_KEY'],
    ['JWKS file that does not exist', { HERALD_JWT_JWKS: join(dir, 'missing.json') }, 'HERALD_JWT_JWKS'],
    ['JWKS path that is a directory', { HERALD_JWT_JWKS: dir }, 'HERALD_JWT_JWKS'],
    ['JWKS path that cannot be opened (under a regular file)', { HERALD_JWT_JWKS: join(aFile, 'jwks.json') }, 'HERALD_JWT_JWKS'],
    ['JWKS file that is not JSON', { HERALD_JWT_JWKS: write('bad.json', '{"keys": [') }, 'HERALD_JWT_JWKS'],
    ['JWKS file without keys', { HERALD_JWT_JWKS: write('nokeys.json', '{"kty":"RSA"}') }, 'HERALD_JWT_JWKS'],
    ['JWKS file whose keys is not an array', { HERALD_JWT_JWKS: write('obj.json', '{"keys":{"0":{}}}') }, 'HERALD_JWT_JWKS'],
    ['JWKS file that is JSON null', { HERALD_JWT_JWKS: write('null.json', 'null') }, 'HERALD_JWT_JWKS'],
    ['JWKS file whose keys are not objects', { HERALD_JWT_JWKS: write('nums.json', '{"keys":[1,2]}') }, 'HERALD_JWT_JWKS'],
  ];
  for (const [name, env, variable] of rows) {
    await t.rejects(createVerifier(jwtConfig(env)), { name: 'ConfigError', message: new RegExp(`^${variable}: `) }, name);
  }
});

t.test('a ConfigError from a key source never contains the secret material', async (t) => {
  const secretish = '-----BEGIN PUBLIC KEY-----\nSECRETSECRETSECRET\n-----END PUBLIC KEY-----';
  const err = await createVerifier(jwtConfig({ HERALD_JWT_PUBLIC_KEY: secretish })).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, ConfigError);
  t.notMatch((err as Error).message, 'SECRETSECRETSECRET');
});

t.test('identityFromClaims maps valid claims and refuses claims that break the grammar', async (t) => {
  const exp = now() + 60;
  const rows: Array<[name: string, claims: Record<string, unknown>, want: { userId: string; roles: string[] } | undefined]> = [
    ['sub only', { sub: 'alice', exp }, { userId: 'alice', roles: [] }],
    ['sub and roles', { sub: 'alice', exp, roles: ['admin'] }, { userId: 'alice', roles: ['admin'] }],
    ['roles null means none', { sub: 'alice', exp, roles: null }, { userId: 'alice', roles: [] }],
    ['sub of prototype name', { sub: '__proto__', exp }, { userId: '__proto__', roles: [] }],
    [
      'role of prototype name',
      { sub: 'a', exp, roles: ['__proto__', 'constructor'] },
      { userId: 'a', roles: ['__proto__', 'constructor'] },
    ],
    [
      '64 roles',
      { sub: 'a', exp, roles: Array.from({ length: 64 }, (_, i) => `r${i}`) },
      { userId: 'a', roles: Array.from({ length: 64 }, (_, i) => `r${i}`) },
    ],
    ['role of 123 characters', { sub: 'a', exp, roles: ['r'.repeat(123)] }, { userId: 'a', roles: ['r'.repeat(123)] }],
    ['no sub', { exp }, undefined],
    ['empty sub', { sub: '', exp }, undefined],
    ['numeric sub', { sub: 1, exp }, undefined],
    ['sub with a colon-free invalid char', { sub: 'a/b', exp }, undefined],
    ['sub with a newline', { sub: 'alice\n', exp }, undefined],
    ['sub with a Cyrillic а', { sub: '\u0430lice', exp }, undefined],
    ['sub of 124 characters', { sub: 'x'.repeat(124), exp }, undefined],
    ['no exp', { sub: 'alice' }, undefined],
    ['exp as a string', { sub: 'alice', exp: String(exp) }, undefined],
    ['roles a string', { sub: 'a', exp, roles: 'admin' }, undefined],
    ['roles an object', { sub: 'a', exp, roles: { admin: true } }, undefined],
    ['65 roles', { sub: 'a', exp, roles: Array.from({ length: 65 }, (_, i) => `r${i}`) }, undefined],
    ['role of 124 characters', { sub: 'a', exp, roles: ['r'.repeat(124)] }, undefined],
    ['role with a glob', { sub: 'a', exp, roles: ['adm*'] }, undefined],
    ['role null entry', { sub: 'a', exp, roles: [null] }, undefined],
    ['topics a string', { sub: 'a', exp, topics: 'feed:*' }, undefined],
    ['topics with an empty entry', { sub: 'a', exp, topics: [''] }, undefined],
    ['topics with a number', { sub: 'a', exp, topics: [7] }, undefined],
    ['257 topics', { sub: 'a', exp, topics: Array.from({ length: 257 }, (_, i) => `t${i}`) }, undefined],
    ['a lifetime of exactly the limit', { sub: 'a', exp, iat: exp - 3600 }, { userId: 'a', roles: [] }],
    ['a lifetime a second over the limit', { sub: 'a', exp, iat: exp - 3601 }, undefined],
    ['no iat, exp within the limit from now', { sub: 'a', exp: now() + 3600 }, { userId: 'a', roles: [] }],
    ['no iat, exp beyond the limit from now', { sub: 'a', exp: now() + 3601 }, undefined],
  ];
  for (const [name, claims, want] of rows) {
    const id = identityFromClaims(claims, 3600, now());
    if (want === undefined) {
      t.equal(id, undefined, name);
    } else {
      t.ok(id !== undefined, `${name}: accepted`);
      t.equal(id?.userId, want.userId, `${name}: userId`);
      t.strictSame([...(id?.roles ?? [])], want.roles, `${name}: roles`);
      t.equal(id?.expiresAt, (claims['exp'] as number) * 1000, `${name}: expiresAt in ms`);
      // Without iat, the earliest it can have been issued: what a revocation compares.
      t.equal(id?.issuedAt, (claims['iat'] as number | undefined) ?? (claims['exp'] as number) - 3600, `${name}: issuedAt`);
    }
  }
});

t.test('identityFromClaims turns the topics claim into grants', async (t) => {
  const id = identityFromClaims({ sub: 'a', exp: now() + 60, topics: ['org:rio', 'feed:*', '*'] }, 3600, now());
  t.strictSame([...(id?.grants.exact ?? [])], ['org:rio']);
  t.strictSame([...(id?.grants.prefixes ?? [])], ['feed:', '']);
  const none = identityFromClaims({ sub: 'a', exp: now() + 60 }, 3600, now());
  t.equal(none?.grants.exact.size, 0);
  t.equal(none?.grants.prefixes.length, 0);
});

t.test('reasonForJoseError maps jose error codes, never messages, to reasons; no code means the key was unavailable', async (t) => {
  const rows: Array<[name: string, err: unknown, want: string]> = [
    ['expired', { code: 'ERR_JWT_EXPIRED' }, 'token_expired'],
    ['nbf claim', { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'nbf' }, 'token_not_yet_valid'],
    ['iss claim', { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'iss' }, 'invalid_claims'],
    ['aud claim', { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' }, 'invalid_claims'],
    ['sub claim', { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'sub' }, 'invalid_claims'],
    ['claim missing', { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' }, 'invalid_claims'],
    ['alg not allowed', { code: 'ERR_JOSE_ALG_NOT_ALLOWED' }, 'algorithm_not_allowed'],
    ['not supported', { code: 'ERR_JOSE_NOT_SUPPORTED' }, 'algorithm_not_allowed'],
    ['bad signature', { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, 'invalid_signature'],
    ['no matching key', { code: 'ERR_JWKS_NO_MATCHING_KEY' }, 'unknown_key'],
    ['multiple matching keys', { code: 'ERR_JWKS_MULTIPLE_MATCHING_KEYS' }, 'unknown_key'],
    ['JWKS timeout', { code: 'ERR_JWKS_TIMEOUT' }, 'key_unavailable'],
    ['JWKS invalid', { code: 'ERR_JWKS_INVALID' }, 'key_unavailable'],
    ['JWKS endpoint answered non-200', { code: 'ERR_JOSE_GENERIC' }, 'key_unavailable'],
    ['invalid JWS', { code: 'ERR_JWS_INVALID' }, 'malformed_token'],
    ['invalid JWT', { code: 'ERR_JWT_INVALID' }, 'malformed_token'],
    ['unknown code', { code: 'ERR_SOMETHING_NEW' }, 'malformed_token'],
    ['code in another case', { code: 'err_jwt_expired' }, 'malformed_token'],
    ['message that looks like expiry but no code', new Error('"exp" claim timestamp check failed'), 'key_unavailable'],
    ['numeric code', { code: 1 }, 'key_unavailable'],
    ['plain Error', new Error('boom'), 'key_unavailable'],
    ['TypeError', new TypeError('x is not a function'), 'key_unavailable'],
    ['string thrown', 'ERR_JWT_EXPIRED', 'key_unavailable'],
    ['number thrown', 42, 'key_unavailable'],
    ['empty object', {}, 'key_unavailable'],
    ['object with a prototype code', Object.create({ code: 'ERR_JWT_EXPIRED' }) as object, 'token_expired'],
    ['__proto__ own key from JSON', JSON.parse('{"__proto__":{"code":"ERR_JWT_EXPIRED"}}'), 'key_unavailable'],
    ['null thrown', null, 'key_unavailable'],
    ['undefined thrown', undefined, 'key_unavailable'],
  ];
  for (const [name, err, want] of rows) {
    let got: string | undefined;
    t.doesNotThrow(() => {
      got = reasonForJoseError(err);
    }, `${name}: does not throw`);
    t.equal(got, want, name);
  }
});

t.test('every reason a verifier can return is in the code table', async (t) => {
  const values = Object.values(AuthFailure);
  t.strictSame(values, [...new Set(values)], 'no duplicates');
  for (const r of values) t.match(r, /^[a-z_]+$/, `${r} is a bounded label`);
});

t.test("a JWKS URL: keys are fetched over HTTP; a dead or failing endpoint is key_unavailable, not the client's fault", async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  let status = 200;
  const server = createServer((_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(status === 200 ? JSON.stringify({ keys: [jwk] }) : '{"error":"down"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as { port: number }).port;
  const signed = await new SignJWT({})
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setSubject('u1')
    .setExpirationTime('1h')
    .sign(privateKey);

  const live = await createVerifier(
    loadConfig({ HERALD_JWT_JWKS: `http://127.0.0.1:${port}/jwks.json`, HERALD_JWT_ALGORITHMS: 'RS256' }).jwt,
  );
  const ok = await live.verify(signed);
  t.ok(ok.ok && ok.identity.userId === 'u1', 'a token signed by a published key verifies');

  status = 500;
  const failing = await createVerifier(
    loadConfig({ HERALD_JWT_JWKS: `http://127.0.0.1:${port}/other.json`, HERALD_JWT_ALGORITHMS: 'RS256' }).jwt,
  );
  t.same(await failing.verify(signed), { ok: false, reason: 'key_unavailable' }, 'a 500 from the key endpoint');

  const closedPort = await freePort(); // nothing listens there
  const dead = await createVerifier(
    loadConfig({ HERALD_JWT_JWKS: `http://127.0.0.1:${closedPort}/jwks.json`, HERALD_JWT_ALGORITHMS: 'RS256' }).jwt,
  );
  t.same(await dead.verify(signed), { ok: false, reason: 'key_unavailable' }, 'nothing listening at the key endpoint');
});

// JWT verification with jose. Keys are imported once at start (a CryptoKey
// verifies HS256 about twice as fast as raw bytes handed over per call), and every
// failure maps to one bounded reason used in the 401 body, the log and the metric.
import { createPublicKey, webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Refusal } from '@herald/client/codes';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  importSPKI,
  importX509,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
} from 'jose';
import { ConfigError, type JwtConfig } from './config.js';
import { type Grants, isValidName, NO_GRANTS, parseGrants } from './topics.js';

/** Why a token is refused: the reasons of the code table's token refusals (codes.ts). */
export const AuthFailure = {
  MissingToken: Refusal.MissingToken.reason,
  /** Different tokens in two sources (say header and cookie): neither is tried. */
  ConflictingTokens: Refusal.ConflictingTokens.reason,
  TokenTooLarge: Refusal.TokenTooLarge.reason,
  MalformedToken: Refusal.MalformedToken.reason,
  AlgorithmNotAllowed: Refusal.AlgorithmNotAllowed.reason,
  UnknownKey: Refusal.UnknownKey.reason,
  InvalidSignature: Refusal.InvalidSignature.reason,
  TokenExpired: Refusal.TokenExpired.reason,
  TokenNotYetValid: Refusal.TokenNotYetValid.reason,
  /** Issued before a revocation of the user's tokens (the control API). */
  TokenRevoked: Refusal.TokenRevoked.reason,
  InvalidClaims: Refusal.InvalidClaims.reason,
  /** The JWKS endpoint could not be reached: not the client's fault (503). */
  KeyUnavailable: Refusal.KeyUnavailable.reason,
} as const;
export type AuthFailure = (typeof AuthFailure)[keyof typeof AuthFailure];
export const AUTH_FAILURES: readonly AuthFailure[] = Object.values(AuthFailure);

/** Who a verified token says the client is. */
export interface Identity {
  userId: string;
  roles: readonly string[];
  grants: Grants;
  /** `exp`, in ms since the epoch. */
  expiresAt: number;
  /** `iat` in s since the epoch; without one, `exp` - HERALD_JWT_MAX_LIFETIME_S (the
   *  earliest it can have been issued): what a revocation is compared with. */
  issuedAt: number;
}

export type AuthResult = { ok: true; identity: Identity } | { ok: false; reason: AuthFailure };

export interface Verifier {
  readonly algorithms: readonly string[];
  verify(token: string): Promise<AuthResult>;
}

const MAX_ROLES = 64;
const MAX_TOPIC_GRANTS = 256;
// Three base64url segments; anything else is refused before jose parses it.
const COMPACT_JWS_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

const HMAC_HASH: Readonly<Record<string, string>> = { HS256: 'SHA-256', HS384: 'SHA-384', HS512: 'SHA-512' };

/**
 * jose error codes -> reasons. Branch on codes, never on messages. jose gives every
 * problem with a token a code; an error without one (a JWKS fetch that failed, a
 * non-200 from the key endpoint) means we could not verify, which is not the client's
 * fault: key_unavailable (503, retry).
 */
export function reasonForJoseError(err: unknown): AuthFailure {
  const e = err as { code?: unknown; claim?: unknown } | null | undefined;
  if (typeof e?.code !== 'string') return AuthFailure.KeyUnavailable;
  switch (e.code) {
    case 'ERR_JWT_EXPIRED':
      return AuthFailure.TokenExpired;
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return e.claim === 'nbf' ? AuthFailure.TokenNotYetValid : AuthFailure.InvalidClaims;
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return AuthFailure.AlgorithmNotAllowed;
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return AuthFailure.InvalidSignature;
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return AuthFailure.UnknownKey;
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
    case 'ERR_JOSE_GENERIC':
      return AuthFailure.KeyUnavailable;
    default:
      return AuthFailure.MalformedToken;
  }
}

/**
 * Claims -> Identity, or undefined when `sub`, `roles` or `topics` break the grammar,
 * or the token lives longer than `maxLifetimeS` (exp - iat; without `iat`, exp - now):
 * a revocation is kept that long, so no token it covers may outlive it.
 */
export function identityFromClaims(payload: JWTPayload, maxLifetimeS: number, nowS: number): Identity | undefined {
  const sub = payload.sub;
  if (typeof sub !== 'string' || !isValidName(sub)) return undefined;
  const roles = payload['roles'] ?? [];
  if (!Array.isArray(roles) || roles.length > MAX_ROLES || !roles.every((r) => typeof r === 'string' && isValidName(r))) {
    return undefined;
  }
  const topics = payload['topics'] ?? [];
  if (!Array.isArray(topics) || topics.length > MAX_TOPIC_GRANTS || !topics.every((t) => typeof t === 'string')) {
    return undefined;
  }
  // Most tokens grant nothing extra: share one empty Grants rather than a Set per connection.
  const grants = topics.length === 0 ? NO_GRANTS : parseGrants(topics as string[]);
  const { exp, iat } = payload;
  if (grants === undefined || typeof exp !== 'number') return undefined;
  if (exp - (typeof iat === 'number' ? iat : nowS) > maxLifetimeS) return undefined;
  const issuedAt = typeof iat === 'number' ? iat : exp - maxLifetimeS;
  return { userId: sub, roles: roles as string[], grants, expiresAt: exp * 1000, issuedAt };
}

function defaultAlgorithmsForPem(pem: string): string[] {
  const key = createPublicKey(pem);
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256'];
    case 'rsa-pss':
      return ['PS256'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return [curve === 'secp384r1' ? 'ES384' : curve === 'secp521r1' ? 'ES512' : 'ES256'];
    }
    case 'ed25519':
      return ['EdDSA'];
    default:
      throw new ConfigError(`HERALD_JWT_PUBLIC_KEY: unsupported key type ${String(key.asymmetricKeyType)}`);
  }
}

type KeyBundle = { getKey: JWTVerifyGetKey; algorithms: string[] };

async function secretKeys(secret: string, algorithms: readonly string[]): Promise<KeyBundle> {
  const raw = new TextEncoder().encode(secret);
  const keys = new Map<string, webcrypto.CryptoKey>();
  for (const alg of algorithms) {
    const hash = HMAC_HASH[alg];
    if (hash === undefined) throw new ConfigError(`HERALD_JWT_ALGORITHMS: ${alg} cannot be used with HERALD_JWT_SECRET`);
    keys.set(alg, await webcrypto.subtle.importKey('raw', raw, { name: 'HMAC', hash }, false, ['verify']));
  }
  return { getKey: keyByAlg(keys), algorithms: [...algorithms] };
}

async function pemKeys(source: string, configured: readonly string[] | undefined): Promise<KeyBundle> {
  let pem = source;
  if (!source.startsWith('-----BEGIN')) {
    try {
      pem = await readFile(source, 'utf8');
    } catch (err) {
      throw new ConfigError(`HERALD_JWT_PUBLIC_KEY: cannot read PEM file ${JSON.stringify(source)}: ${(err as Error).message}`);
    }
  }
  pem = pem.replace(/\\n/g, '\n'); // tolerate PEMs pasted into one env line
  const isCert = pem.includes('-----BEGIN CERTIFICATE-----');
  let algorithms: string[];
  try {
    algorithms = configured !== undefined ? [...configured] : defaultAlgorithmsForPem(pem);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`HERALD_JWT_PUBLIC_KEY: not a valid PEM public key or certificate: ${(err as Error).message}`);
  }
  const keys = new Map<string, webcrypto.CryptoKey>();
  for (const alg of algorithms) {
    try {
      keys.set(alg, (await (isCert ? importX509(pem, alg) : importSPKI(pem, alg))) as webcrypto.CryptoKey);
    } catch (err) {
      throw new ConfigError(`HERALD_JWT_PUBLIC_KEY: the key cannot verify ${alg} (check HERALD_JWT_ALGORITHMS): ${(err as Error).message}`);
    }
  }
  return { getKey: keyByAlg(keys), algorithms };
}

function keyByAlg(keys: ReadonlyMap<string, webcrypto.CryptoKey>): JWTVerifyGetKey {
  return (header) => {
    const key = header.alg === undefined ? undefined : keys.get(header.alg);
    // jose has already checked `alg` against the allowlist; this is belt and braces.
    if (key === undefined) throw Object.assign(new Error('no key for alg'), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' });
    return key;
  };
}

async function jwksFileKeys(path: string, configured: readonly string[] | undefined): Promise<KeyBundle> {
  let getKey: JWTVerifyGetKey;
  try {
    const jwks = JSON.parse(await readFile(path, 'utf8')) as JSONWebKeySet;
    if (!Array.isArray(jwks.keys)) throw new Error('no "keys" array');
    getKey = createLocalJWKSet(jwks);
  } catch (err) {
    throw new ConfigError(`HERALD_JWT_JWKS: cannot read a JWKS from ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
  return { getKey, algorithms: configured !== undefined ? [...configured] : ['RS256', 'ES256'] };
}

export async function createVerifier(jwt: JwtConfig): Promise<Verifier> {
  let bundle: KeyBundle;
  switch (jwt.key.kind) {
    case 'secret':
      bundle = await secretKeys(jwt.key.secret, jwt.algorithms ?? ['HS256']);
      break;
    case 'pem':
      bundle = await pemKeys(jwt.key.pem, jwt.algorithms);
      break;
    case 'jwks-file':
      bundle = await jwksFileKeys(jwt.key.path, jwt.algorithms);
      break;
    case 'jwks-url':
      bundle = {
        // Keys are cached and refetched at most every 30 s, so an unknown `kid` cannot
        // make every upgrade hit the identity provider.
        getKey: createRemoteJWKSet(new URL(jwt.key.url), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 600_000 }),
        algorithms: jwt.algorithms !== undefined ? [...jwt.algorithms] : ['RS256', 'ES256'],
      };
      break;
    default: {
      const never: never = jwt.key;
      throw new Error(`unknown key source ${JSON.stringify(never)}`);
    }
  }

  const options: JWTVerifyOptions = {
    algorithms: bundle.algorithms,
    requiredClaims: ['exp', 'sub'],
    ...(jwt.issuer !== undefined ? { issuer: jwt.issuer } : {}),
    ...(jwt.audience !== undefined ? { audience: [...jwt.audience] } : {}),
  };
  const { getKey } = bundle;
  const { maxTokenBytes, maxLifetimeS } = jwt;

  return {
    algorithms: bundle.algorithms,
    async verify(token: string): Promise<AuthResult> {
      if (token.length > maxTokenBytes) return { ok: false, reason: AuthFailure.TokenTooLarge };
      if (!COMPACT_JWS_RE.test(token)) return { ok: false, reason: AuthFailure.MalformedToken };
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, options));
      } catch (err) {
        return { ok: false, reason: reasonForJoseError(err) };
      }
      const identity = identityFromClaims(payload, maxLifetimeS, Date.now() / 1000);
      return identity === undefined ? { ok: false, reason: AuthFailure.InvalidClaims } : { ok: true, identity };
    },
  };
}

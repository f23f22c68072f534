// Test tokens, signed with jose exactly as an identity provider would.
import { type JWTPayload, SignJWT } from 'jose';

export const TEST_SECRET = 'test-secret-that-is-long-enough-for-hs256!';

export interface TokenOptions {
  secret?: string;
  alg?: string;
  /** Seconds from now; negative = already expired. */
  expiresIn?: number;
  /** Omit `exp` entirely. */
  noExp?: boolean;
  notBefore?: number;
  issuer?: string;
  audience?: string | string[];
  kid?: string;
  /** `iat`, seconds from now (negative = issued in the past); default now. */
  issuedAt?: number;
}

export async function token(claims: JWTPayload & { roles?: unknown; topics?: unknown }, opts: TokenOptions = {}): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: opts.alg ?? 'HS256', typ: 'JWT', ...(opts.kid ? { kid: opts.kid } : {}) })
    .setIssuedAt(Math.floor(Date.now() / 1000) + (opts.issuedAt ?? 0));
  if (!opts.noExp) jwt.setExpirationTime(Math.floor(Date.now() / 1000) + (opts.expiresIn ?? 3600));
  if (opts.notBefore !== undefined) jwt.setNotBefore(Math.floor(Date.now() / 1000) + opts.notBefore);
  if (opts.issuer !== undefined) jwt.setIssuer(opts.issuer);
  if (opts.audience !== undefined) jwt.setAudience(opts.audience);
  return jwt.sign(new TextEncoder().encode(opts.secret ?? TEST_SECRET));
}

/** A token with `alg: none` and no signature, as an attacker would craft it. */
export function unsignedToken(claims: JWTPayload): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}.`;
}

// Minting tokens with the gateway's own secret: `herald token` and the dev banner.
// Production tokens come from your identity provider; this is for operators and dev.
import { SignJWT } from 'jose';

export interface TokenRequest {
  secret: string;
  /** An HS* algorithm; the first one the gateway allows. */
  algorithm: string;
  sub: string;
  roles: readonly string[];
  topics: readonly string[];
  ttlS: number;
  issuer: string | undefined;
  audience: readonly string[] | undefined;
}

export async function mintToken(r: TokenRequest): Promise<string> {
  const jwt = new SignJWT({
    ...(r.roles.length > 0 ? { roles: [...r.roles] } : {}),
    ...(r.topics.length > 0 ? { topics: [...r.topics] } : {}),
  })
    .setProtectedHeader({ alg: r.algorithm, typ: 'JWT' })
    .setSubject(r.sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + r.ttlS);
  if (r.issuer !== undefined) jwt.setIssuer(r.issuer);
  if (r.audience !== undefined) jwt.setAudience([...r.audience]);
  return jwt.sign(new TextEncoder().encode(r.secret));
}

// Pure decisions about a WebSocket upgrade request: where the token is, which
// subprotocol to answer, whether the Origin may connect.

/** Upgrade request fields, copied out of uWS's HttpRequest (which dies with its callback). */
export interface UpgradeRequest {
  authorization: string;
  protocols: string;
  cookie: string;
  origin: string;
  query: string;
}

export type TokenSource = 'header' | 'subprotocol' | 'query' | 'cookie';

/** Subprotocols Herald speaks, most preferred first. */
export const SUBPROTOCOLS = ['herald.v1'] as const;
const BEARER_PROTOCOL_PREFIX = 'bearer.';
export const TOKEN_COOKIE = 'herald_token';

function splitProtocols(header: string): string[] {
  return header === ''
    ? []
    : header
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p !== '');
}

export type FoundToken =
  | { kind: 'none' }
  | { kind: 'token'; token: string; source: TokenSource }
  /** Two different tokens: which one the client meant is unknowable, so neither is used. */
  | { kind: 'conflict'; sources: TokenSource[] };

/**
 * The token, looked for in every source: Authorization Bearer, `bearer.<jwt>`
 * subprotocol entries, `?token=`, the herald_token cookie. The same token in several
 * places (a browser sending both cookie and subprotocol) is fine; two different ones
 * are a conflict. `source` names the first place it was found, in that order.
 */
export function findToken(req: UpgradeRequest): FoundToken {
  const found: Array<{ token: string; source: TokenSource }> = [];
  const auth = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.authorization);
  if (auth?.[1] !== undefined) found.push({ token: auth[1], source: 'header' });

  for (const p of splitProtocols(req.protocols)) {
    if (p.length > BEARER_PROTOCOL_PREFIX.length && p.toLowerCase().startsWith(BEARER_PROTOCOL_PREFIX)) {
      found.push({ token: p.slice(BEARER_PROTOCOL_PREFIX.length), source: 'subprotocol' });
    }
  }

  if (req.query !== '') {
    for (const q of new URLSearchParams(req.query).getAll('token')) if (q !== '') found.push({ token: q, source: 'query' });
  }

  if (req.cookie !== '') {
    for (const part of req.cookie.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === TOKEN_COOKIE) {
        let value = part.slice(eq + 1).trim();
        // RFC 6265 allows a quoted cookie value.
        if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
        if (value !== '') found.push({ token: value, source: 'cookie' });
      }
    }
  }
  const first = found[0];
  if (first === undefined) return { kind: 'none' };
  if (found.every((f) => f.token === first.token)) return { kind: 'token', ...first };
  return { kind: 'conflict', sources: [...new Set(found.map((f) => f.source))] };
}

/**
 * The subprotocol to answer: the first Herald protocol the client offered, else ''
 * (no header). The `bearer.<jwt>` entry is never chosen, so the token is never echoed.
 */
export function chooseSubprotocol(protocols: string): string {
  // Exact match: the answer must be one of the values the client offered (RFC 6455 4.2.2).
  const offered = splitProtocols(protocols);
  for (const p of SUBPROTOCOLS) if (offered.includes(p)) return p;
  return '';
}

/**
 * `allowed` entries are lower-case `scheme://host[:port]`, or `scheme://*.domain[:port]`
 * for any subdomain. undefined = every origin. A request without Origin (not a
 * browser) is allowed: Origin checks protect browsers from cross-site pages.
 */
export function isOriginAllowed(origin: string, allowed: readonly string[] | undefined): boolean {
  if (allowed === undefined || origin === '') return true;
  const o = origin.toLowerCase();
  for (const rule of allowed) {
    const star = rule.indexOf('://*.');
    // A wildcard rule never matches its own text: `https://*.example.org` is not an origin.
    if (star === -1 && rule === o) return true;
    if (star !== -1) {
      const scheme = rule.slice(0, star + 3);
      const suffix = rule.slice(star + 4); // ".example.com[:port]"
      if (o.startsWith(scheme) && o.endsWith(suffix)) {
        const sub = o.slice(scheme.length, o.length - suffix.length);
        if (/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(sub)) return true;
      }
    }
  }
  return false;
}

/**
 * Whether a `Connection` header lists the `upgrade` token, as RFC 6455 requires of a
 * handshake (`Upgrade`, `keep-alive, Upgrade`...). uWS hands Herald any request with
 * an `Upgrade` header; one that says `Connection: close` is marked for closing, and
 * this uWS build then closes the socket right after an upgrade made after an await
 * (the client sees a 101, then a 1006), so such requests are refused instead.
 */
export function connectionListsUpgrade(header: string): boolean {
  for (const part of header.split(',')) {
    if (part.trim().toLowerCase() === 'upgrade') return true;
  }
  return false;
}

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
  return header === '' ? [] : header.split(',').map((p) => p.trim()).filter((p) => p !== '');
}

/** The first token found, in order: Authorization Bearer, `bearer.<jwt>` subprotocol, `?token=`, cookie. */
export function findToken(req: UpgradeRequest): { token: string; source: TokenSource } | undefined {
  const auth = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.authorization);
  if (auth?.[1] !== undefined) return { token: auth[1], source: 'header' };

  for (const p of splitProtocols(req.protocols)) {
    if (p.length > BEARER_PROTOCOL_PREFIX.length && p.toLowerCase().startsWith(BEARER_PROTOCOL_PREFIX)) {
      return { token: p.slice(BEARER_PROTOCOL_PREFIX.length), source: 'subprotocol' };
    }
  }

  if (req.query !== '') {
    const q = new URLSearchParams(req.query).get('token');
    if (q !== null && q !== '') return { token: q, source: 'query' };
  }

  if (req.cookie !== '') {
    for (const part of req.cookie.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === TOKEN_COOKIE) {
        let value = part.slice(eq + 1).trim();
        // RFC 6265 allows a quoted cookie value.
        if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
        if (value !== '') return { token: value, source: 'cookie' };
      }
    }
  }
  return undefined;
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
    if (rule === o) return true;
    const star = rule.indexOf('://*.');
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

// Every code Herald answers with, each defined once: the HTTP refusals (the upgrade,
// POST /publish, the other endpoints), the `error` frame codes and the close codes.
// Each entry says what goes on the wire, whether a client should try again (and how),
// and the sentence docs/PROTOCOL.md shows for it. The gateway builds its replies from
// these tables, the SDK decides its retries from them, and a unit test holds the
// docs' tables against them (test/unit/codes-docs.test.ts). Pure: no DOM, no Node.

/** What a client should do after a code. */
export const Retry = {
  /** Try again after a delay that grows with each failure, jittered (or after `Retry-After` / `retryAfterMs` when given). */
  Backoff: 'backoff',
  /** Try again at once with a fresh token (once; then back off, so a token source handing out bad tokens does not loop). */
  FreshToken: 'fresh_token',
  /** Do not try the same again: it will be refused again until the client, its token or the configuration changes. */
  Never: 'never',
} as const;
export type Retry = (typeof Retry)[keyof typeof Retry];

/** The words the docs' Retry columns show for each advice. */
export const RETRY_DOC: { readonly [R in Retry]: string } = {
  backoff: 'back off',
  fresh_token: 'fresh token',
  never: 'no',
};

/** An HTTP answer that refuses: the status and the JSON body's `error` and `reason`. */
export interface HttpRefusal {
  readonly status: number;
  readonly error: string;
  /** Absent on the generic answers (404, 405, 426, 500), whose `error` says it all. */
  readonly reason?: string;
  readonly retry: Retry;
  /** Response headers that go with it, besides Content-Type and Cache-Control. */
  readonly headers?: Readonly<Record<string, string>>;
  /** The TCP connection is closed after the reply (`Connection: close`): the rest of the request is not read. */
  readonly closeConnection?: boolean;
  /** The sentence docs/PROTOCOL.md's row for it contains. */
  readonly doc: string;
}

const BEARER_INVALID = { 'WWW-Authenticate': 'Bearer error="invalid_token"' } as const;
const RETRY_AFTER = { 'Retry-After': '1' } as const;

/** A refused upgrade whose token is at fault: 401 with `WWW-Authenticate`. */
function unauthorized<R extends string>(reason: R, retry: Retry, doc: string) {
  return { status: 401, error: 'unauthorized', reason, retry, headers: BEARER_INVALID, doc } as const;
}

/**
 * HTTP refusals, by name. Upgrade refusals in the order the gateway checks them
 * (PROTOCOL.md, "Refused upgrades"; the token reasons are also `auth_failed` frames'
 * `reason`), then POST /publish's, then the generic answers any endpoint may give.
 */
export const Refusal = {
  Draining: { status: 503, error: 'unavailable', reason: 'draining', retry: Retry.Backoff, doc: 'The gateway is shutting down.' },
  ConnectionNotUpgrade: {
    status: 400,
    error: 'bad_request',
    reason: 'connection_not_upgrade',
    retry: Retry.Never,
    closeConnection: true,
    doc: 'The request has an `Upgrade` header but its `Connection` header does not list the `upgrade` token.',
  },
  UriTooLong: {
    status: 414,
    error: 'uri_too_long',
    reason: 'uri_too_long',
    retry: Retry.Never,
    closeConnection: true,
    doc: 'The query string is longer than `HERALD_MAX_TOKEN_BYTES` + 1024 bytes, without a `token=` parameter.',
  },
  TooManyProtocols: {
    status: 400,
    error: 'bad_request',
    reason: 'too_many_protocols',
    retry: Retry.Never,
    closeConnection: true,
    doc: 'More than 8 `Sec-WebSocket-Protocol` entries.',
  },
  TooManyConnections: {
    status: 503,
    error: 'unavailable',
    reason: 'too_many_connections',
    retry: Retry.Backoff,
    headers: RETRY_AFTER,
    doc: 'The gateway holds `HERALD_MAX_CONNECTIONS` connections.',
  },
  TooManyConnectionsFromAddress: {
    status: 429,
    error: 'too_many_requests',
    reason: 'too_many_connections_from_address',
    retry: Retry.Backoff,
    headers: RETRY_AFTER,
    doc: 'The client address holds `HERALD_MAX_CONNECTIONS_PER_IP` connections.',
  },
  UpgradeRateExceeded: {
    status: 429,
    error: 'too_many_requests',
    reason: 'upgrade_rate_exceeded',
    retry: Retry.Backoff,
    headers: RETRY_AFTER,
    doc: 'The client address is over `HERALD_UPGRADE_RATE_PER_IP` upgrade attempts per second.',
  },
  OriginNotAllowed: {
    status: 403,
    error: 'forbidden',
    reason: 'origin_not_allowed',
    retry: Retry.Never,
    doc: '`Origin` not in `HERALD_ALLOWED_ORIGINS`.',
  },
  MissingToken: unauthorized('missing_token', Retry.FreshToken, 'No token in any of the four sources.'),
  ConflictingTokens: unauthorized('conflicting_tokens', Retry.Never, 'Two different tokens (in two sources, or twice in one).'),
  TokenTooLarge: unauthorized(
    'token_too_large',
    Retry.Never,
    'Longer than `HERALD_MAX_TOKEN_BYTES` (8192), in any source; refused before any crypto.',
  ),
  MalformedToken: unauthorized('malformed_token', Retry.Never, 'Not three base64url segments, or the header or payload does not decode.'),
  AlgorithmNotAllowed: unauthorized(
    'algorithm_not_allowed',
    Retry.Never,
    "The header's `alg` is not in the allowlist (`HERALD_JWT_ALGORITHMS`).",
  ),
  UnknownKey: unauthorized('unknown_key', Retry.FreshToken, "A JWKS holds no key (or several) matching the token's `kid`/`alg`."),
  InvalidSignature: unauthorized('invalid_signature', Retry.FreshToken, 'The signature does not verify with the configured key.'),
  TokenExpired: unauthorized('token_expired', Retry.FreshToken, '`exp` is not in the future.'),
  TokenNotYetValid: unauthorized('token_not_yet_valid', Retry.Backoff, '`nbf` is in the future.'),
  TokenRevoked: unauthorized(
    'token_revoked',
    Retry.FreshToken,
    "The user's tokens issued before a revocation (`POST /control/revoke`) are refused: `iat` is earlier than the revocation time.",
  ),
  InvalidClaims: unauthorized(
    'invalid_claims',
    Retry.Never,
    '`sub` or `exp` missing; `iss`/`aud` do not match `HERALD_JWT_ISSUER`/`HERALD_JWT_AUDIENCE`; a claim of the wrong type; `sub`, `roles` or `topics` breaking the rules below (a `:` in `sub` or in a role included).',
  ),
  TooManyConnectionsForUser: {
    status: 429,
    error: 'too_many_requests',
    reason: 'too_many_connections_for_user',
    retry: Retry.Backoff,
    headers: RETRY_AFTER,
    doc: "The token's user holds `HERALD_MAX_CONNECTIONS_PER_USER` connections across every gateway.",
  },
  KeyUnavailable: {
    status: 503,
    error: 'unavailable',
    reason: 'key_unavailable',
    retry: Retry.Backoff,
    doc: 'The keys could not be had: the JWKS URL timed out (5 s), refused the connection, answered other than 200, or served a document that is not a JWKS.',
  },

  InvalidJson: { status: 400, error: 'bad_request', reason: 'invalid_json', retry: Retry.Never, doc: 'Body is not JSON.' },
  InvalidBody: {
    status: 400,
    error: 'bad_request',
    reason: 'invalid_body',
    retry: Retry.Never,
    doc: 'Not an object or array of `{topic, data}`.',
  },
  TooManyItems: {
    status: 400,
    error: 'bad_request',
    reason: 'too_many_items',
    retry: Retry.Never,
    doc: 'Array longer than `HERALD_PUBLISH_MAX_BATCH`.',
  },
  NotificationTooLarge: {
    status: 400,
    error: 'bad_request',
    reason: 'notification_too_large',
    retry: Retry.Never,
    doc: "An item's serialised `data` is over `HERALD_MAX_NOTIFICATION_BYTES`.",
  },
  InvalidPublishKey: {
    status: 401,
    error: 'unauthorized',
    reason: 'invalid_publish_key',
    retry: Retry.Never,
    headers: { 'WWW-Authenticate': 'Bearer' },
    closeConnection: true,
    doc: 'Missing or wrong key.',
  },
  BodyTooLarge: {
    status: 413,
    error: 'payload_too_large',
    reason: 'body_too_large',
    retry: Retry.Never,
    closeConnection: true,
    doc: 'Body over `HERALD_PUBLISH_MAX_BODY_BYTES` (`/publish`) or over 4096 bytes (`/control/*`).',
  },
  RedisUnavailable: {
    status: 503,
    error: 'unavailable',
    reason: 'redis_unavailable',
    retry: Retry.Backoff,
    doc: 'Redis mode, Redis did not take the `FCALL herald_publish` (or the `PUBLISH`, history off), including an ACL refusal; on `/control/*` and `/presence`, Redis did not take the control message or answer the read.',
  },
  InvalidControlKey: {
    status: 401,
    error: 'unauthorized',
    reason: 'invalid_control_key',
    retry: Retry.Never,
    headers: { 'WWW-Authenticate': 'Bearer' },
    closeConnection: true,
    doc: 'Missing or wrong key: `/control/*` takes `HERALD_CONTROL_KEY`, `GET /presence` that key or `HERALD_PUBLISH_KEY`.',
  },
  ControlKeyRequired: {
    status: 403,
    error: 'forbidden',
    reason: 'control_key_required',
    retry: Retry.Never,
    closeConnection: true,
    doc: '`HERALD_PUBLISH_KEY` on `/control/*`: publishing services may read presence, not act on connections.',
  },
  InvalidRequest: {
    status: 400,
    error: 'bad_request',
    reason: 'invalid_request',
    retry: Retry.Never,
    doc: 'A presence query or control body that breaks the rules (the `message` says which).',
  },
  MethodNotAllowed: {
    status: 405,
    error: 'method_not_allowed',
    retry: Retry.Never,
    headers: { Allow: 'POST' },
    doc: 'Another method on `/publish` or `/control/*` (when enabled).',
  },
  PresenceMethodNotAllowed: {
    status: 405,
    error: 'method_not_allowed',
    retry: Retry.Never,
    headers: { Allow: 'GET' },
    doc: 'Another method on `/presence` (when enabled).',
  },

  NotFound: { status: 404, error: 'not_found', retry: Retry.Never, doc: 'Any other path.' },
  UpgradeRequired: {
    status: 426,
    error: 'upgrade_required',
    retry: Retry.Never,
    headers: { Upgrade: 'websocket' },
    doc: 'A plain `GET` on the WebSocket path, without `Upgrade`.',
  },
  Internal: { status: 500, error: 'internal', retry: Retry.Backoff, doc: 'A bug; logged.' },
} as const satisfies Record<string, HttpRefusal>;

/** The JSON body of a refusal: `error`, then `reason` when it has one, then `extra` (a 400's `message`, a 413's `limit`). */
export function refusalBody(refusal: HttpRefusal, extra?: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return { error: refusal.error, ...(refusal.reason !== undefined ? { reason: refusal.reason } : {}), ...extra };
}

/**
 * What a client does after a refused upgrade it knows only the status of (`ws` shows
 * it; a browser sees a close 1006 before open, `undefined` here). A status covers
 * several reasons: a fresh token when any of them asks for one (and when the status is
 * unknown: it may be a 401), otherwise a back-off. Never `never`: the status may come
 * from a proxy in front of the gateway (a 404 or 503 during a deploy), not from Herald.
 */
export function retryAfterRefusal(status: number | undefined): Retry {
  if (status === undefined) return Retry.FreshToken;
  for (const r of Object.values(Refusal) as HttpRefusal[]) if (r.status === status && r.retry === Retry.FreshToken) return Retry.FreshToken;
  return Retry.Backoff;
}

/** Why `GET /readyz` answers 503 `{"status":"unavailable","reason":…}`: a probe's answer, not a refusal. */
export interface NotReadyReason {
  readonly status: 503;
  readonly reason: string;
  /** The words docs/PROTOCOL.md's /readyz row shows beside it. */
  readonly doc: string;
}

/** The /readyz reasons, in the order the gateway checks them. */
export const NotReady = {
  Starting: { status: 503, reason: 'starting', doc: 'starting up' },
  Draining: { status: 503, reason: 'draining', doc: 'shutting down' },
  RedisUnavailable: { status: 503, reason: 'redis_unavailable', doc: 'Redis mode:' },
} as const satisfies Record<string, NotReadyReason>;
export type NotReady = (typeof NotReady)[keyof typeof NotReady];

/** An `error` frame's code. No error code closes the connection by itself. */
export interface ErrorFrameCode {
  readonly code: string;
  readonly retry: Retry;
  /** The sentence docs/PROTOCOL.md's row for it contains. */
  readonly doc: string;
}

/** The `error` frame codes (PROTOCOL.md, "`error`"). */
export const ErrorFrame = {
  InvalidMessage: {
    code: 'invalid_message',
    retry: Retry.Never,
    doc: 'Valid JSON that is not a valid frame: not an object, `type` not a string, a missing or extra property, a value of the wrong type or length.',
  },
  UnknownType: { code: 'unknown_type', retry: Retry.Never, doc: '`type` is a string this server does not know.' },
  Forbidden: {
    code: 'forbidden',
    retry: Retry.Never,
    doc: '`subscribe` to a topic the token does not grant, or `history` of a topic the connection neither holds nor is granted.',
  },
  /** Carries `retryAfterMs`. */
  RateLimited: {
    code: 'rate_limited',
    retry: Retry.Backoff,
    doc: 'Over the per-connection rate, over 256 frames waiting, or a `resume` or `history` over the replay budget.',
  },
  TooManyTopics: {
    code: 'too_many_topics',
    retry: Retry.Never,
    doc: '`subscribe` would exceed `HERALD_MAX_TOPICS_PER_CONNECTION` (100) added topics.',
  },
  Unavailable: { code: 'unavailable', retry: Retry.Backoff, doc: 'The backend could not take the request; retry later.' },
  HistoryUnavailable: {
    code: 'history_unavailable',
    retry: Retry.Never,
    doc: 'A `history` request to a gateway that keeps no history (embedded mode, or history off).',
  },
  /** Carries `reason`: a token refusal reason (Refusal's 401/503 reasons) or `subject_mismatch`. */
  AuthFailed: { code: 'auth_failed', retry: Retry.FreshToken, doc: "An `auth` frame's token was refused." },
} as const satisfies Record<string, ErrorFrameCode>;
export type ErrorFrameName = keyof typeof ErrorFrame;
/** The codes PROTOCOL.md lists. */
export type ErrorCode = (typeof ErrorFrame)[ErrorFrameName]['code'];

/** An `auth_failed` reason beside the token refusal reasons: a valid token for another `sub`. */
export const SUBJECT_MISMATCH = 'subject_mismatch';

const ERROR_RETRY: ReadonlyMap<string, Retry> = new Map(Object.values(ErrorFrame).map((e) => [e.code, e.retry]));

/** The advice for an `error` frame's code; undefined for a code this table does not know (a newer gateway's). */
export function retryAfterError(code: string): Retry | undefined {
  return ERROR_RETRY.get(code);
}

/** A close code the gateway sends, with its reason text. */
export interface ServerCloseCode {
  readonly code: number;
  /** The close frame's reason text (at most 123 bytes). */
  readonly reason: string;
  readonly retry: Retry;
  /** The sentence docs/PROTOCOL.md's row for it contains. */
  readonly doc: string;
}

/** The closes the gateway sends (PROTOCOL.md, "Close codes"). */
export const ServerClose = {
  ShuttingDown: {
    code: 1001,
    reason: 'shutting_down',
    retry: Retry.Backoff,
    doc: 'Graceful shutdown (SIGTERM/SIGINT).',
  },
  BinaryFrame: { code: 1003, reason: 'binary_not_supported', retry: Retry.Never, doc: 'A binary frame.' },
  NotJson: { code: 1003, reason: 'invalid_json', retry: Retry.Never, doc: 'A text frame that is not JSON.' },
  /** A wait fixes it (the window resets), a fresh token does not: back off, never give up (issue 16). */
  RateLimited: {
    code: 1008,
    reason: 'rate_limited',
    retry: Retry.Backoff,
    doc: 'The 2N+1-th frame within one rate-limit window (N = `HERALD_RATE_LIMIT_MESSAGES`).',
  },
  TokenExpired: {
    code: 1008,
    reason: 'token_expired',
    retry: Retry.FreshToken,
    doc: "The connection's token reached its `exp` without an `auth` renewal.",
  },
  TokenRevoked: {
    code: 1008,
    reason: 'token_revoked',
    retry: Retry.FreshToken,
    doc: "The user's tokens were revoked (`POST /control/revoke`) and this connection's token was issued before.",
  },
  MessageTooBig: {
    code: 1009,
    reason: 'message_too_big',
    retry: Retry.Never,
    doc: 'A frame over `HERALD_MAX_PAYLOAD_BYTES` but within the uWS hard cap.',
  },
  /** 1013 = try again later. */
  Backpressure: {
    code: 1013,
    reason: 'backpressure',
    retry: Retry.Backoff,
    doc: "The client stopped reading: the gateway held more than `HERALD_MAX_BACKPRESSURE_BYTES` (1 MiB) unsent for it, beyond what the kernel's socket buffers took (several MB on loopback).",
  },
  /** The control API ended the connection: the application decides whether to connect again. */
  Disconnected: {
    code: 4000,
    reason: 'disconnected',
    retry: Retry.Never,
    doc: 'A backend disconnected the user or this connection (`POST /control/disconnect`).',
  },
  /** The control API ended the connection and asked the client to come back (new claims, a rebalance). */
  Reconnect: {
    code: 4001,
    reason: 'reconnect',
    retry: Retry.Backoff,
    doc: 'A backend disconnected the connection with `"reconnect":true` (`POST /control/disconnect`).',
  },
} as const satisfies Record<string, ServerCloseCode>;

/** 1008 is WebSocket's policy violation: a policy close this table does not know (a newer gateway's) would happen again. */
const POLICY_VIOLATION = 1008;

/**
 * What a client does after the server closed with `code` and `reason`: the table's
 * advice, or for a close it does not list, `never` on a 1008 (policy) and a back-off
 * otherwise (1006 and other network-level closes included).
 */
export function retryAfterClose(code: number, reason: string): Retry {
  for (const c of Object.values(ServerClose) as ServerCloseCode[]) if (c.code === code && c.reason === reason) return c.retry;
  return code === POLICY_VIOLATION ? Retry.Never : Retry.Backoff;
}

// Environment -> frozen, typed Config. Pure: takes the env, touches nothing else.
// Every variable is one row of SETTINGS (default, parser, documented range), read
// through `read` by the gateway, the CLI and dev mode alike; loadConfig adds the
// checks between settings. Every error names the variable, so a misconfigured
// gateway fails at start with a message an operator can act on.
import type { HistoryConfig } from './history.js';
import { isTopic } from './topics.js';

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** Where verification keys come from; exactly one source is configured. */
export type JwtKeySource =
  | { kind: 'secret'; secret: string }
  /** PEM text, or a path to a PEM file (anything not starting with "-----BEGIN"). */
  | { kind: 'pem'; pem: string }
  | { kind: 'jwks-file'; path: string }
  /** A string, not a URL object: URL setters would defeat the freeze. */
  | { kind: 'jwks-url'; url: string };

export interface JwtConfig {
  key: JwtKeySource;
  /** Allowlist; undefined = derived from the key (HS256 for a secret, the key's own for PEM). */
  algorithms: readonly string[] | undefined;
  issuer: string | undefined;
  audience: readonly string[] | undefined;
  /** Tokens longer than this are refused before any crypto work. */
  maxTokenBytes: number;
  /** The longest lifetime accepted (exp - iat, or exp - now without iat), s: also how
   *  long a revocation is kept, since no token it covers can outlive it. */
  maxLifetimeS: number;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Config {
  host: string;
  /** 0 = any free port (the bound port is logged). */
  port: number;
  wsPath: string;
  /** undefined = embedded mode: no Redis, /publish delivers to this process only. */
  redisUrl: string | undefined;
  /** Names this deployment's Redis keys, internal channels and function library, so
   *  that several deployments can share one Redis server (keys.ts). */
  namespace: string;
  channelPrefix: string;
  jwt: JwtConfig;
  /** undefined = any Origin is accepted. */
  allowedOrigins: readonly string[] | undefined;
  maxPayloadBytes: number;
  /** 0 disables idle timeout and automatic pings. */
  idleTimeoutS: number;
  /** 0 messages = no per-connection rate limit. */
  rateLimit: { messages: number; windowMs: number };
  /** undefined = POST /publish disabled (404). */
  publishKey: string | undefined;
  publishMaxBodyBytes: number;
  publishMaxBatch: number;
  maxNotificationBytes: number;
  dedup: { windowMs: number; maxEntries: number };
  maxTopicsPerConnection: number;
  events: { stream: string; maxLen: number };
  logLevel: LogLevel;
  shutdownTimeoutMs: number;
  /** Admission control before any JWT work; 0 = no limit. The per-address limits
   *  count an IPv6 client by its first `ipv6PrefixBits` bits. */
  admission: { maxConnections: number; maxConnectionsPerIp: number; upgradeRatePerIp: number; ipv6PrefixBits: number };
  /** Take the client address from the first X-Forwarded-For hop (behind a trusted proxy). */
  trustProxy: boolean;
  /** Per-socket unsent bytes before uWS drops frames or closes the socket. */
  maxBackpressureBytes: number;
  /** Close a socket whose backlog passes the limit (true), or let uWS skip frames for it. */
  closeOnBackpressure: boolean;
  /** Gateway processes on this host sharing the port (SO_REUSEPORT); 1 = no supervisor. */
  workers: number;
  /** undefined = plain ws:// and http://. Paths are checked (readable, matching) at start. */
  tls: TlsConfig | undefined;
  /** Serve the demo page and the client SDK under /demo (development; `make run` sets it). */
  demo: boolean;
  /** Per-topic history for resume (Redis mode); undefined = off (embedded mode, or a 0 setting). */
  history: HistoryConfig | undefined;
  /** Recorder slots (history on): how many gateways record plain PUBLISHes at once. */
  recorders: number;
  /** Payload bytes a recorder holds while recording fails (in-flight calls included); past it the oldest are dropped. */
  recorderMaxWaitingBytes: number;
  /** History entries one connection may be replayed per minute (resumes); 0 = no limit. */
  replayBudget: number;
  /** undefined = the control API (/control/*) is off (404). */
  controlKey: string | undefined;
  /** Connections one user may hold across every gateway; 0 = no limit. */
  maxConnectionsPerUser: number;
  /** Presence upkeep in Redis (presence.ts): off = /presence and the per-user cap see this gateway only. */
  presence: boolean;
  /** A gateway whose heartbeat is older than this is dead: its presence entries no longer count, ms. */
  presenceTtlMs: number;
  /** `connected`/`disconnected` entries in the events stream (Redis mode). */
  connectionEvents: boolean;
}

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  passphrase: string | undefined;
  caFile: string | undefined;
}

// ---------------------------------------------------------------------------
// The settings table. Every environment variable Herald reads is one row: the env
// text that unset stands for (parsed like any set value, so a default is valid by
// construction), its parser, the Default and Unit / range columns of
// docs/CONFIGURATION.md, and the first words of its Meaning column.
// test/unit/config-doc.test.ts holds that document's tables against these rows.
// ---------------------------------------------------------------------------

/** What a parser throws; `read` turns it into a ConfigError naming the variable. */
class Invalid extends Error {}

export interface Setting<T> {
  /** The env text unset stands for; undefined = unset means something of its own (see `doc`). */
  readonly default: string | undefined;
  /** What `make run` (`--dev`) uses when the variable is unset (dev.ts). */
  readonly dev?: string;
  /** Said after the default in the Default column. */
  readonly defaultNote?: string;
  /** The whole Default column, when the default is derived rather than written here. */
  readonly defaultDoc?: string;
  /** The Unit / range column. */
  readonly range: string;
  /** How the Meaning column begins. */
  readonly doc: string;
  /** Taken as is: a secret or passphrase may end in a space. Every other value is trimmed. */
  readonly verbatim?: true;
  /** The set value (trimmed unless verbatim, never empty) -> its typed form; throws Invalid. */
  readonly parse: (raw: string) => T;
}

function integer(min: number, max: number, unit = ''): { range: string; parse: (raw: string) => number } {
  const range = `${min}-${max}${unit}`;
  return {
    range,
    parse: (raw) => {
      const n = Number(raw);
      // The regex keeps out what Number() would take: hex, exponents, fractions, "".
      if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
        throw new Invalid(`expected an integer ${range}, got ${JSON.stringify(raw)}`);
      }
      return n;
    },
  };
}

const TRUE_WORDS = ['true', '1', 'yes', 'on'];
const FALSE_WORDS = ['false', '0', 'no', 'off'];
const boolean = {
  range: `true/false (also ${TRUE_WORDS.slice(1)
    .map((w, i) => `${w}/${FALSE_WORDS[i + 1]}`)
    .join(', ')})`,
  parse: (raw: string): boolean => {
    const v = raw.toLowerCase();
    if (TRUE_WORDS.includes(v)) return true;
    if (FALSE_WORDS.includes(v)) return false;
    throw new Invalid(`expected true or false, got ${JSON.stringify(v)}`);
  },
};

function list(raw: string): string[] {
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new Invalid(`expected a comma-separated list, got ${JSON.stringify(raw)}`);
  return items;
}

const text = (raw: string): string => raw;

/**
 * Words that mark a documented placeholder ("REPLACE-ME-…" in the example Secret
 * this repository once shipped, LONG-RANDOM-PASSWORD in the Redis ACL example).
 * Such a value is public: anyone who read the repository could mint tokens, publish
 * or log in to Redis with it, so a key carrying one stops the start. Compared
 * case-insensitively; a generated key never contains them.
 */
export const PLACEHOLDER_MARKERS: readonly string[] = [
  'replace-me',
  'replace_me',
  'replaceme',
  'change-me',
  'change_me',
  'changeme',
  'placeholder',
  'long-random-password',
];

function refusePlaceholder(value: string, advice: string): void {
  const v = value.toLowerCase();
  // The value itself is never echoed: it may be a real secret after all.
  if (PLACEHOLDER_MARKERS.some((m) => v.includes(m))) {
    throw new Invalid(`looks like a documented placeholder, which anyone who read the repository knows; ${advice}`);
  }
}

/** Topic grammar shared with topics.ts; the prefix may not contain glob characters. */
const PREFIX_RE = /^[A-Za-z0-9_.@-]+(?::[A-Za-z0-9_.@-]+)*$/;
/** A namespace is a Redis function library name too: letters, digits and underscores. */
const NAMESPACE_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
/** Paths the HTTP endpoints own; the WebSocket path may be none of them. */
const RESERVED_PATHS = ['/healthz', '/readyz', '/metrics', '/stats', '/publish', '/presence', '/control', '/demo'];

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const PLACEHOLDER = '[documented placeholder](#placeholder-values)';

/** The gateway's settings, in the order docs/CONFIGURATION.md lists them. */
export const SETTINGS = {
  HERALD_HOST: {
    default: '0.0.0.0',
    // Dev mode prints a 24 h token and serves the demo page with generated secrets:
    // loopback only, unless HERALD_HOST says otherwise.
    dev: '127.0.0.1',
    range: 'address or host name',
    doc: 'Interface to listen on.',
    parse: (raw) => {
      if (!/^[A-Za-z0-9.:-]+$/.test(raw)) throw new Invalid(`expected an address or host name, got ${JSON.stringify(raw)}`);
      return raw;
    },
  },
  HERALD_PORT: { default: '8080', doc: 'TCP port; `0` = any free port', ...integer(0, 65535) },
  HERALD_WS_PATH: {
    default: '/ws',
    range: 'path `/[A-Za-z0-9._~/-]*`',
    doc: 'WebSocket endpoint; must not be',
    parse: (raw) => {
      if (!/^\/[A-Za-z0-9._~/-]*$/.test(raw) || raw.includes('//')) {
        throw new Invalid(`expected a path like /ws, got ${JSON.stringify(raw)}`);
      }
      if (RESERVED_PATHS.includes(raw)) throw new Invalid(`${raw} is reserved for an HTTP endpoint`);
      return raw;
    },
  },
  HERALD_REDIS_URL: {
    default: undefined,
    range: '`redis://` or `rediss://[user:password@]host:port[/db]`',
    doc: 'Unset = **embedded mode**',
    parse: (raw) => {
      let parsed: URL;
      try {
        parsed = new URL(raw);
      } catch {
        // Not echoed: the text may hold a password.
        throw new Invalid('not a valid URL; expected redis://[user:password@]host:port[/db]');
      }
      if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
        throw new Invalid(`expected a redis:// or rediss:// URL, got ${parsed.protocol}//`);
      }
      if (parsed.password !== '') refusePlaceholder(decodeURIComponentSafe(parsed.password), 'set the password of a real Redis user');
      // ioredis turns TLS on only for a lower-case `rediss://`: REDISS:// would go in clear.
      return parsed.protocol + raw.slice(parsed.protocol.length);
    },
  },
  HERALD_NAMESPACE: {
    default: 'herald',
    range: 'a letter, then up to 31 of `[A-Za-z0-9_]`',
    doc: "Names this deployment's Redis keys",
    parse: (raw) => {
      if (!NAMESPACE_RE.test(raw)) throw new Invalid(`expected a letter then up to 31 of [A-Za-z0-9_], got ${JSON.stringify(raw)}`);
      return raw;
    },
  },
  HERALD_CHANNEL_PREFIX: {
    default: 'notifications',
    range: 'up to 64 of `[A-Za-z0-9_.@-]`, `:` between parts; not the namespace, and not starting with `<ns>:`',
    doc: 'Backends publish topic `<topic>` on Redis channel `<prefix>:<topic>`',
    // The namespace half of the range is checked in channelPrefix().
    parse: (raw) => {
      if (!PREFIX_RE.test(raw) || raw.length > 64) {
        throw new Invalid(`expected up to 64 of [A-Za-z0-9_.@-] (":" between parts), got ${JSON.stringify(raw)}`);
      }
      return raw;
    },
  },
  HERALD_JWT_SECRET: {
    default: undefined,
    range: `at least 32 bytes, not a ${PLACEHOLDER}`,
    doc: 'HMAC key for HS256/384/512 tokens.',
    verbatim: true,
    parse: (raw) => {
      // RFC 7518 3.2: an HMAC key must be at least as long as the hash output.
      const bytes = Buffer.byteLength(raw, 'utf8');
      if (bytes < 32) throw new Invalid(`must be at least 32 bytes (got ${bytes}); generate one with \`openssl rand -base64 48\``);
      refusePlaceholder(raw, 'generate one with `openssl rand -base64 48`');
      return raw;
    },
  },
  HERALD_JWT_PUBLIC_KEY: {
    default: undefined,
    range: 'PEM text or a path to a PEM file',
    doc: 'Public key (SPKI) or X.509 certificate for RS/PS/ES/EdDSA tokens',
    parse: text,
  },
  HERALD_JWT_JWKS: {
    default: undefined,
    range: 'file path, or `https://` URL (`http://` only for loopback)',
    doc: 'JWKS; a URL is fetched on demand',
    parse: (raw): JwtKeySource => {
      if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) return { kind: 'jwks-file', path: raw };
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw new Invalid(`not a valid URL: ${JSON.stringify(raw)}`);
      }
      if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
        throw new Invalid(`a JWKS URL must use https (plain http only for loopback), got ${url.protocol}`);
      }
      return { kind: 'jwks-url', url: url.href };
    },
  },
  HERALD_JWT_ALGORITHMS: {
    default: undefined,
    defaultDoc: "`HS256` with a secret; the key's own with a PEM (RS256, PS256, ES256/384/512 by curve, EdDSA); `RS256,ES256` with a JWKS",
    range: `comma list of ${[...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS].join(' ')}`,
    doc: 'Allowlist.',
    // Which family goes with which key source is checked in algorithms().
    parse: (raw) => {
      const algs = list(raw);
      for (const alg of algs) {
        if (alg.toLowerCase() === 'none') throw new Invalid('"none" is never allowed');
        if (!isHmac(alg) && !(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) {
          throw new Invalid(
            `unknown algorithm ${JSON.stringify(alg)}; expected some of ${[...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS].join(', ')}`,
          );
        }
      }
      return [...new Set(algs)];
    },
  },
  HERALD_JWT_ISSUER: { default: undefined, range: 'string', doc: 'Required `iss`.', parse: text },
  HERALD_JWT_AUDIENCE: { default: undefined, range: 'comma list', doc: '`aud` must contain one of these.', parse: list },
  HERALD_JWT_MAX_LIFETIME_S: {
    default: '604800',
    doc: 'Longest token lifetime accepted (`exp` - `iat`; without `iat`, `exp` - now); also how long a revocation is kept.',
    ...integer(60, 31_536_000, ' seconds'),
  },
  HERALD_MAX_TOKEN_BYTES: {
    default: '8192',
    doc: 'Longer tokens are refused (`token_too_large`) before any crypto.',
    ...integer(256, 65536, ' bytes'),
  },
  HERALD_ALLOWED_ORIGINS: {
    default: undefined,
    range: 'comma list of `scheme://host[:port]`, or `https://*.example.com`',
    doc: 'Browser Origins allowed to connect.',
    parse: (raw) =>
      list(raw).map((o) => {
        if (!/^(https?):\/\/(\*\.)?([a-z0-9.-]+)(:\d{1,5})?$/i.test(o)) {
          throw new Invalid(`${JSON.stringify(o)} is not an origin; expected scheme://host[:port], optionally https://*.example.com`);
        }
        return o.toLowerCase();
      }),
  },
  HERALD_MAX_PAYLOAD_BYTES: { default: '10240', doc: 'Largest client frame;', ...integer(128, 1048576, ' bytes') },
  HERALD_IDLE_TIMEOUT_S: {
    default: '60',
    range: '0, or 8-960 seconds',
    doc: 'uWS idle timeout with automatic pings;',
    parse: (raw) => {
      const n = Number(raw);
      // uWS aborts the process on 1-7 (its timer granularity is 4 s), so refuse it here.
      if (!/^\d+$/.test(raw) || !(n === 0 || (n >= 8 && n <= 960))) {
        throw new Invalid(`expected 0 (off) or 8-960 seconds, got ${JSON.stringify(raw)}`);
      }
      return n;
    },
  },
  HERALD_RATE_LIMIT_MESSAGES: {
    default: '100',
    doc: 'Client frames allowed per window per connection;',
    ...integer(0, 1_000_000, ' frames'),
  },
  HERALD_RATE_LIMIT_WINDOW_S: { default: '60', doc: 'The rate-limit window.', ...integer(1, 3600, ' seconds') },
  HERALD_PUBLISH_KEY: {
    default: undefined,
    range: `at least 16 bytes, no whitespace, not a ${PLACEHOLDER}`,
    doc: 'Bearer key for `POST /publish`.',
    // Trimmed: a key mounted from a file often ends in a newline.
    parse: (raw) => {
      if (Buffer.byteLength(raw) < 16 || /\s/.test(raw)) {
        throw new Invalid('must be at least 16 bytes with no whitespace; generate one with `openssl rand -hex 24`');
      }
      refusePlaceholder(raw, 'generate one with `openssl rand -hex 24`');
      return raw;
    },
  },
  HERALD_CONTROL_KEY: {
    default: undefined,
    range: `at least 16 bytes, no whitespace, not a ${PLACEHOLDER}`,
    doc: 'Bearer key for the control API (`/control/*`) and `GET /presence`.',
    parse: (raw) => {
      if (Buffer.byteLength(raw) < 16 || /\s/.test(raw)) {
        throw new Invalid('must be at least 16 bytes with no whitespace; generate one with `openssl rand -hex 24`');
      }
      refusePlaceholder(raw, 'generate one with `openssl rand -hex 24`');
      return raw;
    },
  },
  HERALD_PUBLISH_MAX_BODY_BYTES: {
    default: '1048576',
    doc: 'Largest `/publish` body (413 beyond).',
    ...integer(1024, 67108864, ' bytes'),
  },
  HERALD_PUBLISH_MAX_BATCH: { default: '1000', doc: 'Most notifications in one `/publish` array.', ...integer(1, 100000) },
  HERALD_MAX_NOTIFICATION_BYTES: {
    default: '65536',
    doc: 'Largest notification payload;',
    ...integer(64, 16777216, ' bytes'),
  },
  HERALD_DEDUP_WINDOW_S: {
    default: '60',
    doc: 'A notification with the same (topic, id) is not delivered twice within this window;',
    ...integer(0, 86400, ' seconds'),
  },
  HERALD_DEDUP_MAX_ENTRIES: { default: '100000', doc: 'Bound on remembered (topic, id) pairs;', ...integer(1, 1_000_000) },
  HERALD_MAX_TOPICS_PER_CONNECTION: {
    default: '100',
    doc: 'Topics a connection may add with `subscribe`',
    ...integer(1, 10000),
  },
  HERALD_MAX_CONNECTIONS: { default: '0', doc: 'WebSocket connections this process holds', ...integer(0, 10_000_000) },
  HERALD_MAX_CONNECTIONS_PER_IP: { default: '0', doc: 'Connections per client address', ...integer(0, 10_000_000) },
  HERALD_MAX_CONNECTIONS_PER_USER: {
    default: '100',
    doc: 'Connections one user (`sub`) may hold across every gateway',
    ...integer(0, 1_000_000),
  },
  HERALD_UPGRADE_RATE_PER_IP: {
    default: '0',
    doc: 'Upgrade attempts per second per client address',
    ...integer(0, 1_000_000, ' per second'),
  },
  HERALD_IPV6_PREFIX: {
    default: '64',
    doc: 'The two per-address limits count an IPv6 client by the first this many bits of its address',
    ...integer(1, 128, ' bits'),
  },
  HERALD_TRUST_PROXY: {
    default: 'false',
    doc: 'Take the client address (for the two per-address limits) from the first `X-Forwarded-For` hop;',
    ...boolean,
  },
  HERALD_MAX_BACKPRESSURE_BYTES: {
    default: '1048576',
    doc: 'Unsent bytes uWS holds for one socket',
    ...integer(1024, 268435456, ' bytes'),
  },
  HERALD_CLOSE_ON_BACKPRESSURE: {
    default: 'true',
    doc: '`true` = a client that stops reading is closed with 1013 `backpressure`',
    ...boolean,
  },
  HERALD_EVENTS_STREAM: {
    // Derived in loadConfig from the namespace.
    default: undefined,
    defaultDoc: '`<ns>:events` (`herald:events`)',
    range: 'Redis key, 1-128 of `[A-Za-z0-9:_.@-]`',
    doc: 'Stream receiving `ack`/`mark_read` (Redis mode).',
    parse: (raw) => {
      if (!isTopic(raw)) throw new Invalid(`expected a Redis key of [A-Za-z0-9:_.@-], got ${JSON.stringify(raw)}`);
      return raw;
    },
  },
  HERALD_EVENTS_MAXLEN: {
    default: '100000',
    doc: 'Stream cap, applied as `XADD … MAXLEN ~ n`.',
    ...integer(1, 100_000_000, ' entries'),
  },
  HERALD_CONNECTION_EVENTS: {
    default: 'true',
    doc: 'Append `connected`/`disconnected` entries to the events stream',
    ...boolean,
  },
  HERALD_PRESENCE: {
    default: 'true',
    doc: 'Keep presence in Redis (Redis mode)',
    ...boolean,
  },
  HERALD_PRESENCE_TTL_S: {
    default: '5',
    doc: "A gateway's presence entries stop counting this long after its last heartbeat",
    ...integer(2, 300, ' seconds'),
  },
  HERALD_HISTORY_SIZE: {
    default: '100',
    doc: 'Notifications kept per topic in its Redis history stream',
    ...integer(0, 100_000, ' entries'),
  },
  HERALD_HISTORY_TTL_S: {
    default: '300',
    doc: 'History entries older than this are never replayed',
    ...integer(0, 7 * 86400, ' seconds'),
  },
  HERALD_RECOVERY_MAX: {
    default: '300',
    doc: "Most notifications one `resume` (or a gateway's gap fill) replays per topic;",
    ...integer(1, 100_000, ' entries'),
  },
  HERALD_REPLAY_BUDGET: {
    default: '2000',
    doc: 'History entries one connection may be replayed per minute',
    ...integer(0, 10_000_000, ' entries per minute'),
  },
  HERALD_RECORDER_MAX_WAITING_BYTES: {
    default: '33554432',
    defaultNote: '(32 MiB)',
    doc: 'Payload bytes a recorder holds while recording fails or lags',
    ...integer(65_536, 4_294_967_296, ' bytes'),
  },
  HERALD_RECORDERS: { default: '2', doc: 'Recorder slots (history on)', ...integer(1, 16) },
  HERALD_LOG_LEVEL: {
    default: 'info',
    range: LOG_LEVELS.join(', '),
    doc: 'Log threshold.',
    parse: (raw): LogLevel => {
      const level = raw.toLowerCase();
      const known = LOG_LEVELS.find((l) => l === level);
      if (known === undefined) throw new Invalid(`expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
      return known;
    },
  },
  HERALD_SHUTDOWN_TIMEOUT_S: { default: '10', doc: 'Deadline for graceful shutdown;', ...integer(1, 3600, ' seconds') },
  HERALD_WORKERS: {
    default: '1',
    range: '1-256, or `auto` (one per CPU)',
    doc: 'Gateway processes sharing the port under a supervisor',
    /** `auto` is resolved against the CPU count in loadConfig. */
    parse: (raw): number | 'auto' => {
      if (raw.toLowerCase() === 'auto') return 'auto';
      const n = Number(raw);
      if (!/^\d+$/.test(raw) || n < 1 || n > 256) throw new Invalid(`expected an integer 1-256 or auto, got ${JSON.stringify(raw)}`);
      return n;
    },
  },
  HERALD_DEMO: {
    default: 'false',
    // The demo page is the quickest way to see Herald work; production leaves it off.
    dev: 'true',
    doc: 'Serve the demo page at `/demo`',
    ...boolean,
  },
  HERALD_TLS_CERT_FILE: {
    default: undefined,
    range: 'path to a PEM certificate (chain)',
    doc: 'With `HERALD_TLS_KEY_FILE`: serve `wss://` and `https://`',
    parse: text,
  },
  HERALD_TLS_KEY_FILE: { default: undefined, range: 'path to a PEM private key', doc: 'Must match the certificate;', parse: text },
  HERALD_TLS_PASSPHRASE: { default: undefined, range: 'string', doc: 'Opens an encrypted key.', verbatim: true, parse: text },
  HERALD_TLS_CA_FILE: {
    default: undefined,
    range: 'path to PEM CA certificate(s)',
    doc: 'Passed to uWS as its CA file',
    parse: text,
  },
} as const satisfies Record<`HERALD_${string}`, Setting<unknown>>;

/** Read by `herald publish` only (cli.ts); the gateway never reads these. */
export const CLI_SETTINGS = {
  HERALD_URL: {
    default: undefined,
    defaultDoc: '`http://127.0.0.1:<HERALD_PORT>`',
    range: '`http://` or `https://` URL',
    doc: 'Where `herald publish` (without `HERALD_REDIS_URL`), `herald presence` and the control commands send their requests',
    parse: (raw) => {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw new Invalid(`not a valid URL: ${JSON.stringify(raw)}`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new Invalid(`expected an http:// or https:// URL, got ${url.protocol}//`);
      return url.href;
    },
  },
} as const satisfies Record<`HERALD_${string}`, Setting<unknown>>;

type Settings = typeof SETTINGS & typeof CLI_SETTINGS;
export type SettingName = keyof Settings;
const ALL: Readonly<Record<SettingName, Setting<unknown>>> = { ...SETTINGS, ...CLI_SETTINGS };

/** A setting's parsed value; undefined only for a setting without a default. */
export type ValueOf<K extends SettingName> = Settings[K] extends { parse: (raw: string) => infer T }
  ? Settings[K] extends { default: string }
    ? T
    : T | undefined
  : never;

/** The variable's text as the parser sees it: trimmed unless verbatim; empty = unset. */
function rawValue(env: Env, name: SettingName): string | undefined {
  const v = Object.hasOwn(env, name) ? env[name] : undefined;
  if (v === undefined) return undefined;
  const t = ALL[name].verbatim === true ? v : v.trim();
  return t === '' ? undefined : t;
}

/** Whether the variable is set (a value that is empty, or blank where trimmed, is not). */
export function isSet(env: Env, name: SettingName): boolean {
  return rawValue(env, name) !== undefined;
}

/** One setting, parsed; its default when unset. A bad value throws a ConfigError naming it. */
export function read<K extends SettingName>(env: Env, name: K): ValueOf<K> {
  const s = ALL[name];
  const raw = rawValue(env, name) ?? s.default;
  if (raw === undefined) return undefined as ValueOf<K>;
  try {
    return s.parse(raw) as ValueOf<K>;
  } catch (err) {
    if (err instanceof Invalid) throw new ConfigError(`${name}: ${err.message}`);
    throw err;
  }
}

/** Set by the supervisor for each worker it forks (supervisor.ts); never by an operator. */
export const WORKER_ID = 'HERALD_WORKER_ID';

/** HERALD_WORKER_ID, checked like a setting: a worker's index among `workers`, or undefined outside a supervisor. */
export function workerId(env: Env, workers: number): number | undefined {
  const raw = Object.hasOwn(env, WORKER_ID) ? env[WORKER_ID]?.trim() : undefined;
  if (raw === undefined || raw === '') return undefined;
  try {
    return integer(0, workers - 1, ' (the index the supervisor gives each of its workers)').parse(raw);
  } catch (err) {
    if (err instanceof Invalid) throw new ConfigError(`${WORKER_ID}: ${err.message}`);
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Settings that depend on one another.
// ---------------------------------------------------------------------------

function isHmac(alg: string): boolean {
  return (HMAC_ALGORITHMS as readonly string[]).includes(alg);
}

const KEY_SOURCES = ['HERALD_JWT_SECRET', 'HERALD_JWT_PUBLIC_KEY', 'HERALD_JWT_JWKS'] as const;

/** Exactly one of the three key sources, parsed. */
function jwtKey(env: Env): JwtKeySource {
  const set = KEY_SOURCES.filter((n) => isSet(env, n));
  if (set.length === 0) {
    throw new ConfigError(
      'HERALD_JWT_SECRET: no token verification key configured; set one of HERALD_JWT_SECRET, HERALD_JWT_PUBLIC_KEY or HERALD_JWT_JWKS (or use `make run` for a generated dev secret)',
    );
  }
  if (set.length > 1) throw new ConfigError(`${set.join(', ')}: set exactly one token verification key source`);
  const secret = read(env, 'HERALD_JWT_SECRET');
  if (secret !== undefined) return { kind: 'secret', secret };
  const pem = read(env, 'HERALD_JWT_PUBLIC_KEY');
  if (pem !== undefined) return { kind: 'pem', pem };
  return read(env, 'HERALD_JWT_JWKS') as JwtKeySource;
}

/**
 * HERALD_JWT_ALGORITHMS against the key source (the CLI uses it too). Mixing
 * families is how algorithm-confusion attacks start: a secret key only verifies
 * HS*, a public key only RS/PS/ES/EdDSA.
 */
export function algorithms(env: Env, key: Pick<JwtKeySource, 'kind'>): string[] | undefined {
  const algs = read(env, 'HERALD_JWT_ALGORITHMS');
  // A public key's own algorithm is known only once the key is read (auth.ts).
  if (algs === undefined) return key.kind === 'secret' ? [HMAC_ALGORITHMS[0]] : undefined;
  for (const alg of algs) {
    if (key.kind === 'secret' && !isHmac(alg)) {
      throw new ConfigError(`HERALD_JWT_ALGORITHMS: ${alg} needs a public key, but HERALD_JWT_SECRET is set`);
    }
    if (key.kind !== 'secret' && isHmac(alg)) {
      throw new ConfigError(`HERALD_JWT_ALGORITHMS: ${alg} needs HERALD_JWT_SECRET, but a public key source is set`);
    }
  }
  return algs;
}

/** What a token for the HMAC secret is signed with (`herald token`, the dev banner): the first allowed algorithm. */
export function signingAlgorithm(env: Env): string {
  return algorithms(env, { kind: 'secret' })?.[0] ?? HMAC_ALGORITHMS[0];
}

/** HERALD_CHANNEL_PREFIX, checked against the namespace (the CLI uses it too). */
export function channelPrefix(env: Env, ns: string): string {
  const prefix = read(env, 'HERALD_CHANNEL_PREFIX');
  // The recorders' pattern <prefix>:* must not match the namespace's internal channels.
  if (prefix === ns || prefix.startsWith(`${ns}:`)) {
    throw new ConfigError(
      `HERALD_CHANNEL_PREFIX: ${JSON.stringify(prefix)} overlaps the internal channels of HERALD_NAMESPACE ${JSON.stringify(ns)} (${ns}:notify:*); choose another prefix`,
    );
  }
  return prefix;
}

/** The TLS files come as a pair; a passphrase or CA alone is a mistake, not "TLS off". */
function tls(env: Env): TlsConfig | undefined {
  const certFile = read(env, 'HERALD_TLS_CERT_FILE');
  const keyFile = read(env, 'HERALD_TLS_KEY_FILE');
  const passphrase = read(env, 'HERALD_TLS_PASSPHRASE');
  const caFile = read(env, 'HERALD_TLS_CA_FILE');
  if (certFile === undefined && keyFile === undefined) {
    if (passphrase !== undefined || caFile !== undefined) {
      throw new ConfigError(
        `${passphrase !== undefined ? 'HERALD_TLS_PASSPHRASE' : 'HERALD_TLS_CA_FILE'}: set only with HERALD_TLS_CERT_FILE and HERALD_TLS_KEY_FILE`,
      );
    }
    return undefined;
  }
  if (certFile === undefined) throw new ConfigError('HERALD_TLS_CERT_FILE: required when HERALD_TLS_KEY_FILE is set');
  if (keyFile === undefined) throw new ConfigError('HERALD_TLS_KEY_FILE: required when HERALD_TLS_CERT_FILE is set');
  return { certFile, keyFile, passphrase, caFile };
}

export function loadConfig(env: Env, cpuCount = 1): Config {
  const key = jwtKey(env);
  const namespace = read(env, 'HERALD_NAMESPACE');
  const workers = read(env, 'HERALD_WORKERS');
  const config: Config = {
    host: read(env, 'HERALD_HOST'),
    port: read(env, 'HERALD_PORT'),
    wsPath: read(env, 'HERALD_WS_PATH'),
    redisUrl: read(env, 'HERALD_REDIS_URL'),
    namespace,
    channelPrefix: channelPrefix(env, namespace),
    jwt: {
      key,
      algorithms: algorithms(env, key),
      issuer: read(env, 'HERALD_JWT_ISSUER'),
      audience: read(env, 'HERALD_JWT_AUDIENCE'),
      maxTokenBytes: read(env, 'HERALD_MAX_TOKEN_BYTES'),
      maxLifetimeS: read(env, 'HERALD_JWT_MAX_LIFETIME_S'),
    },
    allowedOrigins: read(env, 'HERALD_ALLOWED_ORIGINS'),
    maxPayloadBytes: read(env, 'HERALD_MAX_PAYLOAD_BYTES'),
    idleTimeoutS: read(env, 'HERALD_IDLE_TIMEOUT_S'),
    rateLimit: {
      messages: read(env, 'HERALD_RATE_LIMIT_MESSAGES'),
      windowMs: read(env, 'HERALD_RATE_LIMIT_WINDOW_S') * 1000,
    },
    publishKey: read(env, 'HERALD_PUBLISH_KEY'),
    publishMaxBodyBytes: read(env, 'HERALD_PUBLISH_MAX_BODY_BYTES'),
    publishMaxBatch: read(env, 'HERALD_PUBLISH_MAX_BATCH'),
    maxNotificationBytes: read(env, 'HERALD_MAX_NOTIFICATION_BYTES'),
    dedup: {
      windowMs: read(env, 'HERALD_DEDUP_WINDOW_S') * 1000,
      maxEntries: read(env, 'HERALD_DEDUP_MAX_ENTRIES'),
    },
    maxTopicsPerConnection: read(env, 'HERALD_MAX_TOPICS_PER_CONNECTION'),
    events: {
      stream: read(env, 'HERALD_EVENTS_STREAM') ?? `${namespace}:events`,
      maxLen: read(env, 'HERALD_EVENTS_MAXLEN'),
    },
    logLevel: read(env, 'HERALD_LOG_LEVEL'),
    shutdownTimeoutMs: read(env, 'HERALD_SHUTDOWN_TIMEOUT_S') * 1000,
    admission: {
      maxConnections: read(env, 'HERALD_MAX_CONNECTIONS'),
      maxConnectionsPerIp: read(env, 'HERALD_MAX_CONNECTIONS_PER_IP'),
      upgradeRatePerIp: read(env, 'HERALD_UPGRADE_RATE_PER_IP'),
      ipv6PrefixBits: read(env, 'HERALD_IPV6_PREFIX'),
    },
    trustProxy: read(env, 'HERALD_TRUST_PROXY'),
    maxBackpressureBytes: read(env, 'HERALD_MAX_BACKPRESSURE_BYTES'),
    closeOnBackpressure: read(env, 'HERALD_CLOSE_ON_BACKPRESSURE'),
    workers: workers === 'auto' ? Math.max(1, cpuCount) : workers,
    tls: tls(env),
    demo: read(env, 'HERALD_DEMO'),
    history: undefined,
    recorders: read(env, 'HERALD_RECORDERS'),
    recorderMaxWaitingBytes: read(env, 'HERALD_RECORDER_MAX_WAITING_BYTES'),
    replayBudget: read(env, 'HERALD_REPLAY_BUDGET'),
    controlKey: read(env, 'HERALD_CONTROL_KEY'),
    maxConnectionsPerUser: read(env, 'HERALD_MAX_CONNECTIONS_PER_USER'),
    presence: read(env, 'HERALD_PRESENCE'),
    presenceTtlMs: read(env, 'HERALD_PRESENCE_TTL_S') * 1000,
    connectionEvents: read(env, 'HERALD_CONNECTION_EVENTS'),
  };
  const historySize = read(env, 'HERALD_HISTORY_SIZE');
  const historyTtlS = read(env, 'HERALD_HISTORY_TTL_S');
  const recoveryMax = read(env, 'HERALD_RECOVERY_MAX');
  if (config.redisUrl !== undefined && historySize > 0 && historyTtlS > 0) {
    config.history = { size: historySize, ttlMs: historyTtlS * 1000, recoveryMax };
  }
  if (config.workers > 1 && config.redisUrl === undefined) {
    throw new ConfigError(
      `HERALD_WORKERS: ${config.workers} workers need HERALD_REDIS_URL (in embedded mode each process would deliver only to its own clients)`,
    );
  }
  // One key for both would hand every publishing service the power to disconnect users.
  if (config.controlKey !== undefined && config.controlKey === config.publishKey) {
    throw new ConfigError(
      'HERALD_CONTROL_KEY: must differ from HERALD_PUBLISH_KEY (a publishing service must not be able to disconnect users)',
    );
  }
  if (config.workers > 1 && config.port === 0) {
    throw new ConfigError('HERALD_WORKERS: workers share one fixed port; set HERALD_PORT to a port number, not 0');
  }
  return deepFreeze(config);
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

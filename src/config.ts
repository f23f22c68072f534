// Environment -> frozen, typed Config. Pure: takes the env, touches nothing else.
// Every error names the variable, so a misconfigured gateway fails at start with
// a message an operator can act on.
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
}

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  passphrase: string | undefined;
  caFile: string | undefined;
}

function tls(env: Env): TlsConfig | undefined {
  const certFile = str(env, 'HERALD_TLS_CERT_FILE');
  const keyFile = str(env, 'HERALD_TLS_KEY_FILE');
  const passphrase = env['HERALD_TLS_PASSPHRASE'] === '' ? undefined : env['HERALD_TLS_PASSPHRASE'];
  const caFile = str(env, 'HERALD_TLS_CA_FILE');
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

function bool(env: Env, name: string, def: boolean): boolean {
  const raw = str(env, name)?.toLowerCase();
  if (raw === undefined) return def;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name}: expected true or false, got ${JSON.stringify(raw)}`);
}

/** `auto` = one per CPU. */
function workers(env: Env, cpuCount: number): number {
  const raw = str(env, 'HERALD_WORKERS');
  if (raw?.toLowerCase() === 'auto') return Math.max(1, cpuCount);
  return int(env, 'HERALD_WORKERS', 1, 1, 256);
}

/** Topic grammar shared with topics.ts; the prefix may not contain glob characters. */
const PREFIX_RE = /^[A-Za-z0-9_.@-]+(?::[A-Za-z0-9_.@-]+)*$/;

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  if (v === undefined) return undefined;
  const t = v.trim();
  return t === '' ? undefined : t;
}

function int(env: Env, name: string, def: number, min: number, max: number, unit = ''): number {
  const raw = str(env, name);
  if (raw === undefined) return def;
  if (!/^-?\d+$/.test(raw)) {
    throw new ConfigError(`${name}: expected an integer ${min}-${max}${unit}, got ${JSON.stringify(raw)}`);
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name}: expected an integer ${min}-${max}${unit}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

function list(env: Env, name: string): string[] | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new ConfigError(`${name}: expected a comma-separated list, got ${JSON.stringify(raw)}`);
  return items;
}

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

function refusePlaceholder(name: string, value: string, advice: string): void {
  const v = value.toLowerCase();
  // The value itself is never echoed: it may be a real secret after all.
  if (PLACEHOLDER_MARKERS.some((m) => v.includes(m))) {
    throw new ConfigError(`${name}: looks like a documented placeholder, which anyone who read the repository knows; ${advice}`);
  }
}

function jwtKey(env: Env): JwtKeySource {
  const secret = env['HERALD_JWT_SECRET'];
  const pem = str(env, 'HERALD_JWT_PUBLIC_KEY');
  const jwks = str(env, 'HERALD_JWT_JWKS');
  const set = [
    secret !== undefined && secret !== '' ? 'HERALD_JWT_SECRET' : undefined,
    pem !== undefined ? 'HERALD_JWT_PUBLIC_KEY' : undefined,
    jwks !== undefined ? 'HERALD_JWT_JWKS' : undefined,
  ].filter((n) => n !== undefined);
  if (set.length === 0) {
    throw new ConfigError(
      'HERALD_JWT_SECRET: no token verification key configured; set one of HERALD_JWT_SECRET, HERALD_JWT_PUBLIC_KEY or HERALD_JWT_JWKS (or use `make run` for a generated dev secret)',
    );
  }
  if (set.length > 1) throw new ConfigError(`${set.join(', ')}: set exactly one token verification key source`);
  if (secret !== undefined && secret !== '') {
    // RFC 7518 3.2: an HMAC key must be at least as long as the hash output.
    if (Buffer.byteLength(secret, 'utf8') < 32) {
      throw new ConfigError(
        `HERALD_JWT_SECRET: must be at least 32 bytes (got ${Buffer.byteLength(secret, 'utf8')}); generate one with \`openssl rand -base64 48\``,
      );
    }
    refusePlaceholder('HERALD_JWT_SECRET', secret, 'generate one with `openssl rand -base64 48`');
    return { kind: 'secret', secret };
  }
  if (pem !== undefined) return { kind: 'pem', pem };
  const source = jwks as string;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
    let url: URL;
    try {
      url = new URL(source);
    } catch {
      throw new ConfigError(`HERALD_JWT_JWKS: not a valid URL: ${JSON.stringify(source)}`);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
      throw new ConfigError(`HERALD_JWT_JWKS: a JWKS URL must use https (plain http only for loopback), got ${url.protocol}`);
    }
    return { kind: 'jwks-url', url: url.href };
  }
  return { kind: 'jwks-file', path: source };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function algorithms(env: Env, key: JwtKeySource): string[] | undefined {
  const algs = list(env, 'HERALD_JWT_ALGORITHMS');
  if (algs === undefined) return key.kind === 'secret' ? ['HS256'] : undefined;
  for (const alg of algs) {
    if (alg.toLowerCase() === 'none') throw new ConfigError('HERALD_JWT_ALGORITHMS: "none" is never allowed');
    const hmac = (HMAC_ALGORITHMS as readonly string[]).includes(alg);
    const asym = (ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg);
    if (!hmac && !asym) {
      throw new ConfigError(
        `HERALD_JWT_ALGORITHMS: unknown algorithm ${JSON.stringify(alg)}; expected some of ${[...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS].join(', ')}`,
      );
    }
    // Mixing families is how algorithm-confusion attacks start: a secret key only
    // verifies HS*, a public key only RS/PS/ES/EdDSA.
    if (key.kind === 'secret' && !hmac) {
      throw new ConfigError(`HERALD_JWT_ALGORITHMS: ${alg} needs a public key, but HERALD_JWT_SECRET is set`);
    }
    if (key.kind !== 'secret' && hmac) {
      throw new ConfigError(`HERALD_JWT_ALGORITHMS: ${alg} needs HERALD_JWT_SECRET, but a public key source is set`);
    }
  }
  return [...new Set(algs)];
}

function origins(env: Env): string[] | undefined {
  const items = list(env, 'HERALD_ALLOWED_ORIGINS');
  if (items === undefined) return undefined;
  return items.map((o) => {
    const m = /^(https?):\/\/(\*\.)?([a-z0-9.-]+)(:\d{1,5})?$/i.exec(o);
    if (m === null) {
      throw new ConfigError(
        `HERALD_ALLOWED_ORIGINS: ${JSON.stringify(o)} is not an origin; expected scheme://host[:port], optionally https://*.example.com`,
      );
    }
    return o.toLowerCase();
  });
}

function path(env: Env): string {
  const p = str(env, 'HERALD_WS_PATH') ?? '/ws';
  if (!/^\/[A-Za-z0-9._~/-]*$/.test(p) || p.includes('//')) {
    throw new ConfigError(`HERALD_WS_PATH: expected a path like /ws, got ${JSON.stringify(p)}`);
  }
  const reserved = ['/healthz', '/readyz', '/metrics', '/stats', '/publish', '/demo'];
  if (reserved.includes(p)) throw new ConfigError(`HERALD_WS_PATH: ${p} is reserved for an HTTP endpoint`);
  return p;
}

function redisUrl(env: Env): string | undefined {
  const url = str(env, 'HERALD_REDIS_URL');
  if (url === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError('HERALD_REDIS_URL: not a valid URL; expected redis://[user:password@]host:port[/db]');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new ConfigError(`HERALD_REDIS_URL: expected a redis:// or rediss:// URL, got ${parsed.protocol}//`);
  }
  if (parsed.password !== '')
    refusePlaceholder('HERALD_REDIS_URL', decodeURIComponentSafe(parsed.password), 'set the password of a real Redis user');
  // ioredis turns TLS on only for a lower-case `rediss://`: REDISS:// would go in clear.
  return parsed.protocol + url.slice(parsed.protocol.length);
}

/** A namespace is a Redis function library name too: letters, digits and underscores. */
const NAMESPACE_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

/** HERALD_NAMESPACE, parsed (the CLI uses it too). */
export function namespace(env: Env): string {
  const ns = str(env, 'HERALD_NAMESPACE') ?? 'herald';
  if (!NAMESPACE_RE.test(ns)) {
    throw new ConfigError(`HERALD_NAMESPACE: expected a letter then up to 31 of [A-Za-z0-9_], got ${JSON.stringify(ns)}`);
  }
  return ns;
}

/** HERALD_CHANNEL_PREFIX, parsed and checked against the namespace (the CLI uses it too). */
export function channelPrefix(env: Env, ns: string): string {
  const prefix = str(env, 'HERALD_CHANNEL_PREFIX') ?? 'notifications';
  if (!PREFIX_RE.test(prefix) || prefix.length > 64) {
    throw new ConfigError(`HERALD_CHANNEL_PREFIX: expected up to 64 of [A-Za-z0-9_.@-] (":" between parts), got ${JSON.stringify(prefix)}`);
  }
  // The recorders' pattern <prefix>:* must not match the namespace's internal channels.
  if (prefix === ns || prefix.startsWith(`${ns}:`)) {
    throw new ConfigError(
      `HERALD_CHANNEL_PREFIX: ${JSON.stringify(prefix)} overlaps the internal channels of HERALD_NAMESPACE ${JSON.stringify(ns)} (${ns}:notify:*); choose another prefix`,
    );
  }
  return prefix;
}

export function loadConfig(env: Env, cpuCount = 1): Config {
  const key = jwtKey(env);
  const ns = namespace(env);
  const prefix = channelPrefix(env, ns);
  const logLevel = (str(env, 'HERALD_LOG_LEVEL') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError(`HERALD_LOG_LEVEL: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  const idleTimeoutS = int(env, 'HERALD_IDLE_TIMEOUT_S', 60, 0, 960, ' seconds');
  // uWS aborts the process on 1-7 (its timer granularity is 4 s), so refuse it here.
  if (idleTimeoutS > 0 && idleTimeoutS < 8) {
    throw new ConfigError(`HERALD_IDLE_TIMEOUT_S: expected 0 (off) or 8-960 seconds, got ${idleTimeoutS}`);
  }
  // Trimmed: a key mounted from a file often ends in a newline.
  const publishKey = str(env, 'HERALD_PUBLISH_KEY');
  if (publishKey !== undefined && (Buffer.byteLength(publishKey) < 16 || /\s/.test(publishKey))) {
    throw new ConfigError('HERALD_PUBLISH_KEY: must be at least 16 bytes with no whitespace; generate one with `openssl rand -hex 24`');
  }
  if (publishKey !== undefined) refusePlaceholder('HERALD_PUBLISH_KEY', publishKey, 'generate one with `openssl rand -hex 24`');
  const audience = list(env, 'HERALD_JWT_AUDIENCE');
  const host = str(env, 'HERALD_HOST') ?? '0.0.0.0';
  if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new ConfigError(`HERALD_HOST: expected an address or host name, got ${JSON.stringify(host)}`);
  const eventsStream = str(env, 'HERALD_EVENTS_STREAM') ?? `${ns}:events`;
  if (!isTopic(eventsStream)) {
    throw new ConfigError(`HERALD_EVENTS_STREAM: expected a Redis key of [A-Za-z0-9:_.@-], got ${JSON.stringify(eventsStream)}`);
  }

  const config: Config = {
    host,
    port: int(env, 'HERALD_PORT', 8080, 0, 65535),
    wsPath: path(env),
    redisUrl: redisUrl(env),
    namespace: ns,
    channelPrefix: prefix,
    jwt: {
      key,
      algorithms: algorithms(env, key),
      issuer: str(env, 'HERALD_JWT_ISSUER'),
      audience,
      maxTokenBytes: int(env, 'HERALD_MAX_TOKEN_BYTES', 8192, 256, 65536, ' bytes'),
    },
    allowedOrigins: origins(env),
    maxPayloadBytes: int(env, 'HERALD_MAX_PAYLOAD_BYTES', 10240, 128, 1048576, ' bytes'),
    idleTimeoutS,
    rateLimit: {
      messages: int(env, 'HERALD_RATE_LIMIT_MESSAGES', 100, 0, 1_000_000),
      windowMs: int(env, 'HERALD_RATE_LIMIT_WINDOW_S', 60, 1, 3600, ' seconds') * 1000,
    },
    publishKey,
    publishMaxBodyBytes: int(env, 'HERALD_PUBLISH_MAX_BODY_BYTES', 1048576, 1024, 67108864, ' bytes'),
    publishMaxBatch: int(env, 'HERALD_PUBLISH_MAX_BATCH', 1000, 1, 100000),
    maxNotificationBytes: int(env, 'HERALD_MAX_NOTIFICATION_BYTES', 65536, 64, 16777216, ' bytes'),
    dedup: {
      windowMs: int(env, 'HERALD_DEDUP_WINDOW_S', 60, 0, 86400, ' seconds') * 1000,
      maxEntries: int(env, 'HERALD_DEDUP_MAX_ENTRIES', 100000, 1, 1_000_000),
    },
    maxTopicsPerConnection: int(env, 'HERALD_MAX_TOPICS_PER_CONNECTION', 100, 1, 10000),
    events: {
      stream: eventsStream,
      maxLen: int(env, 'HERALD_EVENTS_MAXLEN', 100000, 1, 100_000_000),
    },
    logLevel: logLevel as LogLevel,
    shutdownTimeoutMs: int(env, 'HERALD_SHUTDOWN_TIMEOUT_S', 10, 1, 3600, ' seconds') * 1000,
    admission: {
      maxConnections: int(env, 'HERALD_MAX_CONNECTIONS', 0, 0, 10_000_000),
      maxConnectionsPerIp: int(env, 'HERALD_MAX_CONNECTIONS_PER_IP', 0, 0, 10_000_000),
      upgradeRatePerIp: int(env, 'HERALD_UPGRADE_RATE_PER_IP', 0, 0, 1_000_000, ' per second'),
      ipv6PrefixBits: int(env, 'HERALD_IPV6_PREFIX', 64, 1, 128, ' bits'),
    },
    trustProxy: bool(env, 'HERALD_TRUST_PROXY', false),
    maxBackpressureBytes: int(env, 'HERALD_MAX_BACKPRESSURE_BYTES', 1048576, 1024, 268435456, ' bytes'),
    closeOnBackpressure: bool(env, 'HERALD_CLOSE_ON_BACKPRESSURE', true),
    workers: workers(env, cpuCount),
    tls: tls(env),
    demo: bool(env, 'HERALD_DEMO', false),
    history: undefined,
    recorders: int(env, 'HERALD_RECORDERS', 2, 1, 16),
    recorderMaxWaitingBytes: int(env, 'HERALD_RECORDER_MAX_WAITING_BYTES', 33_554_432, 65_536, 4_294_967_296, ' bytes'),
    replayBudget: int(env, 'HERALD_REPLAY_BUDGET', 2000, 0, 10_000_000, ' entries per minute'),
  };
  const historySize = int(env, 'HERALD_HISTORY_SIZE', 100, 0, 100_000);
  const historyTtlS = int(env, 'HERALD_HISTORY_TTL_S', 300, 0, 7 * 86400, ' seconds');
  const recoveryMax = int(env, 'HERALD_RECOVERY_MAX', 300, 1, 100_000);
  if (config.redisUrl !== undefined && historySize > 0 && historyTtlS > 0) {
    config.history = { size: historySize, ttlMs: historyTtlS * 1000, recoveryMax };
  }
  if (config.workers > 1 && config.redisUrl === undefined) {
    throw new ConfigError(
      `HERALD_WORKERS: ${config.workers} workers need HERALD_REDIS_URL (in embedded mode each process would deliver only to its own clients)`,
    );
  }
  if (config.workers > 1 && config.port === 0) {
    throw new ConfigError('HERALD_WORKERS: workers share one fixed port; set HERALD_PORT to a port number, not 0');
  }
  return deepFreeze(config);
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

// HeraldClient: one logical connection to a Herald gateway that survives the loss of
// any number of sockets. It owns at most one socket at a time; everything the app
// asked for (topics, requests in the offline queue) outlives the socket and is replayed
// on the next one. The pure parts live in acks.ts, backoff.ts, dedup.ts, positions.ts,
// requests.ts and resume.ts; a topic's handle in subscription.ts.
import { type AckBatcher, type AckKind, createAckBatcher } from './acks.js';
import { type Backoff, backoffCap, createBackoff } from './backoff.js';
import { Retry, retryAfterClose, retryAfterError, retryAfterRefusal, ServerClose, type ServerCloseCode } from './codes.js';
import { createDedupWindow, type DedupWindow } from './dedup.js';
import { Emitter } from './emitter.js';
import { asPosition, isAfter, memoryPositions, type PositionStore, readPosition } from './positions.js';
import {
  BEARER_PREFIX,
  type ClientFrame,
  Close,
  decodeServerFrame,
  encodeClientFrame,
  isNotificationId,
  isOffset,
  isTopic,
  MAX_HISTORY_LIMIT,
  type Notification,
  type ResumedTopics,
  type ServerFrame,
  type Session,
  SUBPROTOCOL,
} from './protocol.js';
import { type Clock, createRequests, HeraldError, type Requests, systemClock } from './requests.js';
import { type ResumeFrame, type ResumePoint, ResumeState, resumeFrames, type TopicPosition } from './resume.js';
import { Subscription } from './subscription.js';

/**
 * The part of the WebSocket API the client uses: the browser's WebSocket, Node 22's
 * global one, and `ws` all fit. Only `addEventListener` for open/message/close/error.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'message' | 'close' | 'error', listener: (event: unknown) => void): void;
}

export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** A string, or a function called before every connection attempt (so an expired token is never reused). */
export type TokenSource = string | (() => string | Promise<string>);

export interface HeraldClientOptions {
  /** ws:// or wss:// URL of the gateway's WebSocket path, e.g. wss://herald.example.com/ws. */
  url: string;
  token: TokenSource;
  /** Default: globalThis.WebSocket (browsers, Node 22+). On Node 20 pass one, e.g. `ws`. */
  WebSocket?: WebSocketConstructor;
  /** Connect on construction (on a microtask, so listeners added right after see every event). Default true. */
  autoConnect?: boolean;
  /** Cap of the first reconnection delay, ms. Default 500. */
  backoffInitialMs?: number;
  /** Cap of every reconnection delay, ms. Default 30000. */
  backoffMaxMs?: number;
  /** Growth of the cap per failed attempt. Default 2. */
  backoffFactor?: number;
  /** A connection open this long resets the backoff, ms. Default 5000. */
  stableAfterMs?: number;
  /** Give up on an attempt (token, upgrade, `connected` frame) not done within this, ms. Default 10000. */
  connectTimeoutMs?: number;
  /** Deadline of each request from the call to the reply (offline queue time included), ms. Default 10000. */
  requestTimeoutMs?: number;
  /** Requests held while offline; one more fails with `queue_full`. Default 100. */
  maxQueue?: number;
  /** (topic, id) pairs remembered to drop repeats (live and replayed alike). Default 10000. */
  dedupWindow?: number;
  /**
   * Where each topic's position is kept (written as notifications arrive, read on
   * connect to resume from). Default memoryPositions(): a reload forgets; pass
   * localStoragePositions() in a browser to resume across reloads, or any object with
   * get(topic)/set(topic, position).
   */
  positions?: PositionStore;
  /**
   * First connection only: topics with no known position resume from this time (ms
   * since the epoch), e.g. when the page was rendered by a backend that knows what the
   * user has seen. Default: they start live.
   */
  since?: number;
  /** First connection only: positions per topic the app was handed (by its backend); the further of these and the store's wins. */
  initialPositions?: Record<string, TopicPosition>;
  /** ack()/markRead() calls within this many ms go out as one frame (up to 100 ids). Default 50. */
  ackWindowMs?: number;
  /**
   * Recover missed notifications on every reconnect (gateways with history: Redis
   * mode): the client sends a `resume` frame from the last position it saw on each
   * topic; what was missed arrives as `notification` events (`replayed: true`), and a
   * `recovery` event says per topic whether that worked. Default true.
   */
  resume?: boolean;
  /** App-level ping interval, ms. Default: the server's `heartbeatMs` (0 = only the ping at open). */
  pingIntervalMs?: number;
  /** A ping without a pong within this means a dead connection: reconnect. ms, default 10000. */
  pongTimeoutMs?: number;
  /** RTT below this is `good`, ms. Default 150. */
  goodRttMs?: number;
  /** RTT below this is `fair` (else `poor`), ms. Default 500. */
  fairRttMs?: number;
  /**
   * Re-authenticate on the open connection this long before the token expires, with the
   * `auth` frame (gateways that support it). Default undefined: off; the gateway then
   * closes the connection at expiry (1008 token_expired) and the client reconnects at
   * once with a fresh token.
   */
  reauthBeforeExpiryMs?: number;
  /** Injected time and timers (tests). */
  clock?: Clock;
  /** Injected randomness for the backoff jitter (tests): [0, 1). */
  random?: () => number;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * Why the state changed. Server close reasons are passed through (`shutting_down`,
 * `rate_limited`, `token_expired`, …); the client's own are listed in the README.
 */
export interface StateChange {
  state: ConnectionState;
  reason: string;
  /** The close code that caused it, when a socket closed. */
  code?: number;
  /** The HTTP status of a refused upgrade, when the WebSocket implementation exposes it (`ws`). */
  status?: number;
  /** reconnecting: the wait before the next attempt, ms. */
  delayMs?: number;
  /** reconnecting: failed attempts since the last stable connection. */
  attempt?: number;
  /** open: the `connected` frame. */
  session?: Session;
}

export type QualityLevel = 'good' | 'fair' | 'poor' | 'offline';

export interface Quality {
  level: QualityLevel;
  /** The last ping's round trip, ms; undefined while offline or before the first pong. */
  rttMs: number | undefined;
}

export interface AuthResult {
  /** When the new token expires, ms since the epoch. */
  expiresAt: number;
  /** Subscribed topics the new token no longer grants (the server dropped them). */
  revoked: string[];
  /** Every topic the connection holds now, when the gateway says. */
  topics?: string[];
}

/** The gateway's answer on a topic after a resume (or its own signal that it lost notifications on it). */
export interface Recovery {
  topic: string;
  /**
   * true: every missed notification was delivered (as `notification` events, before
   * this event). false: none were, and some may be missing: reload the topic's state
   * from your backend.
   */
  recovered: boolean;
}

export interface HeraldEvents {
  notification: Notification;
  /** Per topic, after each resume on a reconnect, and when a gateway says it could not fill a gap. */
  recovery: Recovery;
  state: StateChange;
  quality: Quality;
  /** A token renewed on the open connection (reauth(), or automatically with reauthBeforeExpiryMs). */
  reauth: AuthResult;
  /** Errors no promise can carry: an automatic reauth failing, a resume refused, a position store failing, a server error without a request id. */
  error: HeraldError;
  /**
   * Every failed subscribe or re-subscribe (after a reconnect): retried with backoff
   * unless the server refused the topic for good (then dropped, its handle `failed`).
   */
  subscriptionError: SubscriptionError;
  /**
   * The gateway subscribed this connection to a topic (a backend's `POST /control/subscribe`):
   * its handle (`subscription(topic)`) exists already. For this connection only: not
   * subscribed again after a reconnect unless the app calls subscribe(topic).
   */
  serverSubscribed: ServerTopic;
  /** The gateway took a topic away (`POST /control/unsubscribe`): its handle is `unsubscribed`, and it is not re-subscribed. */
  serverUnsubscribed: ServerTopic;
  /**
   * A backend closed the connection (`POST /control/disconnect`: 4000 `disconnected`,
   * 4001 `reconnect`; `POST /control/revoke`: 1008 `token_revoked`), after the `state`
   * event that follows the close. `reconnect: false`: the client is closed for good
   * (connect() starts again).
   */
  serverDisconnect: ServerDisconnect;
}

/** A topic the gateway added to or removed from the connection on its own. */
export interface ServerTopic {
  topic: string;
}

export interface ServerDisconnect {
  code: number;
  reason: string;
  /** True when the client reconnects (4001 with backoff, 1008 token_revoked at once with a fresh token). */
  reconnect: boolean;
}

export interface SubscriptionError {
  topic: string;
  error: HeraldError;
}

export interface HistoryOptions {
  /** 1..MAX_HISTORY_LIMIT (100); default (the gateway's) 20. */
  limit?: number;
  /** The `limit` entries just before this offset. */
  before?: string;
  /** The first `limit` entries after this offset. */
  after?: string;
}

export interface HistoryPage {
  topic: string;
  /** The dataset the offsets belong to. */
  epoch: string;
  /** Oldest first. */
  notifications: Notification[];
}

/** The options with their defaults applied (see HeraldClientOptions for each). */
interface Settings {
  autoConnect: boolean;
  backoffInitialMs: number;
  backoffMaxMs: number;
  backoffFactor: number;
  stableAfterMs: number;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  maxQueue: number;
  dedupWindow: number;
  pingIntervalMs: number | undefined;
  pongTimeoutMs: number;
  goodRttMs: number;
  fairRttMs: number;
  reauthBeforeExpiryMs: number | undefined;
  resume: boolean;
  ackWindowMs: number;
}

const DEFAULTS = {
  autoConnect: true,
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
  backoffFactor: 2,
  stableAfterMs: 5_000,
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  maxQueue: 100,
  // A resume replays up to HERALD_RECOVERY_MAX (300) notifications per topic; repeats of
  // ones seen before must still be remembered when they arrive, after all those replays.
  dedupWindow: 10_000,
  resume: true,
  pongTimeoutMs: 10_000,
  goodRttMs: 150,
  fairRttMs: 500,
  // Long enough to gather a replay's acks (they are issued within a few ms), short enough not to be noticed.
  ackWindowMs: 50,
} as const;

/** setTimeout fires at once for delays past 2^31-1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

/** First retry of a resume the gateway could not serve (`unavailable`: Redis unreadable), ms; then doubling up to backoffMaxMs, jittered. */
const RESUME_RETRY_MS = 1000;

/** The closes a backend asks for through the control API: each is a `serverDisconnect` event. */
const SERVER_DISCONNECTS: readonly ServerCloseCode[] = [ServerClose.Disconnected, ServerClose.Reconnect, ServerClose.TokenRevoked];

/** A server error that means "this request had no effect and will not on retry" (codes.ts). */
const refused = (code: string): boolean => retryAfterError(code) === Retry.Never;

/**
 * A topic the app asked for, or the gateway subscribed the connection to: its handle,
 * and its retries on the current connection.
 */
interface Wanted {
  readonly sub: Subscription;
  /**
   * Held only because the gateway subscribed this connection (`server: true`): dropped
   * with the connection, never re-subscribed. subscribe(topic) makes it the app's.
   */
  server: boolean;
  /** The connection (generation) that confirmed it; -1 when none has. */
  confirmedGen: number;
  /** Failed attempts on the current connection (the backoff exponent). */
  attempt: number;
  /** A retry waiting (after rate_limited, unavailable, a timeout). */
  timer: unknown;
  inFlight: boolean;
}

interface NodeStyleEvents {
  on(event: 'unexpected-response', fn: (req: unknown, res: { statusCode?: number }) => void): unknown;
}

export class HeraldClient extends Emitter<HeraldEvents> {
  readonly #url: string;
  readonly #token: TokenSource;
  readonly #WS: WebSocketConstructor;
  readonly #o: Settings;
  readonly #clock: Clock;
  readonly #backoff: Backoff;
  readonly #dedup: DedupWindow;
  readonly #requests: Requests;
  readonly #random: () => number;
  /** Positions per topic and unanswered resume points (see resume.ts). */
  readonly #resume = new ResumeState();
  /**
   * The last connection that opened: its epoch, and the latest server time stamped on
   * a frame it received (every notification sent before that frame had arrived). The
   * next connection resumes from it.
   */
  #previous: { epoch: string | undefined; coveredUntil: number } | undefined;
  /**
   * The current connection's latest server timestamp received: `connected.serverTime`,
   * a pong's `ts`, a notification's `ts`. Server clocks, not the client's: a client
   * whose timers or event loop were paused (a sleeping laptop, a frozen tab) must not
   * claim frames it processed late were sent late.
   */
  #coveredUntil = 0;
  /** Resume retries waiting (Redis unreadable at the gateway), cleared with the connection. */
  readonly #resumeTimers = new Set<unknown>();

  #state: ConnectionState = 'closed';
  #socket: WebSocketLike | undefined;
  /** Bumped whenever a socket is created or abandoned: events of older sockets are ignored. */
  #generation = 0;
  #session: Session | undefined;
  /** The token the current socket was opened with (for automatic reauth). */
  #currentToken: string | undefined;
  #quality: Quality = { level: 'offline', rttMs: undefined };
  /**
   * One immediate retry with a fresh token per streak of failures (a refused upgrade
   * may be a 401; a 1008 token_expired); cleared by a stable connection, so a token
   * source handing out dead tokens backs off instead of looping.
   */
  #freshTokenRetried = false;
  /** Topics the app subscribed to, re-subscribed after each reconnect until unsubscribed or refused. */
  readonly #wanted = new Map<string, Wanted>();
  readonly #readyWaiters: Array<{ resolve: () => void; reject: (err: HeraldError) => void }> = [];
  readonly #positions: PositionStore;
  /** The app's `since` and `initialPositions`, for the first connection; cleared once it opened. */
  #initial: { since: number | undefined; positions: Map<string, TopicPosition> } | undefined;
  /** A position store failing is reported once, not once per notification. */
  #storeFailureReported = false;
  readonly #acks: AckBatcher;
  /**
   * Resume points waiting for their topic's subscribe on this connection (the gateway
   * answers `not_held` otherwise): sent once every re-subscribe has settled, or, for a
   * topic retried after a refusal, once it is confirmed.
   */
  #resumeWait: { gen: number; epoch: string; points: Map<string, ResumePoint> } | undefined;
  #reauthSupported = true;
  readonly #timers = {
    retry: undefined as unknown,
    connect: undefined as unknown,
    ping: undefined as unknown,
    stable: undefined as unknown,
    reauth: undefined as unknown,
  };

  constructor(options: HeraldClientOptions) {
    super();
    const url = new URL(options.url); // throws on a malformed URL: fail at construction
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
      throw new TypeError(`HeraldClient url: expected ws:// or wss://, got ${url.protocol}//`);
    }
    if (typeof options.token !== 'string' && typeof options.token !== 'function') {
      throw new TypeError('HeraldClient token: expected a string or a function returning one');
    }
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WS === undefined) {
      throw new TypeError(
        "HeraldClient: no global WebSocket (Node before 22); pass one: new HeraldClient({ WebSocket, … }) with `import WebSocket from 'ws'`",
      );
    }
    this.#url = options.url;
    this.#token = options.token;
    this.#WS = WS;
    this.#o = settings(options);
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#backoff = createBackoff(
      { initialMs: this.#o.backoffInitialMs, maxMs: this.#o.backoffMaxMs, factor: this.#o.backoffFactor },
      options.random,
    );
    this.#dedup = createDedupWindow(this.#o.dedupWindow);
    this.#requests = createRequests({ timeoutMs: this.#o.requestTimeoutMs, maxQueue: this.#o.maxQueue, clock: this.#clock });
    this.#positions = options.positions ?? memoryPositions();
    if (typeof this.#positions?.get !== 'function' || typeof this.#positions.set !== 'function')
      throw new TypeError('HeraldClient positions: expected an object with get(topic) and set(topic, position)');
    if (options.since !== undefined && !(Number.isFinite(options.since) && options.since >= 0))
      throw new RangeError(`HeraldClient since: expected ms since the epoch >= 0, got ${options.since}`);
    const initialPositions = new Map<string, TopicPosition>();
    for (const [topic, value] of Object.entries(options.initialPositions ?? {})) {
      const p = asPosition(value);
      if (p === undefined || !isTopic(topic))
        throw new TypeError(`HeraldClient initialPositions[${JSON.stringify(topic.slice(0, 140))}]: expected a topic and {offset, epoch}`);
      initialPositions.set(topic, p);
    }
    this.#initial = { since: options.since, positions: initialPositions };
    this.#acks = createAckBatcher({
      windowMs: this.#o.ackWindowMs,
      clock: this.#clock,
      send: (kind, ids) => this.#sendAcks(kind, ids),
    });
    if (this.#o.autoConnect) {
      // Requests made right after construction are queued, not refused.
      this.#state = 'connecting';
      queueMicrotask(() => {
        if (this.#state === 'connecting' && this.#socket === undefined && this.#generation === 0) {
          this.emit('state', { state: 'connecting', reason: 'connect' });
          void this.#attempt();
        }
      });
    }
  }

  /** The current connection state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The `connected` frame of the open connection (user id, initial topics); undefined when not open. */
  get session(): Session | undefined {
    return this.#session;
  }

  /** Topics subscribed by the app (re-subscribed after every reconnect), beside the session's initial topics. */
  get topics(): string[] {
    return [...this.#wanted].filter(([, w]) => !w.server).map(([topic]) => topic);
  }

  /** Topics the gateway subscribed this connection to (`serverSubscribed`), held until the connection ends. */
  get serverTopics(): string[] {
    return [...this.#wanted].filter(([, w]) => w.server).map(([topic]) => topic);
  }

  /** The live handle of a topic the app subscribed to, or the gateway subscribed the connection to. */
  subscription(topic: string): Subscription | undefined {
    return this.#wanted.get(topic)?.sub;
  }

  /**
   * Resolves when the connection is open and every topic the app subscribed to is
   * confirmed on it (at once if so already); rejects with `closed` when the client
   * closes first. A topic refused for good no longer counts.
   */
  ready(): Promise<void> {
    if (this.#state === 'closed') return Promise.reject(new HeraldError('closed', 'ready: the client is closed; call connect() first'));
    if (this.#isReady()) return Promise.resolve();
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  get quality(): Quality {
    return { ...this.#quality };
  }

  /** Starts connecting; a no-op unless the client is closed. Only needed with autoConnect: false or after close(). */
  connect(): void {
    if (this.#state !== 'closed') return;
    this.#backoff.reset();
    this.#freshTokenRetried = false;
    this.#setState({ state: 'connecting', reason: 'connect' });
    void this.#attempt();
  }

  /** Closes for good: no reconnect; pending and queued requests fail with `closed`. connect() starts again. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#stop('client_closed');
    this.#dropSocket(Close.Normal, 'client_closed');
  }

  /**
   * Subscribes to a topic the token grants, re-subscribed after every reconnect until
   * unsubscribe(); returns its handle (the live one if the topic is wanted already).
   * Never throws: an invalid topic or a closed client give a `failed` handle whose
   * `ready` rejects. Wait with `await client.subscribe(topic).ready`.
   */
  subscribe(topic: string): Subscription {
    const existing = this.#wanted.get(topic);
    if (existing !== undefined) {
      // A topic the gateway subscribed the connection to: held already, now also wanted after reconnects.
      existing.server = false;
      return existing.sub;
    }
    const sub = new Subscription(topic, this);
    if (typeof topic !== 'string' || !isTopic(topic)) {
      sub._failed(
        new HeraldError(
          'invalid_argument',
          `subscribe: ${JSON.stringify(String(topic).slice(0, 140))} is not a topic (1-128 of [A-Za-z0-9:_.@-])`,
          {
            topic,
          },
        ),
        true,
      );
      return sub;
    }
    if (this.#state === 'closed') {
      sub._failed(new HeraldError('closed', 'subscribe: the client is closed; call connect() first', { topic }), true);
      return sub;
    }
    this.#wanted.set(topic, { sub, server: false, confirmedGen: -1, attempt: 0, timer: undefined, inFlight: false });
    if (this.#session !== undefined) this.#sendSubscribe(topic);
    return sub;
  }

  /** Unsubscribes (the topic is no longer re-subscribed, even if this request fails). Initial topics may be left too. */
  async unsubscribe(topic: string): Promise<void> {
    if (typeof topic !== 'string' || !isTopic(topic))
      throw new HeraldError('invalid_argument', `unsubscribe: ${JSON.stringify(String(topic).slice(0, 140))} is not a topic`, { topic });
    this.#wanted.get(topic)?.sub._unsubscribed();
    this.#dropTopic(topic);
    this.#refuseIfClosed('unsubscribe');
    try {
      await this.#requests.request({ type: 'unsubscribe', topic });
    } catch (err) {
      throw withTopic(err as HeraldError, topic);
    }
  }

  /**
   * A page of a topic's history (held or granted topics), oldest first: the newest
   * `limit` entries, or those just `before` / `after` an offset. Arguments the gateway
   * would refuse fail here with `invalid_argument`; a gateway without history answers
   * `history_unavailable`.
   */
  async history(topic: string, options: HistoryOptions = {}): Promise<HistoryPage> {
    const bad = (what: string): HeraldError => new HeraldError('invalid_argument', `history: ${what}`, { topic });
    if (typeof topic !== 'string' || !isTopic(topic)) throw bad(`${JSON.stringify(String(topic).slice(0, 140))} is not a topic`);
    if (options === null || typeof options !== 'object') throw bad('options: expected an object');
    const { limit, before, after } = options;
    if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 1 && limit <= MAX_HISTORY_LIMIT))
      throw bad(`limit: expected an integer 1-${MAX_HISTORY_LIMIT}, got ${String(limit)}`);
    if (before !== undefined && after !== undefined) throw bad('at most one of before and after');
    for (const [name, v] of [
      ['before', before],
      ['after', after],
    ] as const)
      if (v !== undefined && (typeof v !== 'string' || !isOffset(v))) throw bad(`${name}: expected an offset <ms>-<seq>`);
    this.#refuseIfClosed('history');
    const reply = await this.#requests.request({
      type: 'history',
      topic,
      ...(limit !== undefined ? { limit } : {}),
      ...(before !== undefined ? { before } : {}),
      ...(after !== undefined ? { after } : {}),
    });
    return { topic: reply.topic, epoch: reply.epoch, notifications: reply.notifications };
  }

  /**
   * Acknowledges receipt; resolves once the gateway has it (in Redis mode: once it is
   * in the events stream). Calls within `ackWindowMs` share one frame.
   */
  async ack(notificationId: string): Promise<void> {
    this.#checkNotificationId('ack', notificationId);
    this.#refuseIfClosed('ack');
    await this.#acks.add('ack', notificationId);
  }

  /** Marks a notification read; resolves once the gateway has it. Calls within `ackWindowMs` share one frame. */
  async markRead(notificationId: string): Promise<void> {
    this.#checkNotificationId('mark_read', notificationId);
    this.#refuseIfClosed('mark_read');
    await this.#acks.add('mark_read', notificationId);
  }

  /** One frame for a batch: the single form for one id (any gateway takes it), the list form for more. */
  async #sendAcks(kind: AckKind, ids: string[]): Promise<void> {
    const [first] = ids;
    if (ids.length === 1 && first !== undefined) await this.#requests.request({ type: kind, notificationId: first });
    else await this.#requests.request({ type: kind, notificationIds: ids });
  }

  /** One ping now; resolves with the round trip in ms. Fails with `disconnected` when not open (never queued). */
  async ping(): Promise<number> {
    const start = this.#clock.now();
    await this.#requests.request({ type: 'ping' }, { queue: false, resend: false, timeoutMs: this.#o.pongTimeoutMs });
    const rtt = this.#clock.now() - start;
    this.#setQuality(rtt);
    return rtt;
  }

  /**
   * Sends a fresh token (from the token source) on the open connection, for gateways
   * that support the `auth` frame. Topics the new token no longer grants are dropped
   * from the re-subscribe list. Fails with `auth_failed` (token refused), `unknown_type`
   * (gateway without re-authentication) or `disconnected`.
   */
  async reauth(): Promise<AuthResult> {
    this.#refuseIfClosed('auth');
    if (this.#session === undefined) throw new HeraldError('disconnected', 'auth: not connected');
    const token = await this.#getToken();
    const reply = await this.#requests.request({ type: 'auth', token }, { queue: false, resend: false });
    this.#currentToken = token;
    for (const topic of reply.revoked) {
      const w = this.#wanted.get(topic);
      this.#dropTopic(topic);
      if (w !== undefined)
        this.#subscriptionFailed(w, new HeraldError('forbidden', `${topic}: the new token does not grant it`, { topic, sent: true }), true);
    }
    this.#checkReady();
    this.#scheduleReauth(reply.expiresAt);
    const result: AuthResult = {
      expiresAt: reply.expiresAt,
      revoked: reply.revoked,
      ...(reply.topics !== undefined ? { topics: reply.topics } : {}),
    };
    this.emit('reauth', result);
    return result;
  }

  // ---- connection lifecycle ----

  /** Opens one socket (the only one: callers ensure there is none). */
  async #attempt(): Promise<void> {
    const gen = ++this.#generation;
    // One deadline for the whole attempt: token, upgrade and the `connected` frame.
    this.#timers.connect = this.#clock.setTimeout(() => {
      if (gen === this.#generation) this.#abandon('connect_timeout');
    }, this.#o.connectTimeoutMs);
    let token: string;
    try {
      token = await this.#getToken();
    } catch (err) {
      if (gen !== this.#generation || this.#state === 'closed') return;
      this.emit('error', err instanceof HeraldError ? err : new HeraldError('token_error', `token: ${String(err)}`));
      this.#failAttempt('token_error');
      return;
    }
    if (gen !== this.#generation || this.#state === 'closed') return;

    let ws: WebSocketLike;
    try {
      ws = new this.#WS(this.#url, [SUBPROTOCOL, BEARER_PREFIX + token]);
    } catch (err) {
      this.emit('error', new HeraldError('connect_failed', `WebSocket: ${String(err)}`));
      this.#failAttempt('connect_failed');
      return;
    }
    this.#socket = ws;
    this.#currentToken = token;
    let status: number | undefined;

    ws.addEventListener('message', (ev) => {
      const data = (ev as { data?: unknown }).data;
      if (gen !== this.#generation || typeof data !== 'string') return; // binary frames are not Herald's
      const frame = decodeServerFrame(data);
      if (frame !== undefined) this.#onFrame(frame);
    });
    ws.addEventListener('close', (ev) => {
      if (gen !== this.#generation) return;
      const { code, reason } = ev as { code?: unknown; reason?: unknown };
      this.#generation++;
      this.#socket = undefined;
      this.#lost({ code: typeof code === 'number' ? code : Close.Abnormal, reason: typeof reason === 'string' ? reason : '', status });
    });
    // A close event always follows an error; the listener exists so `ws` never throws an unhandled 'error'.
    ws.addEventListener('error', () => undefined);
    // `ws` (Node) shows the HTTP status of a refused upgrade; a browser never does.
    if (typeof (ws as Partial<NodeStyleEvents>).on === 'function') {
      (ws as unknown as NodeStyleEvents).on('unexpected-response', (_req, res) => {
        status = res.statusCode;
        ws.close(); // with a listener, ws leaves aborting the handshake to us: error + close 1006 follow
      });
    }
  }

  #onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'connected':
        this.#onConnected(frame);
        return;
      case 'notification': {
        const { topic, id, ts, offset, epoch, replayed, data } = frame;
        this.#coveredUntil = Math.max(this.#coveredUntil, ts);
        // Every position counts, a repeat's too: it is where the topic stands.
        if (offset !== undefined && epoch !== undefined) this.#observe(topic, offset, epoch);
        if (this.#dedup.seen(topic, id)) return;
        const position = offset !== undefined && epoch !== undefined ? { offset, epoch } : {};
        const n: Notification = { topic, id, ts, ...position, ...(replayed === true ? { replayed } : {}), data };
        this.emit('notification', n);
        this.#wanted.get(topic)?.sub._notify(n);
        return;
      }
      case 'resumed':
        // The answer to a resume (settled by id), or a gateway's own signal (no id): the same for the app.
        this.#requests.settle(frame);
        this.#onResumed(frame.topics);
        return;
      case 'error':
        if (!this.#requests.settle(frame)) {
          this.emit(
            'error',
            new HeraldError(frame.code, frame.message, { sent: true, retryAfterMs: frame.retryAfterMs, reason: frame.reason }),
          );
        }
        return;
      case 'pong':
        this.#coveredUntil = Math.max(this.#coveredUntil, frame.ts);
        this.#requests.settle(frame);
        return;
      case 'subscribed':
        if (frame.server === true) this.#onServerSubscribed(frame.topic);
        else this.#requests.settle(frame);
        return;
      case 'unsubscribed':
        if (frame.server === true) this.#onServerUnsubscribed(frame.topic);
        else this.#requests.settle(frame);
        return;
      case 'acked':
      case 'marked_read':
      case 'history':
      case 'authenticated':
        this.#requests.settle(frame);
        return;
      default: {
        const never: never = frame;
        throw new Error(`unhandled frame ${JSON.stringify(never)}`);
      }
    }
  }

  #onConnected(frame: Extract<ServerFrame, { type: 'connected' }>): void {
    if (this.#session !== undefined) return; // only the first frame of a connection is `connected`
    const { connectionId, userId, topics, heartbeatMs, serverTime, epoch } = frame;
    const session: Session = { connectionId, userId, topics, heartbeatMs, serverTime, ...(epoch !== undefined ? { epoch } : {}) };
    this.#session = session;
    this.#coveredUntil = serverTime;
    this.#clock.clearTimeout(this.#timers.connect);
    const gen = this.#generation;
    this.#timers.stable = this.#clock.setTimeout(() => {
      if (gen !== this.#generation) return;
      this.#backoff.reset();
      this.#freshTokenRetried = false;
    }, this.#o.stableAfterMs);

    // Requests queued while offline, then every wanted topic; the resume waits for the topics' answers (#recover).
    this.#requests.attach((f) => this.#send(gen, f));
    for (const [topic, w] of this.#wanted) {
      w.attempt = 0;
      this.#sendSubscribe(topic);
    }
    this.#recover(gen, session);
    this.#initial = undefined;
    this.#setState({ state: 'open', reason: 'connected', session });
    this.#checkReady();
    this.#heartbeat(gen);
    if (this.#o.reauthBeforeExpiryMs !== undefined && this.#currentToken !== undefined) {
      const exp = jwtExpiry(this.#currentToken);
      if (exp !== undefined) this.#scheduleReauth(exp);
    }
  }

  #send(gen: number, frame: ClientFrame): void {
    const ws = this.#socket;
    if (ws === undefined || gen !== this.#generation) return; // in flight; detach() will resend it
    try {
      ws.send(encodeClientFrame(frame));
    } catch {
      // A socket that cannot send is dead; leave this call stack before tearing it down.
      queueMicrotask(() => {
        if (gen === this.#generation) this.#abandon('send_failed');
      });
    }
  }

  /**
   * A ping now, then one per interval after each answer; a missing pong abandons the
   * socket. The first goes out with the connection's first frames, so it measures the
   * RTT at once and its place among the rate-limited frames is predictable.
   */
  #heartbeat(gen: number): void {
    const next = (): void => {
      const interval = this.#o.pingIntervalMs ?? this.#session?.heartbeatMs ?? 0;
      if (gen !== this.#generation || interval <= 0) return;
      this.#timers.ping = this.#clock.setTimeout(() => {
        if (gen === this.#generation) this.#heartbeat(gen);
      }, interval);
    };
    this.ping().then(next, (err: HeraldError) => {
      if (gen !== this.#generation) return;
      if (err.code === 'timeout') this.#abandon('pong_timeout');
      else next(); // any other answer (rate_limited) proves the server alive: keep the rhythm
    });
  }

  /** An attempt that never got a socket: back off and try again. */
  #failAttempt(reason: string): void {
    this.#generation++;
    this.#clock.clearTimeout(this.#timers.connect);
    this.#scheduleRetry({ reason }, false);
  }

  /** Gives up on the current socket without waiting for a close the dead peer will never send. */
  #abandon(reason: string): void {
    this.#generation++;
    this.#dropSocket(Close.ClientGaveUp, reason);
    this.#lost({ code: Close.Abnormal, reason, status: undefined, local: true });
  }

  /** Detaches and closes the socket; `ws` has terminate() for a peer that will not answer. */
  #dropSocket(code: number, reason: string): void {
    const ws = this.#socket;
    this.#socket = undefined;
    if (ws === undefined) return;
    try {
      const terminate = (ws as { terminate?: () => void }).terminate;
      if (typeof terminate === 'function' && code !== Close.Normal) terminate.call(ws);
      else ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  /** The socket is gone (closed by the server, the network, or abandoned): decide what next (codes.ts says how). */
  #lost(info: { code: number; reason: string; status: number | undefined; local?: boolean }): void {
    if (this.#state === 'closed') return;
    const wasOpen = this.#session !== undefined;
    const reason = info.reason !== '' ? info.reason : wasOpen ? 'connection_lost' : 'refused';
    let retry = info.local === true ? Retry.Backoff : retryAfterClose(info.code, info.reason);
    if (retry === Retry.Never) {
      // A close that would only happen again (a frame the gateway refuses, an unknown policy)
      // or a backend's 4000 `disconnected`: stop, and say why.
      this.#stop(reason, info.code);
      this.#serverDisconnect(info, false);
      return;
    }
    this.#teardownConnection();
    const detail = {
      reason,
      ...(info.local === true ? {} : { code: info.code }),
      ...(info.status !== undefined ? { status: info.status } : {}),
    };
    // Closed before `connected`: a browser cannot tell a 401 from a network error, so
    // take it as a possibly expired token and retry once, at once, with a fresh one.
    if (retry === Retry.Backoff && !wasOpen && info.local !== true) retry = retryAfterRefusal(info.status);
    // 1008 token_expired or token_revoked (or the refusal above): come back at once with a fresh token.
    this.#scheduleRetry(detail, retry === Retry.FreshToken && this.#takeFreshTokenRetry());
    this.#serverDisconnect(info, true);
  }

  /** A close a backend asked for: told after the state change, so a listener sees the client as it now is. */
  #serverDisconnect(info: { code: number; reason: string; local?: boolean }, reconnect: boolean): void {
    if (info.local === true || !SERVER_DISCONNECTS.some((c) => c.code === info.code && c.reason === info.reason)) return;
    this.emit('serverDisconnect', { code: info.code, reason: info.reason, reconnect });
  }

  #takeFreshTokenRetry(): boolean {
    if (this.#freshTokenRetried) return false;
    this.#freshTokenRetried = true;
    return true;
  }

  /** Clears everything that belongs to one connection. */
  #teardownConnection(): void {
    const session = this.#session;
    const wasOpen = session !== undefined;
    if (session !== undefined) {
      // What the next connection resumes from.
      this.#previous = { epoch: session.epoch, coveredUntil: this.#coveredUntil };
    }
    this.#session = undefined;
    for (const k of ['connect', 'ping', 'stable', 'reauth'] as const) this.#clock.clearTimeout(this.#timers[k]);
    for (const timer of this.#resumeTimers) this.#clock.clearTimeout(timer);
    this.#resumeTimers.clear();
    this.#resumeWait = undefined;
    for (const [topic, w] of this.#wanted) {
      this.#clock.clearTimeout(w.timer);
      w.timer = undefined;
      if (w.server) {
        // The gateway subscribed that connection, not the client: the topic ends with it.
        this.#wanted.delete(topic);
        this.#resume.forget(topic);
        w.sub._unsubscribed();
      } else w.sub._pending();
    }
    this.#requests.detach();
    if (wasOpen || this.#quality.level !== 'offline') {
      this.#quality = { level: 'offline', rttMs: undefined };
      this.emit('quality', this.#quality);
    }
  }

  #scheduleRetry(detail: Omit<StateChange, 'state'>, immediately: boolean): void {
    const attempt = this.#backoff.attempt;
    const delayMs = immediately ? 0 : this.#backoff.next();
    this.#setState({ ...detail, state: 'reconnecting', delayMs, attempt });
    this.#clock.clearTimeout(this.#timers.retry);
    this.#timers.retry = this.#clock.setTimeout(() => {
      if (this.#state === 'reconnecting' && this.#socket === undefined) void this.#attempt();
    }, delayMs);
  }

  /** Final: no more attempts; every request, in flight or queued, fails with `closed`. */
  #stop(reason: string, code?: number): void {
    this.#generation++;
    this.#clock.clearTimeout(this.#timers.retry);
    this.#acks.flush(); // into the queue, to fail with the rest
    this.#requests.rejectAll('closed', `the client is closed (${reason})`);
    this.#teardownConnection();
    this.#setState({ state: 'closed', reason, ...(code !== undefined ? { code } : {}) });
    const err = new HeraldError('closed', `the client is closed (${reason})`);
    for (const w of this.#wanted.values()) w.sub._abandon(new HeraldError('closed', err.message, { topic: w.sub.topic }));
    for (const r of this.#readyWaiters.splice(0)) r.reject(err);
  }

  #scheduleReauth(expiresAt: number): void {
    const before = this.#o.reauthBeforeExpiryMs;
    if (before === undefined || !this.#reauthSupported || this.#session === undefined) return;
    this.#clock.clearTimeout(this.#timers.reauth);
    const gen = this.#generation;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, expiresAt - before - Date.now()));
    this.#timers.reauth = this.#clock.setTimeout(() => {
      if (gen !== this.#generation) return;
      this.reauth().catch((err: HeraldError) => {
        if (err.code === 'unknown_type') this.#reauthSupported = false; // an older gateway: rely on token_expired
        if (err.code !== 'disconnected' && err.code !== 'closed') this.emit('error', err);
      });
    }, delay);
  }

  // ---- subscriptions ----

  /** One subscribe for a wanted topic on the open connection; failures retried with backoff, refusals drop it. */
  #sendSubscribe(topic: string): void {
    const w = this.#wanted.get(topic);
    if (w === undefined || w.inFlight || this.#session === undefined) return;
    const gen = this.#generation;
    w.inFlight = true;
    this.#requests.request({ type: 'subscribe', topic }, { queue: false, resend: false }).then(
      () => {
        w.inFlight = false;
        if (this.#wanted.get(topic) !== w || gen !== this.#generation) return; // unsubscribed meanwhile, or an older connection's
        const retried = w.attempt > 0;
        const first = w.confirmedGen === -1;
        w.attempt = 0;
        w.confirmedGen = gen;
        w.sub._confirmed();
        this.#subscribeSettled(gen, topic, retried);
        if (first) this.#resumeFromStore(gen, topic);
        this.#checkReady();
      },
      (err: HeraldError) => {
        w.inFlight = false;
        // Lost with the connection (or the client closed): the next connection subscribes again.
        if (this.#wanted.get(topic) !== w || gen !== this.#generation || err.code === 'disconnected' || err.code === 'closed') return;
        const final = refused(err.code);
        if (final) this.#dropTopic(topic);
        this.#subscriptionFailed(w, withTopic(err, topic), final);
        this.#subscribeSettled(gen, topic, false);
        if (final) {
          this.#checkReady();
          return;
        }
        // rate_limited (retryAfterMs says when the window resets), unavailable, a timeout, a code this SDK does not know.
        const cap = backoffCap(w.attempt++, {
          initialMs: this.#o.backoffInitialMs,
          maxMs: this.#o.backoffMaxMs,
          factor: this.#o.backoffFactor,
        });
        const delay = (err.retryAfterMs ?? 0) + Math.min(cap, this.#random() * cap);
        w.timer = this.#clock.setTimeout(
          () => {
            w.timer = undefined;
            if (gen === this.#generation) this.#sendSubscribe(topic);
          },
          Math.min(MAX_TIMER_MS, delay),
        );
      },
    );
  }

  #subscriptionFailed(w: Wanted, error: HeraldError, final: boolean): void {
    w.sub._failed(error, final);
    this.emit('subscriptionError', { topic: w.sub.topic, error });
  }

  #isReady(): boolean {
    if (this.#state !== 'open') return false;
    for (const w of this.#wanted.values()) if (w.confirmedGen !== this.#generation) return false;
    return true;
  }

  #checkReady(): void {
    if (this.#readyWaiters.length === 0 || !this.#isReady()) return;
    for (const r of this.#readyWaiters.splice(0)) r.resolve();
  }

  // ---- recovery ----

  /**
   * On a new connection: resume every topic it holds from where the client stands
   * (resume.ts). After one with history (an epoch), from what that connection saw; on
   * the first, from the positions the client was given (the store, initialPositions)
   * and the app's `since`. The new epoch is noted only after planning a reconnect: the
   * resume names the old one, so that a changed dataset is answered recovered: false.
   * Sent once the app's topics have been answered (a topic must be held to be resumed).
   */
  #recover(gen: number, session: Session): void {
    const previous = this.#previous;
    const held = new Set([...session.topics, ...this.#wanted.keys()]);
    let plan: ReturnType<ResumeState['plan']>;
    if (!this.#o.resume) plan = undefined;
    else if (previous?.epoch !== undefined) {
      plan = this.#resume.plan(held, { coveredUntil: previous.coveredUntil, now: session.serverTime });
    } else if (previous === undefined && session.epoch !== undefined && this.#initial !== undefined) {
      const initial = this.#initial;
      for (const topic of held) {
        const given = initial.positions.get(topic);
        const stored = readPosition(this.#positions, topic);
        const p =
          stored !== undefined && (given === undefined || (stored.epoch === given.epoch && isAfter(stored, given))) ? stored : given;
        if (p !== undefined) this.#resume.seed(topic, p);
      }
      this.#resume.noteEpoch(session.epoch);
      plan = this.#resume.plan(held, { coveredUntil: undefined, since: initial.since, now: session.serverTime });
    }
    if (plan === undefined) this.#resume.restart();
    if (session.epoch !== undefined) this.#resume.noteEpoch(session.epoch);
    if (plan === undefined) return;
    for (const topic of plan.lost) this.#onResumed({ [topic]: { recovered: false } });
    if (plan.points.size === 0) return;
    this.#resumeWait = { gen, epoch: plan.epoch, points: plan.points };
    this.#maybeResume(gen);
  }

  /** A wanted topic's subscribe was answered on connection `gen`; `retried`: confirmed after a failure. */
  #subscribeSettled(gen: number, topic: string, retried: boolean): void {
    const wait = this.#resumeWait;
    if (wait !== undefined && wait.gen === gen) {
      this.#maybeResume(gen);
      return;
    }
    // Confirmed late (a retry): resume it alone, from the point still pending for it.
    const pending = retried ? this.#resume.pendingPoint(topic) : undefined;
    if (pending !== undefined) for (const frame of resumeFrames(pending.epoch, [[topic, pending.point]])) this.#sendResume(gen, frame, 0);
  }

  /**
   * A topic subscribed for the first time on an open connection (not in the connection's
   * plan): resumed from its stored position, when the store has one in this epoch and
   * the client knows none yet. A reload that subscribes after `connected` loses nothing either.
   */
  #resumeFromStore(gen: number, topic: string): void {
    const epoch = this.#session?.epoch;
    if (!this.#o.resume || epoch === undefined || this.#resumeWait?.points.has(topic) === true) return;
    if (this.#resume.pendingPoint(topic) !== undefined || this.#resume.position(topic) !== undefined) return;
    const stored = readPosition(this.#positions, topic);
    if (stored === undefined || stored.epoch !== epoch) return;
    const point = { offset: stored.offset };
    this.#resume.seed(topic, stored);
    if (this.#resume.pend(topic, point, epoch)) for (const frame of resumeFrames(epoch, [[topic, point]])) this.#sendResume(gen, frame, 0);
  }

  /**
   * Sends the planned resume once no wanted topic's subscribe is in flight, for the topics
   * held. Derived from #wanted, so a topic unsubscribed meanwhile no longer holds it back.
   */
  #maybeResume(gen: number): void {
    const wait = this.#resumeWait;
    if (wait === undefined || wait.gen !== gen) return;
    for (const w of this.#wanted.values()) if (w.inFlight) return;
    this.#resumeWait = undefined;
    const initial = new Set(this.#session?.topics ?? []);
    const held = [...wait.points].filter(([topic]) => initial.has(topic) || this.#wanted.get(topic)?.confirmedGen === gen);
    // Topics still retried keep their points pending: resumed when confirmed (#subscribeSettled).
    for (const frame of resumeFrames(wait.epoch, held)) this.#sendResume(gen, frame, 0);
  }

  /** A notification's position: kept for the next resume, and written to the store when it moved on. */
  #observe(topic: string, offset: string, epoch: string): void {
    const before = this.#resume.position(topic);
    if (!this.#resume.observe(topic, offset, epoch)) return;
    const after = this.#resume.position(topic);
    if (after === undefined || !isAfter(after, before)) return;
    try {
      this.#positions.set(topic, after);
    } catch (err) {
      if (this.#storeFailureReported) return;
      this.#storeFailureReported = true;
      this.emit('error', new HeraldError('position_store_failed', `positions.set: ${String(err)} (reported once)`, { topic }));
    }
  }

  #sendResume(gen: number, frame: ResumeFrame, attempt: number): void {
    this.#requests.request(frame, { queue: false, resend: false }).catch((err: HeraldError) => {
      // Connection gone (or a late answer timed out): the points stay pending, and the
      // next connection sends them again; a late `resumed` is still taken.
      if (gen !== this.#generation || err.code === 'disconnected' || err.code === 'closed' || err.code === 'timeout') return;
      if (retryAfterError(err.code) === Retry.Backoff) {
        // The gateway could not read Redis (unavailable, or we sent too fast: rate_limited): ask again, for the topics still unanswered.
        const cap = backoffCap(attempt, { initialMs: RESUME_RETRY_MS, maxMs: Math.max(RESUME_RETRY_MS, this.#o.backoffMaxMs), factor: 2 });
        const delay = err.retryAfterMs ?? Math.min(cap, this.#random() * cap);
        const timer = this.#clock.setTimeout(
          () => {
            this.#resumeTimers.delete(timer);
            if (gen !== this.#generation) return;
            const pending = this.#resume.pending;
            const topics = Object.fromEntries(Object.entries(frame.topics).filter(([t]) => pending.has(t)));
            if (Object.keys(topics).length > 0) this.#sendResume(gen, { ...frame, topics }, attempt + 1);
          },
          Math.min(MAX_TIMER_MS, delay),
        );
        this.#resumeTimers.add(timer);
        return;
      }
      // Refused (a gateway that does not know the frame, or finds it invalid): nothing
      // will be replayed, so the app must take these topics as not recovered.
      this.emit('error', new HeraldError(err.code, `resume: ${err.message}`, { sent: err.sent, reason: err.reason }));
      this.#onResumed(Object.fromEntries(Object.keys(frame.topics).map((t) => [t, { recovered: false }])));
    });
  }

  #onResumed(topics: ResumedTopics): void {
    for (const [topic, { recovered }] of Object.entries(topics)) {
      this.#resume.resolved(topic, recovered);
      this.emit('recovery', { topic, recovered });
      this.#wanted.get(topic)?.sub._recovered({ topic, recovered });
    }
  }

  /** A topic the app no longer holds: not re-subscribed, nothing to resume. */
  #dropTopic(topic: string): void {
    const w = this.#wanted.get(topic);
    if (w !== undefined) {
      this.#clock.clearTimeout(w.timer);
      this.#wanted.delete(topic);
    }
    this.#resume.forget(topic);
    // Not held, so not resumed (an initial topic the gateway took away included); its
    // subscribe, in flight, may have been all a waiting resume waited for.
    this.#resumeWait?.points.delete(topic);
    if (this.#resumeWait !== undefined) this.#maybeResume(this.#resumeWait.gen);
  }

  // ---- the gateway's own changes (control API) ----

  /** `subscribed` with `server: true`: the connection holds the topic now; a confirmed handle, for this connection only. */
  #onServerSubscribed(topic: string): void {
    if (this.#session === undefined || !isTopic(topic)) return;
    // A topic the app wants already keeps its own handle and its re-subscribes.
    if (!this.#wanted.has(topic)) {
      const sub = new Subscription(topic, this);
      this.#wanted.set(topic, { sub, server: true, confirmedGen: this.#generation, attempt: 0, timer: undefined, inFlight: false });
      sub._confirmed();
    }
    this.emit('serverSubscribed', { topic });
  }

  /** `unsubscribed` with `server: true`: gone from the connection, and from what the client subscribes again. */
  #onServerUnsubscribed(topic: string): void {
    if (this.#session === undefined || !isTopic(topic)) return;
    const w = this.#wanted.get(topic);
    this.#dropTopic(topic);
    w?.sub._unsubscribed(new HeraldError('unsubscribed', `subscribe ${topic}: the server unsubscribed the connection`, { topic }));
    this.#checkReady();
    this.emit('serverUnsubscribed', { topic });
  }

  // ---- helpers ----

  async #getToken(): Promise<string> {
    const t = typeof this.#token === 'function' ? await this.#token() : this.#token;
    if (typeof t !== 'string' || t === '')
      throw new HeraldError('token_error', 'token: the token source gave no token (expected a non-empty string)');
    return t;
  }

  #refuseIfClosed(what: string): void {
    if (this.#state === 'closed') throw new HeraldError('closed', `${what}: the client is closed; call connect() first`);
  }

  #checkNotificationId(what: string, id: string): void {
    if (typeof id !== 'string' || !isNotificationId(id))
      throw new HeraldError('invalid_argument', `${what}: a notification id is 1-128 characters`);
  }

  #setQuality(rttMs: number): void {
    if (this.#state !== 'open') return;
    const level: QualityLevel = rttMs < this.#o.goodRttMs ? 'good' : rttMs < this.#o.fairRttMs ? 'fair' : 'poor';
    this.#quality = { level, rttMs };
    this.emit('quality', this.#quality);
  }

  #setState(change: StateChange): void {
    this.#state = change.state;
    this.emit('state', change);
  }
}

/** Defaults applied; the timing options checked here, the others by the module that uses them. */
function settings(o: HeraldClientOptions): Settings {
  const s: Settings = {
    autoConnect: o.autoConnect ?? DEFAULTS.autoConnect,
    backoffInitialMs: o.backoffInitialMs ?? DEFAULTS.backoffInitialMs,
    backoffMaxMs: o.backoffMaxMs ?? DEFAULTS.backoffMaxMs,
    backoffFactor: o.backoffFactor ?? DEFAULTS.backoffFactor,
    stableAfterMs: ms('stableAfterMs', o.stableAfterMs ?? DEFAULTS.stableAfterMs, true),
    connectTimeoutMs: ms('connectTimeoutMs', o.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs),
    requestTimeoutMs: o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    maxQueue: o.maxQueue ?? DEFAULTS.maxQueue,
    dedupWindow: o.dedupWindow ?? DEFAULTS.dedupWindow,
    pingIntervalMs: o.pingIntervalMs === undefined ? undefined : ms('pingIntervalMs', o.pingIntervalMs, true),
    pongTimeoutMs: ms('pongTimeoutMs', o.pongTimeoutMs ?? DEFAULTS.pongTimeoutMs),
    goodRttMs: ms('goodRttMs', o.goodRttMs ?? DEFAULTS.goodRttMs),
    fairRttMs: ms('fairRttMs', o.fairRttMs ?? DEFAULTS.fairRttMs),
    reauthBeforeExpiryMs: o.reauthBeforeExpiryMs === undefined ? undefined : ms('reauthBeforeExpiryMs', o.reauthBeforeExpiryMs, true),
    resume: o.resume ?? DEFAULTS.resume,
    ackWindowMs: ms('ackWindowMs', o.ackWindowMs ?? DEFAULTS.ackWindowMs, true),
  };
  if (s.fairRttMs < s.goodRttMs) throw new RangeError(`HeraldClient fairRttMs: must be >= goodRttMs (${s.goodRttMs}), got ${s.fairRttMs}`);
  return s;
}

function ms(name: string, v: number, zeroOk = false): number {
  if (!Number.isFinite(v) || v < 0 || (!zeroOk && v === 0))
    throw new RangeError(`HeraldClient ${name}: expected a number of ms ${zeroOk ? '>= 0' : '> 0'}, got ${v}`);
  return v;
}

function withTopic(e: HeraldError, topic: string): HeraldError {
  return e.topic === undefined
    ? new HeraldError(e.code, e.message, { sent: e.sent, retryAfterMs: e.retryAfterMs, reason: e.reason, topic })
    : e;
}

/** `exp` of a JWT in ms since the epoch, without verifying it (the gateway does that); undefined if unreadable. */
export function jwtExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const b64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const json: unknown = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    const exp = (json as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

// HeraldClient: one logical connection to a Herald gateway that survives the loss of
// any number of sockets. It owns at most one socket at a time; everything the app
// asked for (topics, requests in the offline queue) outlives the socket and is replayed
// on the next one. The pure parts live in backoff.ts, dedup.ts, requests.ts and resume.ts.
import { type Backoff, backoffCap, createBackoff } from './backoff.js';
import { Retry, retryAfterClose, retryAfterError, retryAfterRefusal } from './codes.js';
import { createDedupWindow, type DedupWindow } from './dedup.js';
import { Emitter } from './emitter.js';
import {
  BEARER_PREFIX,
  type ClientFrame,
  Close,
  decodeServerFrame,
  encodeClientFrame,
  isNotificationId,
  isTopic,
  type Notification,
  type ResumedTopics,
  type ServerFrame,
  type Session,
  SUBPROTOCOL,
} from './protocol.js';
import { type Clock, createRequests, HeraldError, type Requests, systemClock } from './requests.js';
import { type ResumeFrame, ResumeState, resumeFrames } from './resume.js';

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
  /** Notification ids remembered to drop repeats (live and replayed alike). Default 10000. */
  dedupWindow?: number;
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
  /** Errors no promise can carry: a re-subscribe refused after a reconnect, an automatic reauth failing, a resume refused, a server error without a request id. */
  error: HeraldError;
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
} as const;

/** setTimeout fires at once for delays past 2^31-1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

/** First retry of a resume the gateway could not serve (`unavailable`: Redis unreadable), ms; then doubling up to backoffMaxMs, jittered. */
const RESUME_RETRY_MS = 1000;

/** A server error that means "this request had no effect and will not on retry" (codes.ts). */
const refused = (code: string): boolean => retryAfterError(code) === Retry.Never;

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
  /** Topics the app subscribed to, re-subscribed after each reconnect. */
  readonly #topics = new Set<string>();
  /** App subscribe requests not settled yet, by topic: those go out themselves, no need to re-subscribe. */
  readonly #subscribing = new Map<string, number>();
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
    return [...this.#topics];
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

  /** Subscribes to a topic the token grants; re-subscribed after every reconnect until unsubscribe(). */
  async subscribe(topic: string): Promise<void> {
    if (!isTopic(topic))
      throw new HeraldError(
        'invalid_argument',
        `subscribe: ${JSON.stringify(topic.slice(0, 140))} is not a topic (1-128 of [A-Za-z0-9:_.@-])`,
        { topic },
      );
    this.#refuseIfClosed('subscribe');
    const had = this.#topics.has(topic);
    this.#topics.add(topic);
    this.#subscribing.set(topic, (this.#subscribing.get(topic) ?? 0) + 1);
    try {
      await this.#requests.request({ type: 'subscribe', topic });
    } catch (err) {
      const e = err as HeraldError;
      // A refusal always drops the topic; a request that never went out drops it only
      // if it was new. A timeout keeps it: the server may have taken it.
      if (refused(e.code) || (!had && e.code !== 'timeout')) this.#dropTopic(topic);
      throw withTopic(e, topic);
    } finally {
      const n = (this.#subscribing.get(topic) ?? 1) - 1;
      if (n === 0) this.#subscribing.delete(topic);
      else this.#subscribing.set(topic, n);
    }
  }

  /** Unsubscribes (the topic is no longer re-subscribed, even if this request fails). Initial topics may be left too. */
  async unsubscribe(topic: string): Promise<void> {
    if (!isTopic(topic))
      throw new HeraldError('invalid_argument', `unsubscribe: ${JSON.stringify(topic.slice(0, 140))} is not a topic`, { topic });
    this.#dropTopic(topic);
    this.#refuseIfClosed('unsubscribe');
    try {
      await this.#requests.request({ type: 'unsubscribe', topic });
    } catch (err) {
      throw withTopic(err as HeraldError, topic);
    }
  }

  /** Acknowledges receipt; resolves once the gateway has it (in Redis mode: once it is in the events stream). */
  async ack(notificationId: string): Promise<void> {
    this.#checkNotificationId('ack', notificationId);
    this.#refuseIfClosed('ack');
    await this.#requests.request({ type: 'ack', notificationId });
  }

  /** Marks a notification read; resolves once the gateway has it. */
  async markRead(notificationId: string): Promise<void> {
    this.#checkNotificationId('mark_read', notificationId);
    this.#refuseIfClosed('mark_read');
    await this.#requests.request({ type: 'mark_read', notificationId });
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
    for (const t of reply.revoked) this.#dropTopic(t);
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
        if (offset !== undefined && epoch !== undefined) this.#resume.observe(topic, offset, epoch);
        if (this.#dedup.seen(id)) return;
        const position = offset !== undefined && epoch !== undefined ? { offset, epoch } : {};
        this.emit('notification', { topic, id, ts, ...position, ...(replayed === true ? { replayed } : {}), data });
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
      case 'unsubscribed':
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

    // Re-subscribe first-hand: app subscribe requests still pending go out from the queue by themselves.
    for (const topic of this.#topics) {
      if (this.#subscribing.has(topic)) continue;
      this.#requests.request({ type: 'subscribe', topic }, { resend: false }).catch((err: HeraldError) => {
        if (!refused(err.code)) return; // lost with the connection: the next one re-subscribes
        this.#dropTopic(topic);
        this.emit('error', new HeraldError(err.code, `re-subscribe ${topic}: ${err.message}`, { sent: true, topic }));
      });
    }
    this.#requests.attach((f) => this.#send(gen, f));
    // After the re-subscribes (the gateway handles frames in order): every topic is held when the resume arrives.
    this.#recover(gen, session);
    this.#setState({ state: 'open', reason: 'connected', session });
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
      // A close that would only happen again (1008 rate_limited, a frame the gateway refuses): stop, and say why.
      this.#stop(reason, info.code);
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
    // 1008 token_expired (or the refusal above): come back at once with a fresh token.
    this.#scheduleRetry(detail, retry === Retry.FreshToken && this.#takeFreshTokenRetry());
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
    this.#requests.rejectAll('closed', `the client is closed (${reason})`);
    this.#teardownConnection();
    this.#setState({ state: 'closed', reason, ...(code !== undefined ? { code } : {}) });
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

  // ---- recovery ----

  /**
   * On a new connection after one with history (an epoch): resume every topic this one
   * holds from where the client stands (resume.ts). The new epoch is noted only after:
   * the resume names the old one, so that a changed dataset is answered recovered: false.
   */
  #recover(gen: number, session: Session): void {
    const previous = this.#previous;
    const held = new Set([...session.topics, ...this.#topics]);
    const plan =
      this.#o.resume && previous?.epoch !== undefined
        ? this.#resume.plan(held, { coveredUntil: previous.coveredUntil, now: session.serverTime })
        : undefined;
    if (plan === undefined) this.#resume.restart();
    else for (const frame of resumeFrames(plan.epoch, plan.points)) this.#sendResume(gen, frame, 0);
    if (session.epoch !== undefined) this.#resume.noteEpoch(session.epoch);
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
    }
  }

  /** A topic the app no longer holds: not re-subscribed, nothing to resume. */
  #dropTopic(topic: string): void {
    this.#topics.delete(topic);
    this.#resume.forget(topic);
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

// Requests and their replies: id allocation, the in-flight map matched by the id the
// server echoes, one deadline per request, and the bounded queue of requests made
// while there is no connection. No socket here: the client attaches a `send` function
// when a connection is ready and detaches it when the connection is lost.
import { type ClientFrame, REPLY_TYPE, type ReplyTypes, type RequestId, type ServerErrorCode, type ServerFrame } from './protocol.js';

/** Errors the client raises itself, beside the server's error codes. */
export type ClientErrorCode =
  /** No reply within the request timeout (see `sent` for whether it left the queue). */
  | 'timeout'
  /** The offline queue was full; the request was never sent. */
  | 'queue_full'
  /** The client was closed (close(), or a policy close it will not come back from). */
  | 'closed'
  /** The connection was lost while a request that is not resent (a ping) was in flight, or there was none. */
  | 'disconnected'
  /** An argument the server would refuse anyway (a topic breaking the grammar). */
  | 'invalid_argument'
  /** (error event) The token source threw or gave no token; the client backs off and tries again. */
  | 'token_error'
  /** (error event) The WebSocket constructor threw; the client backs off and tries again. */
  | 'connect_failed'
  /** (a Subscription's `ready`) unsubscribe() was called before the server confirmed the topic. */
  | 'unsubscribed'
  /** (error event, once) The position store's set() threw; positions stay in the client's memory. */
  | 'position_store_failed';

export type HeraldErrorCode = ClientErrorCode | ServerErrorCode | (string & {});

export interface HeraldErrorOptions {
  sent?: boolean;
  retryAfterMs?: number | undefined;
  topic?: string | undefined;
  reason?: string | undefined;
}

export class HeraldError extends Error {
  override readonly name = 'HeraldError';
  readonly code: HeraldErrorCode;
  /** With `rate_limited`: ms until the server's rate window resets. */
  readonly retryAfterMs: number | undefined;
  /**
   * Whether the request was written to a socket. False means it certainly had no
   * effect; true with `timeout` means the outcome is unknown.
   */
  readonly sent: boolean;
  /** The topic of a failed subscribe or unsubscribe (also of a re-subscribe refused after a reconnect). */
  readonly topic: string | undefined;
  /** The server's detail for some codes (auth_failed: why the token was refused). */
  readonly reason: string | undefined;

  constructor(code: HeraldErrorCode, message: string, opts: HeraldErrorOptions = {}) {
    super(message);
    this.code = code;
    this.sent = opts.sent ?? false;
    this.retryAfterMs = opts.retryAfterMs;
    this.topic = opts.topic;
    this.reason = opts.reason;
  }
}

/** A ClientFrame without its id: the id is allocated here. */
export type RequestFrame = ClientFrame extends infer F ? (F extends ClientFrame ? Omit<F, 'id'> : never) : never;

export type Reply<F extends RequestFrame> = ReplyTypes[F['type']];

/** Timers and time, injectable so unit tests control them. */
export interface Clock {
  /** Monotonic ms (for RTT); only differences are used. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => (typeof performance !== 'undefined' ? performance.now() : Date.now()),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface RequestOptions {
  /** Overrides the default timeout, in ms, counted from the call (queue time included). */
  timeoutMs?: number;
  /** Wait in the offline queue when there is no connection (true), or fail at once with `disconnected`. */
  queue?: boolean;
  /** When the connection is lost before the reply, send it again on the next one (true), or fail with `disconnected`. */
  resend?: boolean;
}

export interface RequestsOptions {
  /** Default deadline per request, in ms, from the call to the reply, queue time included. */
  timeoutMs: number;
  /** Requests held while offline; one more is refused with `queue_full`. */
  maxQueue: number;
  clock?: Clock;
}

export interface Requests {
  /** Sends `frame` with a fresh id (or queues it while detached); settles with the reply matched by id. */
  request<F extends RequestFrame>(frame: F, opts?: RequestOptions): Promise<Reply<F>>;
  /** A connection is ready: queued requests go out through `send` in the order they were made. */
  attach(send: (frame: ClientFrame) => void): void;
  /**
   * The connection is gone: requests in flight go back to the front of the queue
   * (oldest first, keeping their deadlines) or fail with `disconnected` (resend: false).
   */
  detach(): void;
  /** Settles the request a server frame answers; true when it matched one. */
  settle(frame: ServerFrame): boolean;
  /** Fails every queued and in-flight request (close()). */
  rejectAll(code: HeraldErrorCode, message: string): void;
  readonly queued: number;
  readonly inFlight: number;
}

interface Entry {
  readonly id: number;
  readonly frame: ClientFrame;
  readonly resend: boolean;
  readonly resolve: (reply: ServerFrame) => void;
  readonly reject: (err: HeraldError) => void;
  timer: unknown;
  /** Written to a socket at least once. */
  sent: boolean;
}

export function createRequests(o: RequestsOptions): Requests {
  if (!(Number.isFinite(o.timeoutMs) && o.timeoutMs > 0))
    throw new RangeError(`request timeout: expected a number of ms > 0, got ${o.timeoutMs}`);
  if (!Number.isSafeInteger(o.maxQueue) || o.maxQueue < 0)
    throw new RangeError(`request queue: expected an integer >= 0, got ${o.maxQueue}`);
  const clock = o.clock ?? systemClock;
  const queue: Entry[] = [];
  const inFlight = new Map<RequestId, Entry>();
  let send: ((frame: ClientFrame) => void) | undefined;
  // Integers, never reused by this client: a reply can only ever match its own request.
  let lastId = 0;

  function finish(e: Entry): void {
    clock.clearTimeout(e.timer);
    inFlight.delete(e.id);
    const i = queue.indexOf(e);
    if (i !== -1) queue.splice(i, 1);
  }

  function fail(
    e: Entry,
    code: HeraldErrorCode,
    message: string,
    detail: { retryAfterMs?: number | undefined; reason?: string | undefined } = {},
  ): void {
    finish(e);
    e.reject(new HeraldError(code, message, { sent: e.sent, ...detail }));
  }

  function transmit(e: Entry, write: (frame: ClientFrame) => void): void {
    inFlight.set(e.id, e);
    e.sent = true;
    write(e.frame);
  }

  return {
    request<F extends RequestFrame>(frame: F, opts: RequestOptions = {}): Promise<Reply<F>> {
      return new Promise<Reply<F>>((resolve, reject) => {
        const id = ++lastId;
        const e: Entry = {
          id,
          frame: { ...frame, id } as ClientFrame,
          resend: opts.resend ?? true,
          resolve: resolve as (reply: ServerFrame) => void,
          reject,
          timer: undefined,
          sent: false,
        };
        if (send === undefined) {
          if (opts.queue === false) {
            e.reject(new HeraldError('disconnected', `${frame.type}: not connected`));
            return;
          }
          if (queue.length >= o.maxQueue) {
            e.reject(new HeraldError('queue_full', `${frame.type}: the offline queue holds ${o.maxQueue} requests already`));
            return;
          }
        }
        const timeoutMs = opts.timeoutMs ?? o.timeoutMs;
        e.timer = clock.setTimeout(() => fail(e, 'timeout', `${frame.type}: no reply within ${timeoutMs} ms`), timeoutMs);
        if (send === undefined) queue.push(e);
        else transmit(e, send);
      });
    },

    attach(write) {
      send = write;
      // `send` is read again each turn: a write may not detach us, but be safe if it does.
      while (send !== undefined) {
        const e = queue.shift();
        if (e === undefined) break;
        transmit(e, send);
      }
    },

    detach() {
      send = undefined;
      const back: Entry[] = [];
      for (const e of inFlight.values()) {
        if (e.resend) back.push(e);
        else fail(e, 'disconnected', `${e.frame.type}: the connection was lost before the reply`);
      }
      inFlight.clear();
      back.sort((a, b) => a.id - b.id);
      queue.unshift(...back);
      // Requests resent on the next connection count against the bound too; the newest go.
      while (queue.length > o.maxQueue) {
        const e = queue[queue.length - 1] as Entry;
        fail(e, 'queue_full', `${e.frame.type}: the offline queue holds ${o.maxQueue} requests already`);
      }
    },

    settle(frame) {
      if (!('id' in frame) || frame.id === undefined) return false;
      const e = inFlight.get(frame.id);
      if (e === undefined) return false;
      if (frame.type === 'error') {
        fail(e, frame.code, frame.message, { retryAfterMs: frame.retryAfterMs, reason: frame.reason });
        return true;
      }
      if (frame.type !== REPLY_TYPE[e.frame.type]) return false;
      finish(e);
      e.resolve(frame);
      return true;
    },

    rejectAll(code, message) {
      for (const e of [...inFlight.values(), ...queue]) fail(e, code, `${e.frame.type}: ${message}`);
    },

    get queued() {
      return queue.length;
    },
    get inFlight() {
      return inFlight.size;
    },
  };
}

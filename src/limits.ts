// Pure pacing rules: the per-connection message rate limit (a fixed window kept in
// the connection's UserData and advanced by the caller's clock, so no timer exists
// per socket) and the Redis reconnect backoff.

export interface RateWindow {
  /** Start of the current window, ms on the caller's monotonic clock. */
  start: number;
  /** Messages seen in the current window. */
  count: number;
}

export type RateDecision =
  | { kind: 'allow' }
  /** Over the limit: answer `rate_limited`, drop the message. */
  | { kind: 'reject'; retryAfterMs: number }
  /** Past twice the limit: the client ignores `rate_limited`; close with 1008. */
  | { kind: 'close' };

const ALLOW: RateDecision = Object.freeze({ kind: 'allow' });
const CLOSE: RateDecision = Object.freeze({ kind: 'close' });

export function newRateWindow(now: number): RateWindow {
  return { start: now, count: 0 };
}

/** `limit` 0 disables limiting. */
export function consume(w: RateWindow, now: number, limit: number, windowMs: number): RateDecision {
  if (limit === 0) return ALLOW;
  if (now - w.start >= windowMs || now < w.start) {
    w.start = now;
    w.count = 0;
  }
  w.count++;
  if (w.count <= limit) return ALLOW;
  if (w.count > 2 * limit) return CLOSE;
  return { kind: 'reject', retryAfterMs: Math.max(1, Math.ceil(w.start + windowMs - now)) };
}

/**
 * Redis reconnect delay for ioredis's attempt 1, 2, ...: 50-100 ms, doubling to a cap
 * of 250-500 ms (jittered by `random` in [0, 1)). Delivery
 * resumes within 1 s of Redis returning only if a retry is never further apart than
 * that less the time to connect and re-subscribe; a few attempts a second per gateway
 * is no load for a Redis that is down.
 */
export function reconnectDelay(attempt: number, random: number): number {
  const base = Math.min(500, 50 * 2 ** Math.min(attempt, 4));
  return Math.round(base / 2 + random * (base / 2));
}

// Pure pacing rules: the per-connection message rate limit (a fixed window kept in
// the connection's UserData and advanced by the caller's clock, so no timer exists
// per socket), the per-connection replay budget, and the Redis reconnect backoff.

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

/** A token bucket, refilled by the caller's clock (no timer): `capacity` tokens per
 *  `periodMs` (a minute unless said otherwise), holding at most `capacity`. */
export interface Budget {
  tokens: number;
  /** When `tokens` was last brought up to date, ms on the caller's monotonic clock. */
  at: number;
}

export function newBudget(capacity: number, now: number): Budget {
  return { tokens: capacity, at: now };
}

export type Spend = { kind: 'ok' } | { kind: 'later'; retryAfterMs: number } | { kind: 'never' };

/** What the budget holds now (refilled up to `now`); Infinity with no budget (capacity 0). */
export function available(b: Budget, now: number, capacity: number, periodMs = 60_000): number {
  if (capacity === 0) return Number.POSITIVE_INFINITY;
  b.tokens = Math.min(capacity, b.tokens + (Math.max(0, now - b.at) * capacity) / periodMs);
  b.at = Math.max(b.at, now);
  return b.tokens;
}

/**
 * Spends `n`: ok (spent), later (not enough now: spent nothing; when there will be),
 * or never (more than the budget ever holds). Capacity 0 means no budget: always ok.
 */
export function spend(b: Budget, n: number, now: number, capacity: number, periodMs = 60_000): Spend {
  if (capacity === 0) return { kind: 'ok' };
  if (n > capacity) return { kind: 'never' };
  const tokens = available(b, now, capacity, periodMs);
  if (n <= tokens) {
    b.tokens -= n;
    return { kind: 'ok' };
  }
  return { kind: 'later', retryAfterMs: Math.max(1, Math.ceil(((n - tokens) * periodMs) / capacity)) };
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

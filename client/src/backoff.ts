// Reconnection delays: exponential growth with full jitter (AWS Architecture Blog,
// "Exponential Backoff And Jitter"): attempt n waits a uniform random time in
// [0, min(maxMs, initialMs * factor^n)], so clients that lost the same gateway at
// the same moment spread out instead of coming back together.

export interface BackoffOptions {
  /** Cap of the first delay, in ms. */
  initialMs: number;
  /** Cap of every delay, in ms. */
  maxMs: number;
  /** Growth of the cap per attempt (>= 1). */
  factor: number;
}

/** The upper bound of the delay before attempt `attempt` (0-based): min(maxMs, initialMs * factor^attempt). */
export function backoffCap(attempt: number, o: BackoffOptions): number {
  // factor^attempt overflows to Infinity for long outages; min() keeps it at maxMs.
  return Math.min(o.maxMs, o.initialMs * o.factor ** Math.max(0, attempt));
}

export interface Backoff {
  /** The delay before the next attempt, in [0, cap]; advances the attempt counter. */
  next(): number;
  /** Back to attempt 0 (after a stable connection). */
  reset(): void;
  /** Attempts handed out since the last reset. */
  readonly attempt: number;
}

/** `random` returns a number in [0, 1) like Math.random (injectable for tests). */
export function createBackoff(o: BackoffOptions, random: () => number = Math.random): Backoff {
  checkBackoffOptions(o);
  let attempt = 0;
  return {
    next() {
      const cap = backoffCap(attempt, o);
      attempt += 1;
      // Clamp: an injected random() returning exactly 1 must not exceed the cap.
      return Math.min(cap, Math.max(0, random() * cap));
    },
    reset() {
      attempt = 0;
    },
    get attempt() {
      return attempt;
    },
  };
}

function checkBackoffOptions(o: BackoffOptions): void {
  if (!(Number.isFinite(o.initialMs) && o.initialMs >= 0))
    throw new RangeError(`backoff initialMs: expected a finite number >= 0, got ${o.initialMs}`);
  if (!(Number.isFinite(o.maxMs) && o.maxMs >= o.initialMs))
    throw new RangeError(`backoff maxMs: expected a finite number >= initialMs (${o.initialMs}), got ${o.maxMs}`);
  if (!(Number.isFinite(o.factor) && o.factor >= 1)) throw new RangeError(`backoff factor: expected a finite number >= 1, got ${o.factor}`);
}

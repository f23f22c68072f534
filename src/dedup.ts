// A bounded window of recently delivered notification keys. Bounded by age and by
// count; eviction is O(1) amortised because a Map iterates in insertion order and
// entries are inserted in time order (the caller passes a monotonic clock). Pure.

export interface DedupWindow {
  /** True when `key` was seen within the window; otherwise records it and returns false. */
  seen(key: string, now: number): boolean;
  readonly size: number;
}

export function createDedupWindow(opts: { windowMs: number; maxEntries: number }): DedupWindow {
  const { windowMs, maxEntries } = opts;
  const expiries = new Map<string, number>();

  /** Drops expired entries, and while `room` is needed, the oldest live ones. */
  function evict(now: number, room: boolean): void {
    for (const [key, expiresAt] of expiries) {
      if (expiresAt > now && !(room && expiries.size >= maxEntries)) break;
      expiries.delete(key);
    }
  }

  return {
    seen(key, now) {
      if (windowMs === 0) return false;
      evict(now, false);
      const expiresAt = expiries.get(key);
      if (expiresAt !== undefined) return true;
      evict(now, true);
      expiries.set(key, now + windowMs);
      return false;
    },
    get size() {
      return expiries.size;
    },
  };
}

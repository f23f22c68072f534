// A bounded window of recently delivered notification keys, bounded by age and by
// count. Keys sit in a ring buffer in arrival order (the caller passes a monotonic
// clock), so expiring or evicting the oldest is O(1) per key. (A Map iterated from
// its front was O(n) after many deletes: V8 keeps deleted slots until it rehashes.)
// Pure.

export interface DedupWindow {
  /** True when `key` was seen within the window; otherwise records it and returns false. */
  seen(key: string, now: number): boolean;
  readonly size: number;
}

export function createDedupWindow(opts: { windowMs: number; maxEntries: number }): DedupWindow {
  const { windowMs, maxEntries } = opts;
  const live = new Set<string>();
  // Preallocated: 16 bytes a slot (100,000 slots by default = 1.6 MB).
  const keys: (string | undefined)[] = new Array<string | undefined>(maxEntries).fill(undefined);
  const expiries = new Float64Array(maxEntries);
  let head = 0;
  let count = 0;

  function dropOldest(): void {
    const key = keys[head];
    if (key !== undefined) live.delete(key);
    keys[head] = undefined;
    head = (head + 1) % maxEntries;
    count--;
  }

  return {
    seen(key, now) {
      if (windowMs === 0) return false;
      while (count > 0 && (expiries[head] ?? 0) <= now) dropOldest();
      if (live.has(key)) return true;
      if (count === maxEntries) dropOldest();
      const tail = (head + count) % maxEntries;
      keys[tail] = key;
      expiries[tail] = now + windowMs;
      count++;
      live.add(key);
      return false;
    },
    get size() {
      return count;
    },
  };
}

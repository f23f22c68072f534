// A bounded window of recently seen notification ids: at-least-once delivery (a
// publisher retrying, the same notification on two topics, a gateway restarted with
// an empty dedup memory) never shows the user the same notification twice.

export interface DedupWindow {
  /** True when `id` is among the last `size` distinct ids seen; otherwise records it and returns false. */
  seen(id: string): boolean;
  readonly size: number;
  clear(): void;
}

/**
 * Remembers the last `capacity` distinct ids, oldest evicted first (first-seen order:
 * seeing an id again does not make it younger, so a flood of repeats cannot keep one
 * id alive forever). O(1) per call: a Set iterates in insertion order.
 */
export function createDedupWindow(capacity: number): DedupWindow {
  if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`dedup window: expected an integer >= 1, got ${capacity}`);
  const ids = new Set<string>();
  return {
    seen(id) {
      if (ids.has(id)) return true;
      ids.add(id);
      if (ids.size > capacity) {
        const oldest = ids.values().next();
        if (oldest.done !== true) ids.delete(oldest.value);
      }
      return false;
    },
    get size() {
      return ids.size;
    },
    clear() {
      ids.clear();
    },
  };
}

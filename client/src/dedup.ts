// A bounded window of recently seen notifications, keyed by (topic, id) as the gateway
// and docs/PROTOCOL.md de-duplicate: at-least-once delivery (a publisher retrying, a
// replay overlapping live delivery, a gateway restarted with an empty dedup memory)
// never shows the user the same notification twice, while an app whose ids are per
// topic (`order-1` on two topics) loses nothing.

export interface DedupWindow {
  /** True when (`topic`, `id`) is among the last `size` distinct pairs seen; otherwise records it and returns false. */
  seen(topic: string, id: string): boolean;
  readonly size: number;
  clear(): void;
}

/**
 * Remembers the last `capacity` distinct pairs, oldest evicted first (first-seen order:
 * seeing an id again does not make it younger, so a flood of repeats cannot keep one
 * id alive forever). O(1) per call: a Set iterates in insertion order.
 */
export function createDedupWindow(capacity: number): DedupWindow {
  if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`dedup window: expected an integer >= 1, got ${capacity}`);
  const ids = new Set<string>();
  return {
    seen(topic, id) {
      // Length-prefixed: no two pairs share a key, whatever characters a (decoded, unchecked) topic holds.
      const key = `${topic.length}:${topic}${id}`;
      if (ids.has(key)) return true;
      ids.add(key);
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

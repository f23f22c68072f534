// When each connection's token runs out: one timer wheel for the process, not a
// timer per connection. JWT `exp` has whole-second precision, so a slot is one
// second; the caller ticks a few times a second and ends what `due` returns.

export interface ExpiryWheel<T> {
  /** Track `item` until `expiresAtMs` (ms since the epoch). */
  add(item: T, expiresAtMs: number): void;
  /** Stop tracking; `expiresAtMs` must be what `add` was given. */
  remove(item: T, expiresAtMs: number): void;
  /** Items whose expiry is at or before `nowMs`, taken off the wheel. */
  due(nowMs: number): T[];
  readonly size: number;
}

const SLOT_MS = 1000;

export function createExpiryWheel<T>(nowMs: number): ExpiryWheel<T> {
  const slots = new Map<number, Set<T>>();
  let size = 0;
  /** Every slot up to and including this one has been handed out by `due`. */
  let done = Math.floor(nowMs / SLOT_MS);

  // An item already expired when added goes into the next slot `due` will read.
  const slotOf = (expiresAtMs: number): number => Math.max(Math.ceil(expiresAtMs / SLOT_MS), done + 1);

  function take(slot: number, out: T[]): void {
    const items = slots.get(slot);
    if (items === undefined) return;
    slots.delete(slot);
    size -= items.size;
    for (const item of items) out.push(item);
  }

  return {
    add(item, expiresAtMs) {
      const slot = slotOf(expiresAtMs);
      let items = slots.get(slot);
      if (items === undefined) slots.set(slot, (items = new Set()));
      if (!items.has(item)) {
        items.add(item);
        size++;
      }
    },

    remove(item, expiresAtMs) {
      // Try the slot it was filed under at add time; an overdue item sits in a later slot.
      for (const slot of [Math.ceil(expiresAtMs / SLOT_MS), done + 1]) {
        const items = slots.get(slot);
        if (items?.delete(item) === true) {
          size--;
          if (items.size === 0) slots.delete(slot);
          return;
        }
      }
    },

    due(nowMs) {
      const upTo = Math.floor(nowMs / SLOT_MS);
      const out: T[] = [];
      if (upTo <= done) return out;
      // Walk the seconds that passed, or the occupied slots if fewer (after a
      // stalled process or a wall-clock jump): never more than either.
      if (upTo - done <= slots.size) {
        for (let s = done + 1; s <= upTo; s++) take(s, out);
      } else {
        for (const s of [...slots.keys()]) if (s <= upTo) take(s, out);
      }
      done = upTo;
      return out;
    },

    get size() {
      return size;
    },
  };
}

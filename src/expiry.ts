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
  /** Items already expired when added: handed out by the next `due`. */
  const overdue = new Set<T>();
  let size = 0;
  /** Every slot up to and including this one has been handed out by `due`. */
  let done = Math.floor(nowMs / SLOT_MS);

  /** The slot's set, or `overdue` for a slot `due` has already passed. */
  function setFor(expiresAtMs: number, create: boolean): Set<T> | undefined {
    const slot = Math.ceil(expiresAtMs / SLOT_MS);
    if (slot <= done) return overdue;
    let items = slots.get(slot);
    if (items === undefined && create) {
      items = new Set();
      slots.set(slot, items);
    }
    return items;
  }

  function take(slot: number, out: T[]): void {
    const items = slots.get(slot);
    if (items === undefined) return;
    slots.delete(slot);
    size -= items.size;
    for (const item of items) out.push(item);
  }

  return {
    add(item, expiresAtMs) {
      const items = setFor(expiresAtMs, true) as Set<T>;
      if (!items.has(item)) {
        items.add(item);
        size++;
      }
    },

    remove(item, expiresAtMs) {
      // A slot `due` has passed holds nothing: the item was handed out, or is overdue.
      const items = setFor(expiresAtMs, false);
      if (items?.delete(item) !== true) return;
      size--;
      if (items.size === 0 && items !== overdue) slots.delete(Math.ceil(expiresAtMs / SLOT_MS));
    },

    due(nowMs) {
      const upTo = Math.floor(nowMs / SLOT_MS);
      const out: T[] = [...overdue];
      size -= overdue.size;
      overdue.clear();
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

// A clock whose time moves only when the test says so: the SDK's timers (request
// deadlines, backoff, pings) fire in due order from advance(), so a test can prove
// "nothing happens before 10 000 ms, this happens at 10 000 ms" without waiting.
import type { Clock } from '../../client/dist/requests.js';

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

export class ManualClock implements Clock {
  #now = 0;
  #nextId = 1;
  #timers: Timer[] = [];

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = { id: this.#nextId++, at: this.#now + Math.max(0, ms), fn };
    this.#timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.#timers.length;
  }

  /**
   * Moves time forward by `ms`, firing each due timer at its own time, in order (ties
   * by creation), and letting promise callbacks run after each one, as they would
   * between two real timers.
   */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      const due = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (due === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = due.at;
      due.fn();
    }
    this.#now = end;
  }
}

/** Lets pending promise callbacks (and the SDK's queueMicrotask work) run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

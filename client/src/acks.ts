// Acks and read marks coalesced: every id passed to ack() (or markRead()) within a short
// window goes out in one list frame, so acking what one resume replays (300 per topic)
// costs a few frames of the gateway's rate limit, not 300. Each call's promise settles
// with the reply to the frame its id went in. No socket here: `send` is the client's
// request function; time comes from the injected clock.
import { MAX_ACK_IDS } from './protocol.js';
import type { Clock } from './requests.js';

/** Ids per list frame: the gateway refuses more (PROTOCOL.md). */
export const DEFAULT_MAX_IDS = MAX_ACK_IDS;

/**
 * Bytes of ids per frame (their JSON strings, commas included): a frame of 100 ids of
 * 128 characters would pass the gateway's default HERALD_MAX_PAYLOAD_BYTES (10240), and
 * a frame over it closes the connection (1009). 8 KiB leaves room for the rest of it.
 */
export const DEFAULT_MAX_ID_BYTES = 8192;

export type AckKind = 'ack' | 'mark_read';

export interface AckBatcherOptions {
  /** Ids issued within this many ms of the first one of a batch share its frame. 0: those of the same task. */
  windowMs: number;
  /** Sends one frame for `ids` (one id: the single form, any gateway takes it); settles with its reply. */
  send(kind: AckKind, ids: string[]): Promise<unknown>;
  clock: Clock;
  maxIds?: number;
  maxIdBytes?: number;
}

interface Batch {
  ids: string[];
  bytes: number;
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
  /** The ids in `ids`: the same id twice in a window goes once. */
  seen: Set<string>;
  timer: unknown;
}

export interface AckBatcher {
  /** Adds `id` to the open batch of its kind (opening one); resolves when that batch's frame is answered. */
  add(kind: AckKind, id: string): Promise<void>;
  /** Sends every open batch now. */
  flush(): void;
  /** Ids waiting for their window to close. */
  readonly waiting: number;
}

export function createAckBatcher(o: AckBatcherOptions): AckBatcher {
  if (!(Number.isFinite(o.windowMs) && o.windowMs >= 0))
    throw new RangeError(`HeraldClient ackWindowMs: expected a number of ms >= 0, got ${o.windowMs}`);
  const maxIds = o.maxIds ?? DEFAULT_MAX_IDS;
  const maxIdBytes = o.maxIdBytes ?? DEFAULT_MAX_ID_BYTES;
  const open = new Map<AckKind, Batch>();

  function send(kind: AckKind): void {
    const b = open.get(kind);
    if (b === undefined) return;
    open.delete(kind);
    o.clock.clearTimeout(b.timer);
    o.send(kind, b.ids).then(
      () => {
        for (const w of b.waiters) w.resolve();
      },
      (err: unknown) => {
        for (const w of b.waiters) w.reject(err);
      },
    );
  }

  return {
    add(kind, id) {
      return new Promise<void>((resolve, reject) => {
        // An id's bytes in the frame: its JSON string and a comma.
        const bytes = JSON.stringify(id).length + 1;
        let b = open.get(kind);
        if (b !== undefined && !b.seen.has(id) && b.bytes + bytes > maxIdBytes) {
          send(kind); // full by bytes: this id opens the next frame
          b = undefined;
        }
        if (b === undefined) {
          b = { ids: [], bytes: 0, waiters: [], seen: new Set(), timer: undefined };
          open.set(kind, b);
          b.timer = o.clock.setTimeout(() => send(kind), o.windowMs);
        }
        b.waiters.push({ resolve, reject });
        if (!b.seen.has(id)) {
          b.seen.add(id);
          b.ids.push(id);
          b.bytes += bytes;
        }
        if (b.ids.length >= maxIds) send(kind); // full: no reason to wait
      });
    },
    flush() {
      for (const kind of [...open.keys()]) send(kind);
    },
    get waiting() {
      let n = 0;
      for (const b of open.values()) n += b.ids.length;
      return n;
    },
  };
}

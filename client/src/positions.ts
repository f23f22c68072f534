// Where the app stands on each topic, kept where it outlives the client: a page reload,
// an app restart. The client writes a topic's position (its latest notification's
// history entry and epoch) as notifications arrive, and on connect resumes every topic
// it holds from what the store gives. A store is any object with get/set: the two here
// (memory, localStorage), or the app's own (a file, IndexedDB mirrored in memory, ...).
// The client trusts no store: a get or set that throws, or a value that is not a
// position, is ignored (readPosition).
import { compareOffsets, isOffset } from './grammar.js';
import type { TopicPosition } from './resume.js';

export type { TopicPosition } from './resume.js';

/**
 * Synchronous on purpose: the client reads a topic's position while it handles the
 * `connected` frame, before any notification of the new connection can move it. For
 * asynchronous storage, load it first and pass `initialPositions`, or mirror it in memory.
 */
export interface PositionStore {
  get(topic: string): TopicPosition | undefined;
  set(topic: string, position: TopicPosition): void;
  /** Every stored position (optional: listing, debugging). */
  entries?(): Iterable<[string, TopicPosition]>;
}

/** Epochs are opaque to the client; the gateway's are short. Longer is garbage. */
const MAX_EPOCH_LENGTH = 64;

/** A value read from anywhere (a store, storage, the app) as a position, or undefined when it is not one. */
export function asPosition(value: unknown): TopicPosition | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const { offset, epoch } = value as { offset?: unknown; epoch?: unknown };
  if (typeof offset !== 'string' || !isOffset(offset)) return undefined;
  if (typeof epoch !== 'string' || epoch === '' || epoch.length > MAX_EPOCH_LENGTH) return undefined;
  return { offset, epoch };
}

/** The store's position for `topic`, or undefined when it has none, throws, or gives garbage. */
export function readPosition(store: PositionStore, topic: string): TopicPosition | undefined {
  try {
    return asPosition(store.get(topic));
  } catch {
    return undefined;
  }
}

/** `a` is further than `b` (another epoch counts as further: a newer dataset). */
export function isAfter(a: TopicPosition, b: TopicPosition | undefined): boolean {
  return b === undefined || a.epoch !== b.epoch || compareOffsets(a.offset, b.offset) > 0;
}

/** The default: positions live as long as the client object (a reconnect keeps them, a reload does not). */
export function memoryPositions(): PositionStore {
  const map = new Map<string, TopicPosition>();
  return {
    get: (topic) => map.get(topic),
    set: (topic, position) => {
      map.set(topic, { offset: position.offset, epoch: position.epoch });
    },
    entries: () => [...map].map(([t, p]): [string, TopicPosition] => [t, { ...p }]),
  };
}

/** The part of the Web Storage API the store uses (localStorage, sessionStorage, or a stand-in). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface LocalStoragePositions extends PositionStore {
  /** Writes what is pending now (also done on `pagehide`). */
  flush(): void;
}

/**
 * Writes wait this long, ms, so a burst (a resume replaying 300 notifications) costs one
 * `setItem`, not 300; `pagehide` (a reload, a closed tab) writes what is pending at once.
 */
export const LOCAL_STORAGE_WRITE_DELAY_MS = 100;

/**
 * Positions in one Web Storage item (`key`, JSON `{topic: {offset, epoch}}`), read once
 * at creation. Writes are delayed (LOCAL_STORAGE_WRITE_DELAY_MS) and merged with the
 * item as it is then, keeping the further position per topic, so two tabs of one app
 * do not undo each other's. Storage that is missing, full or throwing (Safari private
 * mode, quotas) degrades to memory: positions then last as long as the page.
 */
export function localStoragePositions(
  key = 'herald.positions',
  storage: StorageLike | undefined = (globalThis as { localStorage?: StorageLike }).localStorage,
): LocalStoragePositions {
  const map = new Map<string, TopicPosition>(load(storage, key));
  const dirty = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;

  function flush(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (dirty.size === 0 || storage === undefined) return;
    const merged = new Map(load(storage, key));
    for (const topic of dirty) {
      const mine = map.get(topic);
      if (mine !== undefined && isAfter(mine, merged.get(topic))) merged.set(topic, mine);
    }
    dirty.clear();
    try {
      storage.setItem(key, JSON.stringify(Object.fromEntries(merged)));
    } catch {
      // Full or refused: the positions stay in memory.
    }
  }

  const target = globalThis as { addEventListener?: (type: string, fn: () => void) => void };
  if (storage !== undefined && typeof target.addEventListener === 'function') target.addEventListener('pagehide', flush);

  return {
    get: (topic) => map.get(topic),
    set(topic, position) {
      map.set(topic, { offset: position.offset, epoch: position.epoch });
      dirty.add(topic);
      if (timer === undefined) timer = setTimeout(flush, LOCAL_STORAGE_WRITE_DELAY_MS);
    },
    entries: () => [...map].map(([t, p]): [string, TopicPosition] => [t, { ...p }]),
    flush,
  };
}

/** The item's positions; garbage entries (or a garbage item) are skipped. */
function load(storage: StorageLike | undefined, key: string): Array<[string, TopicPosition]> {
  let text: string | null = null;
  try {
    text = storage?.getItem(key) ?? null;
  } catch {
    return [];
  }
  if (text === null) return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return [];
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  const out: Array<[string, TopicPosition]> = [];
  for (const [topic, v] of Object.entries(value)) {
    const p = asPosition(v);
    if (p !== undefined) out.push([topic, p]);
  }
  return out;
}

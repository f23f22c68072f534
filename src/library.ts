// The Redis function library that records notification history (docs/DELIVERY.md),
// one per deployment, named after HERALD_NAMESPACE (`herald` by default: functions
// herald_publish, herald_record, herald_epoch, herald_lease, herald_release). The Lua
// is src/library.lua; its settings are baked in here, and written in a marker line so
// that a gateway can tell whether the library Redis holds is its own (planLibrary).
// Also the one format both sides share: how a recorded notification is announced on
// its topic's channel (decodeAnnouncement).
import { readFileSync } from 'node:fs';
import type { HistoryConfig } from './history.js';
import { names } from './keys.js';
import { offsetMs } from './offsets.js';

/** Bumped whenever library.lua (or the preamble functionLibrary writes) changes: a
 *  newer library is never replaced by an older one. 5: the Lua moved to its own file. */
export const LIBRARY_VERSION = 5;

/** What a library was built with; the same for every gateway of a deployment. */
export interface LibrarySettings {
  version: number;
  namespace: string;
  prefix: string;
  historySize: number;
  historyTtlS: number;
  recorders: number;
}

export function librarySettings(namespace: string, prefix: string, history: HistoryConfig, recorders: number): LibrarySettings {
  return { version: LIBRARY_VERSION, namespace, prefix, historySize: history.size, historyTtlS: history.ttlMs / 1000, recorders };
}

const MARKER = '-- herald-library ';

/** How long a recorded payload is recognised when another recorder records it again, ms. */
export const SEEN_WINDOW_MS = 60_000;
/** A recorder's lease on its slot, ms: renewed every second, taken over once it lapses. */
export const LEASE_TTL_MS = 3000;

/** src/library.lua, read once: the functions, after the preamble functionLibrary writes. */
const LIBRARY_LUA = readFileSync(new URL('./library.lua', import.meta.url), 'utf8');

/** The library's code for these settings: the shebang naming it, the marker, the
 *  settings as Lua locals (every name library.lua expects), then library.lua. */
export function functionLibrary(s: LibrarySettings): string {
  return `#!lua name=${names(s.namespace).library}
${MARKER}${JSON.stringify(s)}
local NS = ${JSON.stringify(s.namespace)}
local SIZE = ${s.historySize}
local TTL_MS = ${s.historyTtlS * 1000}
local SEEN_MS = ${SEEN_WINDOW_MS}
local RECORDERS = ${s.recorders}
local LEASE_TTL_MS = ${LEASE_TTL_MS}
${LIBRARY_LUA}`;
}

/** The settings in a library's marker line; undefined for a library without one. */
export function settingsOf(code: string): LibrarySettings | undefined {
  const at = code.indexOf(`\n${MARKER}`);
  if (at === -1) return undefined;
  const end = code.indexOf('\n', at + 1);
  try {
    const s = JSON.parse(code.slice(at + 1 + MARKER.length, end === -1 ? undefined : end)) as Partial<LibrarySettings>;
    if (typeof s.namespace !== 'string' || typeof s.prefix !== 'string' || typeof s.version !== 'number') return undefined;
    return s as LibrarySettings;
  } catch {
    return undefined;
  }
}

export interface LoadedLibrary {
  name: string;
  code: string;
}

export type LibraryPlan =
  /** Load ours (none there, an older version, or one without a marker). */
  | { action: 'load'; replace: boolean }
  /** Ours, or a newer version with the same settings: leave it. */
  | { action: 'keep' }
  /** Another deployment's settings: refuse, naming each. */
  | { action: 'refuse'; problems: string[] };

const SETTING_NAMES: ReadonlyArray<[keyof LibrarySettings, string]> = [
  ['prefix', 'HERALD_CHANNEL_PREFIX'],
  ['historySize', 'HERALD_HISTORY_SIZE'],
  ['historyTtlS', 'HERALD_HISTORY_TTL_S'],
  ['recorders', 'HERALD_RECORDERS'],
];

/** Pure: what to do with the libraries Redis holds, given ours. */
export function planLibrary(ours: LibrarySettings, loaded: readonly LoadedLibrary[]): LibraryPlan {
  const problems: string[] = [];
  let mine: LoadedLibrary | undefined;
  for (const lib of loaded) {
    const theirs = settingsOf(lib.code);
    if (lib.name === ours.namespace) {
      mine = lib;
      if (theirs === undefined) continue;
      for (const [key, variable] of SETTING_NAMES) {
        if (theirs[key] !== ours[key]) {
          problems.push(
            `${variable}: this gateway has ${JSON.stringify(ours[key])}, but Redis holds the library of HERALD_NAMESPACE ${JSON.stringify(ours.namespace)} built with ${JSON.stringify(theirs[key])}`,
          );
        }
      }
    } else if (theirs !== undefined && theirs.prefix === ours.prefix) {
      problems.push(
        `HERALD_CHANNEL_PREFIX: ${JSON.stringify(ours.prefix)} is already used by HERALD_NAMESPACE ${JSON.stringify(theirs.namespace)} on this Redis server (its recorders would take this deployment's messages); give each deployment its own prefix`,
      );
    }
  }
  if (problems.length > 0) return { action: 'refuse', problems };
  if (mine === undefined) return { action: 'load', replace: false };
  const theirs = settingsOf(mine.code);
  if (theirs === undefined || theirs.version < ours.version) return { action: 'load', replace: true };
  if (theirs.version === ours.version && mine.code !== functionLibrary(ours)) return { action: 'load', replace: true };
  return { action: 'keep' };
}

/** A history entry's or announcement's kind (j: JSON, t: text, anything else:
 *  unchecked) -> true: embed as JSON; false: as a string; undefined: check. */
export function isJsonKind(kind: string | undefined): boolean | undefined {
  return kind === 'j' ? true : kind === 't' ? false : undefined;
}

/** A recorded notification as announced on its topic's channel. */
export interface Announcement {
  offset: string;
  /** The offset's ms part: the entry's time on Redis's clock. */
  ts: number;
  epoch: string;
  json: boolean | undefined;
  id: string;
  /** The payload as published, still bytes. */
  payload: Buffer;
}

const SPACE = 0x20;
const DIGITS = /^[0-9]{1,9}$/;

/** Pure: the announce() format -> its parts; undefined when the bytes are not one
 *  (anyone with Redis access can PUBLISH on a topic's internal channel). */
export function decodeAnnouncement(message: Buffer): Announcement | undefined {
  const a = message.indexOf(SPACE);
  const b = a === -1 ? -1 : message.indexOf(SPACE, a + 1);
  const k = b === -1 ? -1 : message.indexOf(SPACE, b + 1);
  const c = k === -1 ? -1 : message.indexOf(SPACE, k + 1);
  if (c === -1 || k !== b + 2) return undefined;
  const lengthText = message.toString('latin1', k + 1, c);
  // Digits only: Number() also reads '0x1', '1e0' and '+1'.
  if (!DIGITS.test(lengthText)) return undefined;
  const idLength = Number(lengthText);
  const idEnd = c + 1 + idLength;
  if (!Number.isSafeInteger(idLength) || idLength < 1 || idEnd > message.length) return undefined;
  const offset = message.toString('latin1', 0, a);
  // The one check of the offset on this path (NaN for what is not one); the time is passed on.
  const ts = offsetMs(offset);
  if (Number.isNaN(ts)) return undefined;
  return {
    offset,
    ts,
    epoch: message.toString('latin1', a + 1, b),
    json: isJsonKind(String.fromCharCode(message[b + 1] as number)),
    id: message.toString('utf8', c + 1, idEnd),
    payload: message.subarray(idEnd),
  };
}

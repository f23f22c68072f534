// Stream offsets (`<ms>-<seq>`, Redis stream ids) as positions in a topic's history. Pure.
// The grammar and the comparison are the SDK's (client/src/grammar.ts): one definition
// for what a client may send and what Redis produces.
import { compareOffsets } from '@herald/client/grammar';

export { compareOffsets, isOffset } from '@herald/client/grammar';

/** The ms part: the entry's time on Redis's clock. */
export function offsetMs(offset: string): number {
  return Number(offset.slice(0, offset.indexOf('-')));
}

/**
 * Whether `offset` is after `prev`. Offsets from Redis have no leading zeros, so two of
 * the same length compare as strings (the hot path); others numerically.
 */
export function isAfter(offset: string, prev: string): boolean {
  return offset.length === prev.length ? offset > prev : compareOffsets(offset, prev) > 0;
}

// Stream offsets (`<ms>-<seq>`, Redis stream ids) as positions in a topic's history:
// the one place the gateway takes them apart, orders them or builds them. Pure.
// The grammar and the comparison are the SDK's (client/src/grammar.ts): one definition
// for what a client may send and what Redis produces.
import { compareOffsets, parseOffset } from '@herald/client/grammar';

export { compareOffsets, isOffset, parseOffset } from '@herald/client/grammar';

/** The ms part: the entry's time on Redis's clock; NaN for anything that is not an offset. */
export function offsetMs(offset: string): number {
  return parseOffset(offset)?.[0] ?? Number.NaN;
}

/**
 * Whether `offset` is after `prev` (both offsets). Two whose ms parts and seq parts
 * have the same number of digits each (the same length, the dash at the same place)
 * compare as strings: the hot path, as Redis's ms have 13 digits until 2286. Others
 * compare as numbers ('9-10' is before '10-1'), a RangeError for what is not an offset.
 */
export function isAfter(offset: string, prev: string): boolean {
  return offset.length === prev.length && offset.indexOf('-') === prev.indexOf('-') ? offset > prev : compareOffsets(offset, prev) > 0;
}

/** Whether the entry at `offset` was recorded at or after `ms` (Redis clock): `offset`
 *  >= `<ms>-0`, for any time, including those past what an offset can spell. */
export function isAtOrAfter(offset: string, ms: number): boolean {
  return offsetMs(offset) >= ms;
}

/**
 * The first offset at or after time `ms`: where a range read from a time starts
 * (XRANGE `<ms>-0`). A time before 0 starts at the beginning ('0-0'); a fraction of a
 * ms at the next ms. A RangeError for what is not a time (NaN, infinities) or is past
 * what Redis ids hold exactly as doubles (Number.MAX_SAFE_INTEGER).
 */
export function firstOffsetAt(ms: number): string {
  if (!Number.isFinite(ms) || ms > Number.MAX_SAFE_INTEGER) throw new RangeError(`not a time in ms: ${ms}`);
  return `${Math.max(0, Math.ceil(ms))}-0`;
}

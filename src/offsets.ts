// Stream offsets (`<ms>-<seq>`, Redis stream ids) as positions in a topic's history. Pure.

const OFFSET_RE = /^\d{1,15}-\d{1,15}$/;

/** 1-15 digits, a dash, 1-15 digits: what a client may send and Redis produces. */
export const isOffset = (s: string): boolean => OFFSET_RE.test(s);

/** The ms part: the entry's time on Redis's clock. */
export function offsetMs(offset: string): number {
  return Number(offset.slice(0, offset.indexOf('-')));
}

/** Offsets compared as (ms, seq), numerically: '999-0' is before '1000-0'. */
export function compareOffsets(a: string, b: string): number {
  const ai = a.indexOf('-');
  const bi = b.indexOf('-');
  const ms = Number(a.slice(0, ai)) - Number(b.slice(0, bi));
  return ms !== 0 ? ms : Number(a.slice(ai + 1)) - Number(b.slice(bi + 1));
}

/**
 * Whether `offset` is after `prev`. Offsets from Redis have no leading zeros, so two of
 * the same length compare as strings (the hot path); others numerically.
 */
export function isAfter(offset: string, prev: string): boolean {
  return offset.length === prev.length ? offset > prev : compareOffsets(offset, prev) > 0;
}

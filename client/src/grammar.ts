// The grammar of the names Herald's frames carry: topics and history offsets. Written
// once here and used by both sides: the SDK checks before it sends, the gateway
// (src/topics.ts, src/offsets.ts) checks what it receives. Pure, no DOM, no Node.

/** The characters a topic may hold. */
const TOPIC_CHARS = 'A-Za-z0-9:_.@-';

/** A topic: 1-128 of [A-Za-z0-9:_.@-] (a JSON Schema `pattern` too). */
export const TOPIC_PATTERN = `^[${TOPIC_CHARS}]{1,128}$`;
const TOPIC_RE = new RegExp(TOPIC_PATTERN);
/** What a grant's prefix (`feed:*` without its `*`) may be: a topic one character short. */
const TOPIC_PREFIX_RE = new RegExp(`^[${TOPIC_CHARS}]{1,127}$`);

/** The topic grammar (1-128 of `[A-Za-z0-9:_.@-]`). */
export function isTopic(s: string): boolean {
  return TOPIC_RE.test(s);
}

/** A grant's prefix: what stands before the `*` of `feed:*`. */
export function isTopicPrefix(s: string): boolean {
  return TOPIC_PREFIX_RE.test(s);
}

/** A notification id as ack/mark_read accept it: 1-128 characters. */
export function isNotificationId(s: string): boolean {
  return s.length >= 1 && s.length <= 128;
}

/** A history position (a Redis stream id): `<ms>-<seq>`, 1-15 digits each (exact as doubles; a JSON Schema `pattern` too). */
export const OFFSET_PATTERN = '^[0-9]{1,15}-[0-9]{1,15}$';
const OFFSET_RE = new RegExp(OFFSET_PATTERN);

export function isOffset(s: string): boolean {
  return OFFSET_RE.test(s);
}

/** `<ms>-<seq>` as two numbers, or undefined for anything that is not an offset. */
export function parseOffset(offset: string): [ms: number, seq: number] | undefined {
  if (!isOffset(offset)) return undefined;
  const dash = offset.indexOf('-');
  return [Number(offset.slice(0, dash)), Number(offset.slice(dash + 1))];
}

/**
 * Negative, zero or positive as `a` is before, at or after `b`: by ms, then by seq, as
 * numbers ('999-0' is before '1000-0', which a string comparison gets wrong).
 * Throws a RangeError on something that is not an offset.
 */
export function compareOffsets(a: string, b: string): number {
  const pa = parseOffset(a);
  const pb = parseOffset(b);
  if (pa === undefined || pb === undefined) throw new RangeError(`not a stream offset: ${JSON.stringify(pa === undefined ? a : b)}`);
  return pa[0] !== pb[0] ? pa[0] - pb[0] : pa[1] - pb[1];
}

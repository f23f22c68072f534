// What a published payload is, before it becomes a frame: JSON or text, its own id,
// its size. Pure, with no imports, so the CLI and the recorder can use it without
// loading the protocol's schemas.

/** The longest id a payload may give itself (PROTOCOL.md, Notifications). */
const MAX_PAYLOAD_ID = 128;

/** Whether a payload is JSON: embedded as is in `data` when it is, as a string when not. */
export function isJson(payload: string): boolean {
  try {
    JSON.parse(payload);
    return true;
  } catch {
    return false;
  }
}

/** A payload's own id: a string of 1-128 characters in `id` of an object payload (parsed), else undefined. */
export function payloadId(parsed: unknown): string | undefined {
  const own =
    parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>)['id'] : undefined;
  return typeof own === 'string' && own.length > 0 && own.length <= MAX_PAYLOAD_ID ? own : undefined;
}

/** String length is a lower bound on UTF-8 bytes; only near the limit count exactly. */
export function isTooLarge(payload: string | Buffer, maxBytes: number): boolean {
  if (typeof payload !== 'string') return payload.length > maxBytes;
  return payload.length > maxBytes || (payload.length * 3 > maxBytes && Buffer.byteLength(payload) > maxBytes);
}

// Herald's wire protocol (docs/PROTOCOL.md): frame types, the ajv schemas that
// validate client frames (compiled once, at import), encoders. The codes (error frames,
// closes) are the SDK's table, @herald/client/codes, shared with the clients, and so
// are the client frames' types (@herald/client/protocol).
import { ErrorFrame, type ErrorFrameName } from '@herald/client/codes';
import { OFFSET_PATTERN } from '@herald/client/grammar';
import {
  type ClientFrame,
  type ClientFrameType,
  DEFAULT_HISTORY_LIMIT,
  MAX_ACK_IDS,
  MAX_HISTORY_LIMIT,
  type NotificationTarget,
  type RequestId,
} from '@herald/client/protocol';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { TOPIC_PATTERN } from './topics.js';

export type { ClientFrame, ClientFrameType, RequestId };
export { DEFAULT_HISTORY_LIMIT, MAX_ACK_IDS, MAX_HISTORY_LIMIT };

/** The `error` frame codes by name (from ErrorFrame; the metric labels, for one). */
export const ErrorCode = Object.fromEntries(Object.entries(ErrorFrame).map(([name, e]) => [name, e.code])) as {
  readonly [N in ErrorFrameName]: (typeof ErrorFrame)[N]['code'];
};
export type ErrorCode = (typeof ErrorCode)[ErrorFrameName];

export type ServerFrame =
  | { type: 'connected'; connectionId: string; userId: string; topics: string[]; heartbeatMs: number; serverTime: number; epoch?: string }
  | { type: 'pong'; id?: RequestId; ts: number }
  /** `server`: the control API subscribed or unsubscribed the connection (no `id` then). */
  | { type: 'subscribed'; topic: string; id?: RequestId; server?: true }
  | { type: 'unsubscribed'; topic: string; id?: RequestId; server?: true }
  | ({ type: 'acked'; id: RequestId } & NotificationTarget)
  | ({ type: 'marked_read'; id: RequestId } & NotificationTarget)
  | { type: 'authenticated'; expiresAt: number; topics: string[]; revoked: string[]; id?: RequestId }
  | { type: 'resumed'; topics: Record<string, { recovered: boolean }>; id?: RequestId }
  /** Built by encodeHistoryReply (the notifications are stored bytes, not objects); here for the type. */
  | {
      type: 'history';
      topic: string;
      epoch: string;
      notifications: Array<{ topic: string; id: string; ts: number; offset: string; epoch: string; data: unknown }>;
      id?: RequestId;
    }
  | { type: 'error'; code: ErrorCode; message: string; id?: RequestId; retryAfterMs?: number; reason?: string };

export function encode(frame: ServerFrame): string {
  return JSON.stringify(frame);
}

/**
 * The notification frame, built by concatenation around `dataJson` (already valid JSON):
 * the payload is never parsed and re-serialised just to be wrapped.
 */
export function encodeNotification(
  topic: string,
  id: string,
  ts: number,
  dataJson: string,
  position?: { offset: string; epoch: string; replayed?: boolean },
): string {
  const head = `${NOTIFICATION_HEAD}"topic":${JSON.stringify(topic)},"id":${JSON.stringify(id)},"ts":${ts}`;
  if (position === undefined) return `${head},"data":${dataJson}}`;
  // Offsets (`<ms>-<seq>`) and epochs (hex) need no escaping.
  const replayed = position.replayed === true ? ',"replayed":true' : '';
  return `${head},"offset":"${position.offset}","epoch":"${position.epoch}"${replayed},"data":${dataJson}}`;
}

/** What every notification frame starts with (encodeNotification): cut off to make a history reply's entry. */
const NOTIFICATION_HEAD = '{"type":"notification",';

/**
 * The reply to `history`, around notification frames as encodeNotification built them
 * (from stored bytes, with their positions, not replayed): each becomes an entry
 * without its `type`. The payloads are never parsed again.
 */
export function encodeHistoryReply(topic: string, epoch: string, notificationFrames: readonly string[], id: RequestId | undefined): string {
  const entries = notificationFrames.map((f) => `{${f.slice(NOTIFICATION_HEAD.length)}`).join(',');
  // Epochs (hex) need no escaping.
  const tail = id === undefined ? '' : `,"id":${JSON.stringify(id)}`;
  return `{"type":"history","topic":${JSON.stringify(topic)},"epoch":"${epoch}","notifications":[${entries}]${tail}}`;
}

const ID_SCHEMA = {
  anyOf: [
    { type: 'string', minLength: 1, maxLength: 64 },
    { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  ],
};
const TOPIC_SCHEMA = { type: 'string', pattern: TOPIC_PATTERN };
const NOTIFICATION_ID_SCHEMA = { type: 'string', minLength: 1, maxLength: 128 };
const OFFSET_SCHEMA = { type: 'string', pattern: OFFSET_PATTERN };

/** `props` are required, `optional` not; `extra` adds keywords (a oneOf, a not) at the frame's level. */
function frameSchema(
  type: ClientFrameType,
  props: Record<string, object>,
  optional: Record<string, object> = {},
  extra: object = {},
): object {
  return {
    type: 'object',
    properties: { type: { const: type }, id: ID_SCHEMA, ...props, ...optional },
    required: ['type', ...Object.keys(props)],
    additionalProperties: false,
    ...extra,
  };
}

/** A frame-level rule's schema: `names` are all present (their schemas are the frame's; ajv's strict mode wants them named here too). */
function requires(...names: string[]): object {
  return { properties: Object.fromEntries(names.map((n) => [n, true])), required: names };
}

/**
 * `ack` and `mark_read`: one id, or a list of 1 to MAX_ACK_IDS (exactly one of the
 * two). Repeats in a list are allowed (an SDK coalescing calls need not de-duplicate
 * them): the gateway records each distinct id once and echoes the list as sent.
 */
function notificationEventSchema(type: 'ack' | 'mark_read'): object {
  return frameSchema(
    type,
    {},
    {
      notificationId: NOTIFICATION_ID_SCHEMA,
      notificationIds: { type: 'array', minItems: 1, maxItems: MAX_ACK_IDS, items: NOTIFICATION_ID_SCHEMA },
    },
    { oneOf: [requires('notificationId'), requires('notificationIds')] },
  );
}

/**
 * The frame-level rules a failed `oneOf` or `not` stands for, worded for the error
 * message (ajv's own words, "must match exactly one schema in oneOf", say nothing).
 */
const FRAME_RULES: ReadonlyMap<string, string> = new Map([
  ['ack', 'exactly one of "notificationId" and "notificationIds"'],
  ['mark_read', 'exactly one of "notificationId" and "notificationIds"'],
  ['history', 'at most one of "before" and "after"'],
]);

const ajv = new Ajv({ allErrors: false, strict: true });
const VALIDATORS: ReadonlyMap<string, ValidateFunction> = new Map<ClientFrameType, ValidateFunction>([
  ['ping', ajv.compile(frameSchema('ping', {}))],
  ['subscribe', ajv.compile(frameSchema('subscribe', { topic: TOPIC_SCHEMA }))],
  ['unsubscribe', ajv.compile(frameSchema('unsubscribe', { topic: TOPIC_SCHEMA }))],
  ['ack', ajv.compile(notificationEventSchema('ack'))],
  ['mark_read', ajv.compile(notificationEventSchema('mark_read'))],
  [
    'history',
    ajv.compile(
      frameSchema(
        'history',
        { topic: TOPIC_SCHEMA },
        { limit: { type: 'integer', minimum: 1, maximum: MAX_HISTORY_LIMIT }, before: OFFSET_SCHEMA, after: OFFSET_SCHEMA },
        { not: requires('before', 'after') },
      ),
    ),
  ],
  // The token's own size limit (HERALD_MAX_TOKEN_BYTES) is the verifier's to apply.
  ['auth', ajv.compile(frameSchema('auth', { token: { type: 'string', minLength: 1, maxLength: 65536 } }))],
  [
    'resume',
    ajv.compile(
      frameSchema('resume', {
        epoch: { type: 'string', minLength: 1, maxLength: 64 },
        topics: {
          type: 'object',
          maxProperties: 256,
          propertyNames: TOPIC_SCHEMA,
          additionalProperties: {
            oneOf: [
              {
                type: 'object',
                properties: { offset: OFFSET_SCHEMA },
                required: ['offset'],
                additionalProperties: false,
              },
              {
                type: 'object',
                properties: { since: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } },
                required: ['since'],
                additionalProperties: false,
              },
            ],
          },
        },
      }),
    ),
  ],
]);

/**
 * A short, bounded description of the first schema error (never echoing values beyond
 * a 32-character property name); `otherwise` words the remaining keywords.
 */
export function describeSchemaError(e: ErrorObject | undefined, otherwise: (e: ErrorObject | undefined) => string): string {
  if (e?.keyword === 'additionalProperties') {
    return `unexpected property ${JSON.stringify(String(e.params['additionalProperty']).slice(0, 32))}`;
  }
  if (e?.keyword === 'required') return `missing property ${JSON.stringify(e.params['missingProperty'])}`;
  return otherwise(e);
}

export type Decoded =
  | { kind: 'frame'; frame: ClientFrame }
  /** Not JSON text at all: the connection is closed with 1003. */
  | { kind: 'not_json' }
  | { kind: 'invalid'; message: string; id: RequestId | undefined }
  | { kind: 'unknown_type'; message: string; id: RequestId | undefined };

/** The id to echo in a reply, if the (possibly invalid) frame carried a usable one. */
function echoableId(o: Record<string, unknown>): RequestId | undefined {
  const id = o['id'];
  // Counted in code points, as the schema (ajv) counts maxLength.
  if (typeof id === 'string' && id.length >= 1 && (id.length <= 64 || [...id].length <= 64)) return id;
  if (typeof id === 'number' && Number.isSafeInteger(id) && id >= 0) return id;
  return undefined;
}

export function decodeClientFrame(text: string): Decoded {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'not_json' };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { kind: 'invalid', message: 'a frame must be a JSON object', id: undefined };
  }
  const o = value as Record<string, unknown>;
  const id = echoableId(o);
  const type = o['type'];
  if (typeof type !== 'string') return { kind: 'invalid', message: '"type" must be a string', id };
  const validate = VALIDATORS.get(type);
  if (validate === undefined) {
    return { kind: 'unknown_type', message: `unknown frame type ${JSON.stringify(type.slice(0, 32))}`, id };
  }
  if (!validate(o)) {
    const detail = describeSchemaError(validate.errors?.[0], (e) => {
      const rule = e?.instancePath === '' && (e.keyword === 'oneOf' || e.keyword === 'not') ? FRAME_RULES.get(type) : undefined;
      if (rule !== undefined) return rule;
      const where = e === undefined || e.instancePath === '' ? 'frame' : e.instancePath.slice(1);
      return `${where} ${e?.message ?? 'is invalid'}`;
    });
    return { kind: 'invalid', message: `${type}: ${detail}`, id };
  }
  return { kind: 'frame', frame: o as ClientFrame };
}

// Herald's wire protocol as the client sees it (docs/PROTOCOL.md): the frame types in
// both directions, the close codes the client acts on, and a decoder that turns a text
// frame into a typed ServerFrame. The one place the SDK defines frames (the names they
// carry follow grammar.ts).

import { type ErrorCode, ServerClose } from './codes.js';
import { isOffset } from './grammar.js';

export { isNotificationId, isOffset, isTopic } from './grammar.js';

/** The subprotocol the gateway speaks; a browser must offer it beside `bearer.<jwt>`. */
export const SUBPROTOCOL = 'herald.v1';
/** Prefix of the subprotocol entry that carries the token (browsers cannot set headers). */
export const BEARER_PREFIX = 'bearer.';

/** Echoed verbatim by the server: a string of 1-64 characters or a non-negative safe integer. */
export type RequestId = string | number;

/** Ids one `ack` or `mark_read` frame may carry in its list form (`notificationIds`), at most. */
export const MAX_ACK_IDS = 100;
/** Entries one `history` request may ask for (`limit`), at most. */
export const MAX_HISTORY_LIMIT = 100;
/** Entries a `history` request without `limit` is answered with. */
export const DEFAULT_HISTORY_LIMIT = 20;

/**
 * What an `ack` or `mark_read` frame is about: one notification (`notificationId`), or
 * a list of 1 to MAX_ACK_IDS (`notificationIds`, one frame and one reply for them all).
 */
export type NotificationTarget =
  | { notificationId: string; notificationIds?: never }
  | { notificationIds: string[]; notificationId?: never };

export type ClientFrame =
  | { type: 'ping'; id?: RequestId }
  | { type: 'subscribe'; topic: string; id?: RequestId }
  | { type: 'unsubscribe'; topic: string; id?: RequestId }
  | ({ type: 'ack'; id?: RequestId } & NotificationTarget)
  | ({ type: 'mark_read'; id?: RequestId } & NotificationTarget)
  /**
   * The stored notifications of a topic the connection holds or its token grants, oldest
   * first: the newest `limit` (1 to MAX_HISTORY_LIMIT, default DEFAULT_HISTORY_LIMIT), or
   * the `limit` just before `before` or just after `after` (offsets, `<ms>-<seq>`,
   * exclusive; at most one of the two). Gateways without history answer `history_unavailable`.
   */
  | { type: 'history'; topic: string; limit?: number; before?: string; after?: string; id?: RequestId }
  /** Re-authentication on an open connection (gateways that support it; others answer `unknown_type`). */
  | { type: 'auth'; token: string; id?: RequestId }
  /**
   * Replay what was missed on topics the connection holds (at most 256 per frame): after
   * an entry (`offset`, `<ms>-<seq>`) or from a time (`since`, ms), in `epoch`'s dataset.
   */
  | { type: 'resume'; epoch: string; topics: Record<string, { offset: string } | { since: number }>; id?: RequestId };

export type ClientFrameType = ClientFrame['type'];

/** The error codes PROTOCOL.md lists (codes.ts, ErrorFrame); a newer server may send others, so the type stays open. */
export type ServerErrorCode = ErrorCode;

/** The `connected` frame: who this connection is, and how often to ping. */
export interface Session {
  connectionId: string;
  userId: string;
  /** The initial topics the server subscribed the connection to (user:, role:, system). */
  topics: string[];
  /** Interval for app-level pings in ms; 0 = the server has no idle timeout. */
  heartbeatMs: number;
  /** Server clock, ms since the epoch. */
  serverTime: number;
  /** The history dataset's name, when the gateway keeps history (Redis mode); it changes when Redis loses its data. */
  epoch?: string;
}

export interface Notification {
  topic: string;
  id: string;
  /** Receipt time at the gateway, ms since the epoch. */
  ts: number;
  /** The published payload: any JSON value. */
  data: unknown;
  /** With history on: the notification's entry in its topic's history, `<ms>-<seq>` (compare as numbers: see compareOffsets). */
  offset?: string;
  /** With history on: the dataset `offset` belongs to. */
  epoch?: string;
  /** True when sent from history (a `resume` replay or a gateway's gap fill), not live. */
  replayed?: boolean;
}

/** A notification as a `history` reply carries it: always with its position. */
export type StoredNotification = Omit<Notification, 'offset' | 'epoch' | 'replayed'> & { offset: string; epoch: string };

/** Per topic: whether everything missed was replayed (false: nothing was; reload the topic from your backend). */
export type ResumedTopics = Record<string, { recovered: boolean }>;

export type ServerFrame =
  | ({ type: 'connected' } & Session)
  | ({ type: 'notification' } & Notification)
  | { type: 'pong'; id?: RequestId; ts: number }
  /**
   * Reply to `subscribe`/`unsubscribe`, or, with `server: true` and no id, the gateway's
   * own change of what the connection holds (`POST /control/subscribe`, `/control/unsubscribe`).
   */
  | { type: 'subscribed'; topic: string; id?: RequestId; server?: true }
  | { type: 'unsubscribed'; topic: string; id?: RequestId; server?: true }
  /** Reply to `ack`/`mark_read`, in the form the request used (`notificationId` or `notificationIds`). */
  | ({ type: 'acked'; id?: RequestId } & NotificationTarget)
  | ({ type: 'marked_read'; id?: RequestId } & NotificationTarget)
  /** Reply to `history`: the entries found, oldest first (none: an empty list), in dataset `epoch`. */
  | { type: 'history'; topic: string; epoch: string; notifications: StoredNotification[]; id?: RequestId }
  /** Reply to `auth`: the new expiry, the topics held now (when sent) and those the new token no longer grants. */
  | { type: 'authenticated'; expiresAt: number; topics?: string[]; revoked: string[]; id?: RequestId }
  /** Reply to `resume` (after the replayed notifications), or unsolicited (no id) when a gateway could not fill its own gap. */
  | { type: 'resumed'; topics: ResumedTopics; id?: RequestId }
  /** `reason` details some codes (auth_failed: why the token was refused). */
  | { type: 'error'; code: ServerErrorCode | (string & {}); message: string; id?: RequestId; retryAfterMs?: number; reason?: string };

/** The frames a request can be answered with, by request type (besides `error`). */
export interface ReplyTypes {
  ping: Extract<ServerFrame, { type: 'pong' }>;
  subscribe: Extract<ServerFrame, { type: 'subscribed' }>;
  unsubscribe: Extract<ServerFrame, { type: 'unsubscribed' }>;
  ack: Extract<ServerFrame, { type: 'acked' }>;
  mark_read: Extract<ServerFrame, { type: 'marked_read' }>;
  history: Extract<ServerFrame, { type: 'history' }>;
  auth: Extract<ServerFrame, { type: 'authenticated' }>;
  resume: Extract<ServerFrame, { type: 'resumed' }>;
}

export const REPLY_TYPE: { readonly [K in ClientFrameType]: ReplyTypes[K]['type'] } = {
  ping: 'pong',
  subscribe: 'subscribed',
  unsubscribe: 'unsubscribed',
  ack: 'acked',
  mark_read: 'marked_read',
  history: 'history',
  auth: 'authenticated',
  resume: 'resumed',
};

/**
 * Close codes by name: the ones the client sends itself, and the gateway's (codes.ts,
 * ServerClose, has each with its reason text and what the client does after it).
 */
export const Close = {
  Normal: 1000,
  /** `shutting_down`: reconnect (with backoff), to another gateway. */
  GoingAway: ServerClose.ShuttingDown.code,
  /** No close frame: dropped connection, refused upgrade (browsers), idle timeout. */
  Abnormal: 1006,
  /** Policy: `rate_limited` (come back after a pause), or `token_expired` (come back with a fresh token). */
  PolicyViolation: ServerClose.TokenExpired.code,
  /** Sent by the client when it gives up on a socket (no pong, slow open); 4000-4999 is for applications,
   *  and 4000-4099 are the gateway's (4000 `disconnected`, 4001 `reconnect`). */
  ClientGaveUp: 4100,
} as const;

type Obj = Record<string, unknown>;

const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isId = (v: unknown): v is RequestId => isStr(v) || (isNum(v) && Number.isSafeInteger(v));
const isStrArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `{ id }` when the frame carries a usable id, `{}` otherwise (exactOptionalPropertyTypes). */
function withId(o: Obj): { id?: RequestId } {
  return isId(o['id']) ? { id: o['id'] } : {};
}

/**
 * A text frame as a typed ServerFrame, or undefined for anything the client does not
 * understand: not JSON, not an object, an unknown type (PROTOCOL.md: clients ignore
 * them), or a known type missing a field. Unknown properties are dropped.
 */
export function decodeServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const o = value as Obj;
  const type = o['type'];
  switch (type) {
    case 'connected': {
      const { connectionId, userId, topics, heartbeatMs, serverTime, epoch } = o;
      if (!isStr(connectionId) || !isStr(userId) || !isStrArray(topics) || !isNum(heartbeatMs) || !isNum(serverTime)) return undefined;
      return { type, connectionId, userId, topics, heartbeatMs, serverTime, ...(isStr(epoch) && epoch !== '' ? { epoch } : {}) };
    }
    case 'notification': {
      const { topic, id, ts, offset, epoch } = o;
      if (!isStr(topic) || !isStr(id) || !isNum(ts) || !('data' in o)) return undefined;
      // A position is kept only whole and well-formed: an offset without its epoch cannot be resumed from.
      const position = isStr(offset) && isOffset(offset) && isStr(epoch) && epoch !== '' ? { offset, epoch } : {};
      return { type, topic, id, ts, ...position, ...(o['replayed'] === true ? { replayed: true } : {}), data: o['data'] };
    }
    case 'pong':
      return isNum(o['ts']) ? { type, ts: o['ts'], ...withId(o) } : undefined;
    case 'subscribed':
    case 'unsubscribed':
      // `server` is true or absent: anything else is no claim that the server acted on its own.
      return isStr(o['topic']) ? { type, topic: o['topic'], ...withId(o), ...(o['server'] === true ? { server: true } : {}) } : undefined;
    case 'acked':
    case 'marked_read': {
      const { notificationId, notificationIds } = o;
      if (isStr(notificationId)) return { type, notificationId, ...withId(o) };
      return isStrArray(notificationIds) ? { type, notificationIds, ...withId(o) } : undefined;
    }
    case 'history': {
      const { topic, epoch, notifications } = o;
      if (!isStr(topic) || !isStr(epoch) || !Array.isArray(notifications)) return undefined;
      const stored: StoredNotification[] = [];
      for (const n of notifications) {
        // A reply with one entry that is not a whole notification is not understood at all:
        // a partial page would look like the end of the history.
        if (!isObj(n)) return undefined;
        const { topic: t, id, ts, offset, epoch: e } = n;
        if (!isStr(t) || !isStr(id) || !isNum(ts) || !('data' in n) || !isStr(offset) || !isOffset(offset) || !isStr(e) || e === '') {
          return undefined;
        }
        stored.push({ topic: t, id, ts, offset, epoch: e, data: n['data'] });
      }
      return { type, topic, epoch, notifications: stored, ...withId(o) };
    }
    case 'authenticated': {
      const { expiresAt, revoked, topics } = o;
      if (!isNum(expiresAt)) return undefined;
      return { type, expiresAt, ...(isStrArray(topics) ? { topics } : {}), revoked: isStrArray(revoked) ? revoked : [], ...withId(o) };
    }
    case 'resumed': {
      const { topics } = o;
      if (!isObj(topics)) return undefined;
      const entries = Object.entries(topics);
      if (!entries.every(([, v]) => isObj(v) && typeof v['recovered'] === 'boolean')) return undefined;
      // fromEntries defines each key: a topic named `__proto__` stays a plain key.
      return {
        type,
        topics: Object.fromEntries(entries.map(([k, v]) => [k, { recovered: (v as Obj)['recovered'] as boolean }])),
        ...withId(o),
      };
    }
    case 'error': {
      const { code, message, retryAfterMs, reason } = o;
      if (!isStr(code)) return undefined;
      return {
        type,
        code,
        message: isStr(message) ? message : '',
        ...withId(o),
        ...(isNum(retryAfterMs) ? { retryAfterMs } : {}),
        ...(isStr(reason) ? { reason } : {}),
      };
    }
    default:
      return undefined;
  }
}

export function encodeClientFrame(frame: ClientFrame): string {
  return JSON.stringify(frame);
}

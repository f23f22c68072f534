// The control API and presence reads: GET /presence and POST /control/{disconnect,
// unsubscribe,subscribe,revoke} on any gateway, acting on every gateway. In Redis
// mode an action is published on the user's control channel, which exactly the
// gateways holding a connection of the user subscribe (presence.ts holds it while
// the user has one): a control message costs nothing on the other gateways, however
// many there are. Each gateway that hears it acts on its own sockets (apply). In
// embedded mode the action is applied here at once.
import { createHash, timingSafeEqual } from 'node:crypto';
import { type HttpRefusal, Refusal } from '@herald/client/codes';
import type { Config } from './config.js';
import type { Connections } from './connection.js';
import { BodyTooLarge, type Exchange, readBody, refuse, reply, track } from './http.js';
import type { Names } from './keys.js';
import type { Logger } from './log.js';
import type { ControlAction, Metrics } from './metrics.js';
import type { Presence } from './presence.js';
import { isTopic, isValidName } from './topics.js';
import type { HttpRequest, HttpResponse } from './uws.js';

/** A control message, as published on `<ns>:control:{user:<id>}` (the user is the channel's). */
export type ControlMessage =
  | { action: 'disconnect'; connectionId?: string; reconnect?: boolean }
  | { action: 'unsubscribe'; topic: string }
  | { action: 'subscribe'; topic: string }
  | { action: 'revoke'; before: number };

/** A control request's body: the message and the user it is for. */
export type ControlRequest = { user: string } & ControlMessage;

export const MAX_CONTROL_BODY_BYTES = 4096;
/** `user` and `topic` parameters of one presence query, at most. */
export const MAX_PRESENCE_QUERY = 100;
const CONNECTION_ID_RE = /^[A-Za-z0-9-]{1,64}$/;

/** What each action's body may hold besides `user` (and `action`, which the path gives). */
const FIELDS: { readonly [A in ControlAction]: readonly string[] } = {
  disconnect: ['connectionId', 'reconnect'],
  unsubscribe: ['topic'],
  subscribe: ['topic'],
  revoke: [],
};

type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** Pure: a control body -> the request, or why it is refused (400 invalid_request). */
export function parseControlBody(action: ControlAction, body: unknown): Parsed<ControlRequest> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: false, message: 'body must be a JSON object' };
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) {
    if (k !== 'user' && !FIELDS[action].includes(k)) return { ok: false, message: `unexpected property ${JSON.stringify(k)}` };
  }
  const { user } = b;
  if (typeof user !== 'string' || !isValidName(user)) return { ok: false, message: 'user must be 1-123 of [A-Za-z0-9_.@-]' };
  switch (action) {
    case 'disconnect': {
      const { connectionId, reconnect } = b;
      if (connectionId !== undefined && (typeof connectionId !== 'string' || !CONNECTION_ID_RE.test(connectionId))) {
        return { ok: false, message: 'connectionId must be 1-64 of [A-Za-z0-9-]' };
      }
      if (reconnect !== undefined && typeof reconnect !== 'boolean') return { ok: false, message: 'reconnect must be true or false' };
      return {
        ok: true,
        value: {
          user,
          action,
          ...(connectionId !== undefined ? { connectionId } : {}),
          ...(reconnect === true ? { reconnect: true } : {}),
        },
      };
    }
    case 'unsubscribe':
    case 'subscribe': {
      const { topic } = b;
      if (typeof topic !== 'string' || !isTopic(topic)) return { ok: false, message: 'topic must be 1-128 of [A-Za-z0-9:_.@-]' };
      return { ok: true, value: { user, action, topic } };
    }
    case 'revoke':
      return { ok: true, value: { user, action, before: Math.floor(Date.now() / 1000) } };
  }
}

/** Pure: a presence query string -> the users and topics asked, or why it is refused. */
export function parsePresenceQuery(query: string): Parsed<{ users: string[]; topics: string[] }> {
  const users: string[] = [];
  const topics: string[] = [];
  const params = new URLSearchParams(query);
  let n = 0;
  for (const [k, v] of params) {
    if (++n > MAX_PRESENCE_QUERY) return { ok: false, message: `at most ${MAX_PRESENCE_QUERY} user and topic parameters` };
    if (k === 'user') {
      if (!isValidName(v)) return { ok: false, message: 'user must be 1-123 of [A-Za-z0-9_.@-]' };
      if (!users.includes(v)) users.push(v);
    } else if (k === 'topic') {
      if (!isTopic(v)) return { ok: false, message: 'topic must be 1-128 of [A-Za-z0-9:_.@-]' };
      if (!topics.includes(v)) topics.push(v);
    } else {
      return { ok: false, message: `unexpected parameter ${JSON.stringify(k)}` };
    }
  }
  if (n === 0) return { ok: false, message: 'ask for at least one user or topic' };
  return { ok: true, value: { users, topics } };
}

/** A control message heard on a channel -> the message; undefined when it is not one of ours. */
export function decodeControlMessage(text: string): ControlMessage | undefined {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null) return undefined;
  const o = m as Record<string, unknown>;
  switch (o['action']) {
    case 'disconnect': {
      const { connectionId, reconnect } = o;
      if (connectionId !== undefined && typeof connectionId !== 'string') return undefined;
      return {
        action: 'disconnect',
        ...(typeof connectionId === 'string' ? { connectionId } : {}),
        ...(reconnect === true ? { reconnect: true } : {}),
      };
    }
    case 'unsubscribe':
    case 'subscribe':
      return typeof o['topic'] === 'string' && isTopic(o['topic']) ? { action: o['action'], topic: o['topic'] } : undefined;
    case 'revoke':
      return typeof o['before'] === 'number' && Number.isFinite(o['before']) ? { action: 'revoke', before: o['before'] } : undefined;
    default:
      return undefined;
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export interface ControlDeps {
  config: Config;
  presence: Presence;
  connections: Connections;
  /** Redis mode: publishes a control message on the user's channel; resolves with the gateways that heard it. */
  publish: ((userId: string, message: string) => Promise<number>) | undefined;
  names: Names;
  metrics: Metrics;
  log: Logger;
}

export function createControl(deps: ControlDeps) {
  const { config, presence, connections, metrics } = deps;
  const clog = deps.log.child({ component: 'control' });
  const controlDigest = config.controlKey === undefined ? undefined : digest(config.controlKey);
  const publishDigest = config.publishKey === undefined ? undefined : digest(config.publishKey);

  /** Which key the Authorization header holds: compared in constant time, as digests. */
  function keyOf(authorization: string): 'control' | 'publish' | undefined {
    const m = /^Bearer[ \t]+(\S+)$/i.exec(authorization);
    if (m?.[1] === undefined) return undefined;
    const d = digest(m[1]);
    if (controlDigest !== undefined && timingSafeEqual(d, controlDigest)) return 'control';
    if (publishDigest !== undefined && timingSafeEqual(d, publishDigest)) return 'publish';
    return undefined;
  }

  /** Acts on this gateway's sockets of the user; the number acted on. */
  function apply(userId: string, m: ControlMessage): number {
    let n = 0;
    if (m.action === 'revoke') presence.noteRevocation(userId, m.before);
    for (const ws of [...presence.sockets(userId)]) {
      const ud = ws.getUserData();
      if (ud.closed) continue;
      let acted = false;
      ws.cork(() => {
        switch (m.action) {
          case 'disconnect':
            if (m.connectionId === undefined || m.connectionId === ud.connectionId)
              acted = connections.disconnect(ws, m.reconnect === true);
            break;
          case 'revoke':
            acted = ud.identity.issuedAt < m.before && connections.revoke(ws);
            break;
          case 'subscribe':
            acted = connections.serverSubscribe(ws, m.topic);
            break;
          case 'unsubscribe':
            acted = connections.serverUnsubscribe(ws, m.topic);
            break;
        }
      });
      if (acted) n++;
    }
    metrics.controlApplied(m.action, n);
    if (n > 0) clog.info({ userId, action: m.action, connections: n }, 'control action applied');
    return n;
  }

  /** The Redis side: a message on a user's control channel. */
  function onMessage(userId: string, message: Buffer): void {
    const m = decodeControlMessage(message.toString());
    if (m === undefined) {
      clog.warn({ userId, bytes: message.length }, 'not a control message: dropped');
      return;
    }
    apply(userId, m);
  }

  /** Sends the request to every gateway (Redis) or applies it here; resolves with how many gateways acted. */
  async function dispatch(r: ControlRequest): Promise<{ gateways: number; revokedBefore?: number }> {
    const { user, ...message } = r;
    if (deps.publish === undefined) {
      const held = presence.holds(user);
      apply(user, message);
      return { gateways: held ? 1 : 0, ...(message.action === 'revoke' ? { revokedBefore: message.before } : {}) };
    }
    if (message.action === 'revoke') {
      // Stored before it is published: an upgrade checked after this sees it.
      const { gateways, before } = await presence.revoke(user, deps.names.control(user));
      return { gateways, revokedBefore: before };
    }
    return { gateways: await deps.publish(user, JSON.stringify(message)) };
  }

  async function handleControl(action: ControlAction, ex: Exchange, authorization: string, contentLength: string): Promise<void> {
    const fail = (refusal: HttpRefusal, extra?: Readonly<Record<string, unknown>>): void => {
      metrics.controlRequest(action, refusal.status);
      refuse(ex, refusal, extra);
    };
    const key = keyOf(authorization);
    if (key === undefined) return fail(Refusal.InvalidControlKey);
    if (key !== 'control') return fail(Refusal.ControlKeyRequired);
    if (contentLength !== '' && Number(contentLength) > MAX_CONTROL_BODY_BYTES)
      return fail(Refusal.BodyTooLarge, { limit: MAX_CONTROL_BODY_BYTES });
    let body: Buffer;
    try {
      body = await readBody(ex, MAX_CONTROL_BODY_BYTES);
    } catch (err) {
      if (err instanceof BodyTooLarge) fail(Refusal.BodyTooLarge, { limit: MAX_CONTROL_BODY_BYTES });
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      return fail(Refusal.InvalidJson, { message: 'body is not valid JSON' });
    }
    const parsed = parseControlBody(action, json);
    if (!parsed.ok) return fail(Refusal.InvalidRequest, { message: parsed.message });
    let result: Awaited<ReturnType<typeof dispatch>>;
    try {
      result = await dispatch(parsed.value);
    } catch (err) {
      clog.warn({ err, action }, 'control message not sent');
      return fail(Refusal.RedisUnavailable);
    }
    clog.info({ action, userId: parsed.value.user, gateways: result.gateways }, 'control request');
    metrics.controlRequest(action, 200);
    reply(ex, 200, { user: parsed.value.user, ...result });
  }

  async function handlePresence(ex: Exchange, authorization: string, query: string): Promise<void> {
    const fail = (refusal: HttpRefusal, extra?: Readonly<Record<string, unknown>>): void => {
      metrics.controlRequest('presence', refusal.status);
      refuse(ex, refusal, extra);
    };
    if (keyOf(authorization) === undefined) return fail(Refusal.InvalidControlKey);
    const parsed = parsePresenceQuery(query);
    if (!parsed.ok) return fail(Refusal.InvalidRequest, { message: parsed.message });
    let counts: Awaited<ReturnType<Presence['read']>>;
    try {
      counts = await presence.read(parsed.value.users, parsed.value.topics);
    } catch (err) {
      clog.warn({ err }, 'presence read failed');
      return fail(Refusal.RedisUnavailable);
    }
    const users: Record<string, { online: boolean; connections: number }> = Object.create(null) as Record<
      string,
      { online: boolean; connections: number }
    >;
    for (const [u, n] of counts.users) users[u] = { online: n > 0, connections: n };
    const topics: Record<string, { connections: number }> = Object.create(null) as Record<string, { connections: number }>;
    for (const [t, n] of counts.topics) topics[t] = { connections: n };
    metrics.controlRequest('presence', 200);
    reply(ex, 200, { users, topics });
  }

  return {
    onMessage,
    /** POST /control/<action>. */
    control(action: ControlAction) {
      return (res: HttpResponse, req: HttpRequest): void => {
        const authorization = req.getHeader('authorization');
        const contentLength = req.getHeader('content-length');
        const ex = track(res);
        handleControl(action, ex, authorization, contentLength).catch((err: unknown) => {
          clog.error({ err }, 'control handler failed');
          metrics.controlRequest(action, 500);
          refuse(ex, Refusal.Internal);
        });
      };
    },
    /** GET /presence. */
    presence(res: HttpResponse, req: HttpRequest): void {
      const authorization = req.getHeader('authorization');
      const query = req.getQuery() ?? '';
      const ex = track(res);
      handlePresence(ex, authorization, query).catch((err: unknown) => {
        clog.error({ err }, 'presence handler failed');
        metrics.controlRequest('presence', 500);
        refuse(ex, Refusal.Internal);
      });
    },
  };
}

export type Control = ReturnType<typeof createControl>;

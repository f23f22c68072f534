// POST /publish: an authenticated, bounded way for backends to send notifications
// over HTTP. In Redis mode it records and announces each item (herald_publish, history
// on) or PUBLISHes it (history off), so every gateway holding the topic delivers; in
// embedded mode it delivers to this process's clients.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type HttpRefusal, Refusal } from '@herald/client/codes';
import { Ajv } from 'ajv';
import type { Bridge } from './bridge.js';
import type { Config } from './config.js';
import type { Deliverer } from './deliver.js';
import { BodyTooLarge, type Exchange, readBody, refuse, reply, track } from './http.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { payloadId } from './payload.js';
import { describeSchemaError } from './protocol.js';
import { TOPIC_PATTERN } from './topics.js';
import type { HttpRequest, HttpResponse } from './uws.js';

export interface PublishItem {
  topic: string;
  /** The notification payload as Redis carries it: `data` serialised as JSON. */
  payload: string;
  /** `data`'s own id (payload.ts, payloadId), when it has one: the notification's id. */
  id?: string;
}

/** What the 202 says of each accepted item, in the request's order. */
export interface Accepted {
  topic: string;
  /** Absent only in Redis mode with history off for a payload without an id of its own: each gateway then names it. */
  id?: string;
  /** With history on: the entry in the topic's history. */
  offset?: string;
}

/** Why a body is refused (the 400s of the code table, codes.ts). */
export type BodyRefusal =
  | typeof Refusal.InvalidJson
  | typeof Refusal.InvalidBody
  | typeof Refusal.TooManyItems
  | typeof Refusal.NotificationTooLarge;

export type PublishParse = { ok: true; items: PublishItem[] } | { ok: false; refusal: BodyRefusal; message: string };

const ITEM_SCHEMA = {
  type: 'object',
  properties: { topic: { type: 'string', pattern: TOPIC_PATTERN }, data: {} },
  required: ['topic', 'data'],
  additionalProperties: false,
};
const validateItem = new Ajv({ strict: true }).compile<{ topic: string; data: unknown }>(ITEM_SCHEMA);

/** Pure: body text -> items, or a reason for the 400. */
export function parsePublishBody(text: string, limits: { maxBatch: number; maxNotificationBytes: number }): PublishParse {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, refusal: Refusal.InvalidJson, message: 'body is not valid JSON' };
  }
  const list = Array.isArray(body) ? body : [body];
  if (list.length === 0) return { ok: false, refusal: Refusal.InvalidBody, message: 'empty array' };
  if (list.length > limits.maxBatch) {
    return { ok: false, refusal: Refusal.TooManyItems, message: `at most ${limits.maxBatch} notifications per request` };
  }
  const items: PublishItem[] = [];
  for (let i = 0; i < list.length; i++) {
    const item: unknown = list[i];
    const where = Array.isArray(body) ? `[${i}]` : 'body';
    if (!validateItem(item)) {
      const detail = describeSchemaError(validateItem.errors?.[0], (e) =>
        e?.instancePath === '/topic' ? 'topic must be 1-128 of [A-Za-z0-9:_.@-]' : 'must be an object {"topic", "data"}',
      );
      return { ok: false, refusal: Refusal.InvalidBody, message: `${where}: ${detail}` };
    }
    let payload: string;
    try {
      payload = JSON.stringify(item.data);
    } catch {
      // JSON.parse accepts nesting that JSON.stringify cannot re-encode (stack depth).
      return { ok: false, refusal: Refusal.InvalidBody, message: `${where}: data is nested too deeply` };
    }
    if (Buffer.byteLength(payload) > limits.maxNotificationBytes) {
      return { ok: false, refusal: Refusal.NotificationTooLarge, message: `${where}: data is over ${limits.maxNotificationBytes} bytes` };
    }
    const id = payloadId(item.data);
    items.push(id === undefined ? { topic: item.topic, payload } : { topic: item.topic, payload, id });
  }
  return { ok: true, items };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export function createPublishHandler(deps: {
  config: Config;
  bridge: Bridge | undefined;
  deliverer: Deliverer;
  metrics: Metrics;
  log: Logger;
}) {
  const { config, bridge, deliverer, metrics } = deps;
  const plog = deps.log.child({ component: 'publish' });
  // Compare digests so the comparison takes the same time whatever the length.
  const keyDigest = digest(config.publishKey ?? '');
  const tooLarge = { limit: config.publishMaxBodyBytes };
  const limits = { maxBatch: config.publishMaxBatch, maxNotificationBytes: config.maxNotificationBytes };

  /** Every answer is counted by status. */
  function fail(ex: Exchange, refusal: HttpRefusal, extra?: Readonly<Record<string, unknown>>): void {
    metrics.publishRequest(refusal.status);
    refuse(ex, refusal, extra);
  }

  async function handle(ex: Exchange, authorization: string, contentLength: string): Promise<void> {
    const m = /^Bearer[ \t]+(\S+)$/i.exec(authorization);
    if (m?.[1] === undefined || !timingSafeEqual(digest(m[1]), keyDigest)) {
      fail(ex, Refusal.InvalidPublishKey);
      return;
    }
    if (contentLength !== '' && Number(contentLength) > config.publishMaxBodyBytes) {
      fail(ex, Refusal.BodyTooLarge, tooLarge);
      return;
    }
    let body: Buffer;
    try {
      body = await readBody(ex, config.publishMaxBodyBytes);
    } catch (err) {
      if (err instanceof BodyTooLarge) fail(ex, Refusal.BodyTooLarge, tooLarge);
      return; // otherwise the client aborted: nobody to answer
    }
    const parsed = parsePublishBody(body.toString('utf8'), limits);
    if (!parsed.ok) {
      fail(ex, parsed.refusal, { message: parsed.message });
      return;
    }
    let notifications: Accepted[];
    if (bridge === undefined) {
      // This process names a payload without an id of its own, so it can say the name.
      notifications = parsed.items.map(({ topic, payload, id }) => {
        const named = id ?? randomUUID();
        deliverer.deliver(topic, payload, performance.now(), undefined, () => named);
        return { topic, id: named };
      });
    } else {
      let positions: Awaited<ReturnType<Bridge['publish']>>;
      try {
        positions = await bridge.publish(parsed.items);
      } catch (err) {
        plog.warn({ err, items: parsed.items.length }, 'publish to redis failed');
        fail(ex, Refusal.RedisUnavailable);
        return;
      }
      notifications = parsed.items.map(({ topic, id }, i) => {
        const p = positions?.[i];
        if (p !== undefined) return { topic, id: p.id, offset: p.offset };
        return id === undefined ? { topic } : { topic, id };
      });
    }
    metrics.publishRequest(202);
    reply(ex, 202, { accepted: parsed.items.length, notifications });
  }

  return (res: HttpResponse, req: HttpRequest): void => {
    const authorization = req.getHeader('authorization');
    const contentLength = req.getHeader('content-length');
    const ex = track(res);
    handle(ex, authorization, contentLength).catch((err: unknown) => {
      plog.error({ err }, 'publish handler failed');
      fail(ex, Refusal.Internal);
    });
  };
}

/** Any other method on /publish: 405, counted like every /publish answer. */
export function methodNotAllowed(metrics: Metrics) {
  return (res: HttpResponse): void => {
    metrics.publishRequest(Refusal.MethodNotAllowed.status);
    refuse(track(res), Refusal.MethodNotAllowed);
  };
}

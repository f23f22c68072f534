// Payload -> notification frame, encoded once -> one native publish to a uWS topic.
// Used for what Redis routes here (interest.ts), gap fills, and POST /publish in
// embedded mode. uWS does the fan-out in C++; there is no per-subscriber work in JS.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { DedupWindow } from './dedup.js';
import type { Position } from './history.js';
import type { Metrics } from './metrics.js';
import { isAfter } from './offsets.js';
import { isTooLarge, payloadId } from './payload.js';
import { encodeNotification } from './protocol.js';

export interface Notification {
  id: string;
  /** True when the id came from the payload, so it can repeat and is worth de-duplicating. */
  idFromPayload: boolean;
  frame: string;
}

/**
 * `data` is the payload parsed as JSON, or the raw string when it is not JSON. The
 * payload's own `id` (a string on an object payload) becomes the notification id.
 */
export function buildNotification(
  topic: string,
  payload: string,
  ts: number,
  newId: () => string = randomUUID,
  position?: Position & { replayed?: boolean },
): Notification {
  // A recorded notification's id and time come from its history entry: the same on
  // every gateway and in every replay; and whether it is JSON was checked once, when it
  // was recorded, so it is not parsed again here.
  if (position?.json !== undefined) {
    const dataJson = position.json ? payload : JSON.stringify(payload);
    return { id: position.id, idFromPayload: true, frame: encodeNotification(topic, position.id, position.ts, dataJson, position) };
  }
  let parsed: unknown;
  let dataJson: string;
  try {
    parsed = JSON.parse(payload);
    dataJson = payload.trim(); // already valid JSON: embed it as is
  } catch {
    parsed = undefined;
    dataJson = JSON.stringify(payload);
  }
  const own = payloadId(parsed);
  const idFromPayload = own !== undefined;
  if (position !== undefined) {
    return { id: position.id, idFromPayload: true, frame: encodeNotification(topic, position.id, position.ts, dataJson, position) };
  }
  const id = own ?? newId();
  return { id, idFromPayload, frame: encodeNotification(topic, id, ts, dataJson) };
}

/** The uWS App's topics: where a frame is handed over for native fan-out. */
export interface Fanout {
  /** `app.publish`: the frame to every subscriber of `topic` on this process. */
  publish(topic: string, frame: string): boolean;
  numSubscribers(topic: string): number;
}

/** `no_subscribers`: nobody on this gateway holds the topic (it was just left). */
export type DeliveryOutcome = 'published' | 'no_subscribers' | 'duplicate' | 'too_large';

/** At most this many topics' last offsets are kept for gap fills. */
const MAX_TRACKED_TOPICS = 100_000;

export function createDeliverer(deps: { fanout: Fanout; dedup: DedupWindow; metrics: Metrics; maxBytes: number }) {
  const { fanout, dedup, metrics, maxBytes } = deps;
  /** Topic -> offset of the last recorded notification delivered here (for gap fills). */
  const lastOffsets = new Map<string, string>();
  /** The newest entry time (Redis clock, ms) delivered here: where gap fills start on
   *  topics without an offset. */
  let latestEntryMs: number | undefined;

  /** Offsets only arrive for held topics, and forget() drops them: no pruning. Past the
   *  cap a new topic is not tracked, and a gap fill starts it from a time instead. */
  /** `ms` is the entry's time (the offset's ms part), known to the caller. */
  function track(topic: string, offset: string, ms: number): void {
    const prev = lastOffsets.get(topic);
    if (prev === undefined ? lastOffsets.size < MAX_TRACKED_TOPICS : isAfter(offset, prev)) {
      lastOffsets.set(topic, offset);
      if (latestEntryMs === undefined || ms > latestEntryMs) latestEntryMs = ms;
    }
  }

  return {
    lastOffsets: lastOffsets as ReadonlyMap<string, string>,
    get latestEntryMs() {
      return latestEntryMs;
    },
    /** A frame for every subscriber of `topic` (e.g. a `resumed` signal); false when none. */
    signal(topic: string, frame: string): boolean {
      return fanout.numSubscribers(topic) > 0 && fanout.publish(topic, frame);
    },
    /** Nobody here holds the topic any more: forget its last offset. */
    forget(topic: string): void {
      lastOffsets.delete(topic);
    },
    /**
     * `receivedAt` is performance.now() when the payload arrived, for the latency
     * histogram. `position` is the notification's history entry, when history is on.
     * `newId` names a payload without an id of its own (POST /publish in embedded mode
     * picks it, to answer with it).
     */
    deliver(
      topic: string,
      payload: string | Buffer,
      receivedAt: number = performance.now(),
      position?: Position & { replayed?: boolean },
      newId: () => string = randomUUID,
    ): DeliveryOutcome {
      // Redis routes only held topics here, but one may have been left a moment ago.
      const recipients = fanout.numSubscribers(topic);
      if (recipients === 0) {
        metrics.notificationsUnrouted.inc();
        return 'no_subscribers';
      }
      if (isTooLarge(payload, maxBytes)) {
        metrics.notificationDropped('too_large');
        return 'too_large';
      }
      // A payload from Redis stays bytes until it has somewhere to go.
      const text = typeof payload === 'string' ? payload : payload.toString();
      const n = buildNotification(topic, text, Date.now(), newId, position);
      if (position !== undefined) track(topic, position.offset, position.ts);
      if (n.idFromPayload && dedup.seen(`${topic}\n${n.id}`, performance.now())) {
        metrics.notificationDropped('duplicate');
        return 'duplicate';
      }
      fanout.publish(topic, n.frame);
      metrics.notificationsPublished.inc();
      metrics.messagesSent.inc(recipients);
      metrics.deliveryLatency.observe((performance.now() - receivedAt) / 1000);
      return 'published';
    },
  };
}

export type Deliverer = ReturnType<typeof createDeliverer>;

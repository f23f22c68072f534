// The Redis side: a pattern subscriber that turns `<prefix>:<topic>` messages into
// deliveries, and a publisher for POST /publish and client events. `up` drives
// readiness: true only while the pattern subscription is confirmed.
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { isTooLarge, type Deliverer } from './deliver.js';
import { createHistory, type History, type HistoryConfig, type Position, type ResumePoint } from './history.js';
import type { Logger } from './log.js';
import { reconnectDelay } from './limits.js';
import type { Metrics } from './metrics.js';
import { encode } from './protocol.js';
import { channelToTopic, topicToChannel } from './topics.js';

export interface ClientEvent {
  type: 'ack' | 'mark_read';
  userId: string;
  notificationId: string;
  connectionId: string;
}

export interface Bridge {
  /** True while the subscriber holds its pattern subscription and the publisher is connected. */
  readonly up: boolean;
  /** PUBLISH each item (one pipeline); rejects when Redis is unreachable. */
  publish(items: readonly { topic: string; payload: string }[]): Promise<void>;
  /** XADD to the events stream, capped with MAXLEN ~. */
  recordEvent(event: ClientEvent): Promise<void>;
  /** The history, when on. */
  readonly history: History | undefined;
  close(): Promise<void>;
}

export interface BridgeOptions {
  url: string;
  prefix: string;
  events: { stream: string; maxLen: number };
  deliverer: Deliverer;
  log: Logger;
  metrics: Metrics;
  /** undefined = history off (HERALD_HISTORY_SIZE or HERALD_HISTORY_TTL_S is 0). */
  history: HistoryConfig | undefined;
  maxNotificationBytes: number;
}

/** Messages recorded per FCALL: bounds one call's Redis time and its reply. */
const RECORD_BATCH = 256;
/** How long an ack or mark_read waits for a publisher that is reconnecting, ms. */
const EVENT_WAIT_MS = 2000;

/** Resolves when `client` is ready, or after `ms` (the command then fails as usual). */
function readyWithin(client: Redis, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      client.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.once('ready', done);
  });
}

/** How far before the newest entry heard a gap fill starts on topics without an offset, ms. */
const GAP_MARGIN_MS = 2000;
/** The second gap-fill pass after a resubscribe, ms. */
const LATE_FILL_MS = 2000;
/** Messages delivered while the history could not be written, kept to record later. */
const MAX_UNRECORDED = 10_000;

export function createBridge(opts: BridgeOptions): Bridge {
  const { url, prefix, events, deliverer, log, metrics, maxNotificationBytes } = opts;
  const pattern = `${prefix}:*`;
  const blog = log.child({ component: 'bridge' });

  const subscriber = new Redis(url, {
    lazyConnect: true,
    // We re-subscribe ourselves on every 'ready' so that `up` means "subscription confirmed".
    autoResubscribe: false,
    maxRetriesPerRequest: null,
    retryStrategy: (attempt: number) => reconnectDelay(attempt, Math.random()),
    // The pid tells gateways on one host apart in CLIENT LIST.
    connectionName: `herald-subscriber-${process.pid}`,
  });
  const publisher = new Redis(url, {
    lazyConnect: true,
    // Fail fast while Redis is away: callers answer 503 rather than queue unboundedly.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt: number) => reconnectDelay(attempt, Math.random()),
    connectionName: `herald-publisher-${process.pid}`,
  });
  const history = opts.history === undefined ? undefined : createHistory(publisher, prefix, opts.history);
  /** The function library is loaded on the publisher's current connection. */
  let libraryLoaded = history === undefined;

  // Ready = the pattern subscription is confirmed and the publisher (for /publish and
  // client events) is connected; readiness and the up gauge follow it.
  let subscribed = false;
  let up = false;
  let closing = false;
  let lastError = '';
  const update = (why: string): void => {
    const value = subscribed && publisher.status === 'ready' && libraryLoaded;
    if (up === value) return;
    up = value;
    metrics.redisUp.set(value ? 1 : 0);
    if (value) blog.info({ pattern }, 'redis subscription active');
    else if (!closing) blog.warn({ why }, 'redis unavailable');
  };
  const setSubscribed = (value: boolean, why: string): void => {
    subscribed = value;
    update(why);
  };

  // Counts lost connections, not retries: one outage is one reconnect.
  let connected = false;
  /** Set once a subscription was lost: the next one fills the gap from history. */
  let dropped = false;
  /** The epoch the delivered offsets belong to, as it was when the subscription dropped
   *  (a reconnecting publisher may already have read a new one: Redis lost its data). */
  let epochAtDrop: string | undefined;
  /** Where gap fills start, per topic held here when the subscription dropped: the last
   *  offset delivered here, or (no notification delivered on it yet) a time. */
  let pointsAtDrop: ReadonlyMap<string, ResumePoint> = new Map();
  /** The newest entry time (Redis clock, ms) in a history reply: what this gateway had
   *  heard when its subscription dropped. */
  let latestEntryMs: number | undefined;
  /** Wall clock when the subscription was last confirmed: the fallback for that. */
  let subscribedAt = Date.now();
  subscriber.on('ready', () => {
    connected = true;
    subscriber.psubscribe(pattern).then(
      () => {
        setSubscribed(true, 'subscribed');
        subscribedAt = Date.now();
        if (dropped && history !== undefined) {
          // A second pass a little later catches what other gateways recorded late
          // (their history writes failed while Redis was away). What the first pass or
          // live delivery already sent is dropped by the dedup window.
          const [epoch, points] = [epochAtDrop, pointsAtDrop];
          void fillGap(history, epoch, points, true).then(() => setTimeout(() => void fillGap(history, epoch, points, false), LATE_FILL_MS).unref());
        }
        dropped = false;
      },
      (err: Error) => {
        // Without the subscription the gateway is useless: start over on a new connection.
        blog.warn({ err: err.message }, 'psubscribe failed; reconnecting');
        subscriber.disconnect(true);
      },
    );
  });
  subscriber.on('close', () => {
    if (subscribed && !dropped) {
      dropped = true;
      epochAtDrop = history?.epoch;
      pointsAtDrop = gapPoints();
    }
    setSubscribed(false, 'subscriber connection closed');
  });
  /**
   * A topic with a notification delivered here resumes after its offset. A held topic
   * without one resumes from shortly before the newest entry this gateway had heard
   * of (GAP_MARGIN_MS covers entries recorded out of publish order; what was already
   * delivered is dropped by the dedup window).
   */
  function gapPoints(): Map<string, ResumePoint> {
    const points = new Map<string, ResumePoint>();
    const since = (latestEntryMs ?? subscribedAt) - GAP_MARGIN_MS;
    for (const topic of deliverer.heldTopics) {
      const offset = deliverer.lastOffsets.get(topic);
      points.set(topic, offset !== undefined ? { offset } : { since });
    }
    return points;
  }
  subscriber.on('reconnecting', () => {
    if (connected) metrics.redisReconnects.inc();
    connected = false;
    setSubscribed(false, 'subscriber reconnecting');
  });
  publisher.on('ready', () => {
    if (history === undefined) {
      update('publisher ready');
      return;
    }
    // A Redis that restarted without its data lost the library too: load it every time.
    history.load().then(
      () => {
        libraryLoaded = true;
        recordedLate = recordLate(history);
        update('publisher ready');
      },
      (err: Error) => {
        blog.error({ err: err.message }, 'cannot load the herald function library; reconnecting');
        publisher.disconnect(true);
      },
    );
  });
  publisher.on('close', () => {
    if (history !== undefined) libraryLoaded = false;
    update('publisher connection closed');
  });
  for (const [name, client] of [['subscriber', subscriber], ['publisher', publisher]] as const) {
    client.on('error', (err: Error) => {
      // ioredis repeats the same error on every retry; log each distinct one once.
      if (err.message !== lastError) {
        lastError = err.message;
        blog.warn({ client: name, err: err.message }, 'redis error');
      }
    });
    client.on('ready', () => {
      lastError = '';
    });
  }

  // History on: each message is recorded (or found, when another gateway or
  // herald_publish recorded it) before delivery, so that its frame carries its
  // position. Messages are batched per event-loop turn into one FCALL; replies come
  // back in order on the one connection, so delivery order is kept.
  let pending: Array<{ topic: string; payload: Buffer; receivedAt: number }> = [];
  let unrecorded: Array<{ topic: string; payload: Buffer }> = [];
  /** Settles once the messages that failed to record meanwhile are recorded (or given up). */
  let recordedLate: Promise<void> = Promise.resolve();
  async function recordLate(h: History): Promise<void> {
    while (unrecorded.length > 0) {
      const batch = unrecorded.slice(0, RECORD_BATCH);
      unrecorded = unrecorded.slice(RECORD_BATCH);
      try {
        await h.record(batch);
        metrics.historyWrites('ok', batch.length);
      } catch (err) {
        unrecorded = [...batch, ...unrecorded];
        blog.warn({ err: (err as Error).message, messages: unrecorded.length }, 'late history write failed; retrying on the next reconnect');
        return;
      }
    }
  }
  let flushScheduled = false;
  function flush(h: History): void {
    flushScheduled = false;
    while (pending.length > 0) {
      const batch = pending.slice(0, RECORD_BATCH);
      pending = pending.slice(RECORD_BATCH);
      h.record(batch).then(
        (positions: Position[]) => {
          metrics.historyWrites('ok', batch.length);
          batch.forEach((m, i) => deliverer.deliver(m.topic, m.payload, m.receivedAt, positions[i]));
          const last = positions.at(-1)?.ts;
          if (last !== undefined && (latestEntryMs === undefined || last > latestEntryMs)) latestEntryMs = last;
        },
        (err: Error) => {
          // Delivered live without a position rather than not at all, and recorded as
          // soon as the publisher is back, so that clients who were away can resume it.
          metrics.historyWrites('failed', batch.length);
          blog.warn({ err: err.message, messages: batch.length }, 'history write failed; delivered without positions, recorded later');
          for (const m of batch) deliverer.deliver(m.topic, m.payload, m.receivedAt);
          unrecorded.push(...batch.map(({ topic, payload }) => ({ topic, payload })));
          if (unrecorded.length > MAX_UNRECORDED) unrecorded.splice(0, unrecorded.length - MAX_UNRECORDED);
        },
      );
    }
  }

  // Payloads stay the bytes Redis sent: recorded as they are, and decoded only when a
  // subscriber here will get them (most messages, with several gateways, go elsewhere).
  subscriber.on('pmessageBuffer', (_pattern: string, channel: Buffer, message: Buffer) => {
    const receivedAt = performance.now();
    metrics.redisMessages.inc();
    const topic = channelToTopic(prefix, channel.toString());
    if (topic === undefined) {
      metrics.notificationDropped('invalid_topic');
      return;
    }
    if (history === undefined || isTooLarge(message, maxNotificationBytes)) {
      deliverer.deliver(topic, message, receivedAt);
      return;
    }
    pending.push({ topic, payload: message, receivedAt });
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush, history);
    }
  });

  /**
   * After the subscription was lost and regained: what this gateway's clients missed
   * meanwhile, from each held topic's history since the point taken at the drop (gapPoints).
   * A topic whose gap cannot be filled gets a `resumed` frame with recovered: false.
   */
  async function fillGap(h: History, epoch: string | undefined, points: ReadonlyMap<string, ResumePoint>, first: boolean): Promise<void> {
    if (epoch === undefined || points.size === 0) return;
    // The history is read through the publisher: wait (bounded) for it to be back.
    for (let waited = 0; !libraryLoaded && waited < 10_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    await recordedLate;
    let recoveries;
    try {
      recoveries = await h.since(epoch, points, Date.now());
    } catch (err) {
      blog.warn({ err: (err as Error).message, topics: points.size }, 'gap fill failed');
      if (first) for (const topic of points.keys()) unrecoverable(topic);
      return;
    }
    let replayed = 0;
    for (const [topic, r] of recoveries) {
      if (!r.recovered) {
        // The first pass decides; the late pass only adds what turned up since.
        if (first) unrecoverable(topic);
        continue;
      }
      if (first) metrics.gapFill('filled');
      for (const e of r.entries) {
        const outcome = deliverer.deliver(topic, e.payload, performance.now(), { id: e.id, offset: e.offset, ts: e.ts, epoch: h.epoch ?? epoch, replayed: true });
        if (outcome === 'published') replayed++;
      }
    }
    metrics.replayedNotifications.inc(replayed);
    blog.info({ topics: recoveries.size, replayed, pass: first ? 'first' : 'late' }, 'gap filled after resubscribing');
  }

  function unrecoverable(topic: string): void {
    metrics.gapFill('unrecoverable');
    deliverer.signal(topic, encode({ type: 'resumed', topics: { [topic]: { recovered: false } } }));
  }

  subscriber.connect().catch(() => undefined); // retried by retryStrategy; errors logged above
  publisher.connect().catch(() => undefined);

  return {
    get up() {
      return up;
    },
    history,
    async publish(items) {
      if (history !== undefined) {
        await history.publish(items);
        return;
      }
      const pipeline = publisher.pipeline();
      for (const { topic, payload } of items) pipeline.publish(topicToChannel(prefix, topic), payload);
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err !== null);
      if (results === null || failed !== undefined) throw failed?.[0] ?? new Error('pipeline aborted');
    },
    async recordEvent(e) {
      // A gateway that just started (or reconnected) accepts sockets before its
      // publisher is back: wait for it briefly rather than fail the client's event.
      if (publisher.status !== 'ready') await readyWithin(publisher, EVENT_WAIT_MS);
      await publisher.xadd(
        events.stream, 'MAXLEN', '~', String(events.maxLen), '*',
        'type', e.type, 'userId', e.userId, 'notificationId', e.notificationId,
        'connectionId', e.connectionId, 'ts', String(Date.now()),
      );
    },
    async close() {
      closing = true;
      setSubscribed(false, 'closing');
      // Each step is bounded: a Redis that hangs must not hold the shutdown.
      const within = (p: Promise<unknown>): Promise<unknown> =>
        Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
      const quit = async (client: Redis): Promise<void> => {
        if (client.status === 'ready') await within(client.quit());
        client.disconnect();
      };
      if (subscriber.status === 'ready') await within(subscriber.punsubscribe(pattern));
      await Promise.all([quit(subscriber), quit(publisher)]);
    },
  };
}

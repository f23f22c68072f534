// The Redis side: a pattern subscriber that turns `<prefix>:<topic>` messages into
// deliveries, and a publisher for POST /publish and client events. `up` drives
// readiness: true only while the pattern subscription is confirmed.
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { Deliverer } from './deliver.js';
import type { Logger } from './log.js';
import { reconnectDelay } from './limits.js';
import type { Metrics } from './metrics.js';
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
  close(): Promise<void>;
}

export interface BridgeOptions {
  url: string;
  prefix: string;
  events: { stream: string; maxLen: number };
  deliverer: Deliverer;
  log: Logger;
  metrics: Metrics;
}

export function createBridge(opts: BridgeOptions): Bridge {
  const { url, prefix, events, deliverer, log, metrics } = opts;
  const pattern = `${prefix}:*`;
  const blog = log.child({ component: 'bridge' });

  const subscriber = new Redis(url, {
    lazyConnect: true,
    // We re-subscribe ourselves on every 'ready' so that `up` means "subscription confirmed".
    autoResubscribe: false,
    maxRetriesPerRequest: null,
    retryStrategy: (attempt: number) => reconnectDelay(attempt, Math.random()),
    connectionName: 'herald-subscriber',
  });
  const publisher = new Redis(url, {
    lazyConnect: true,
    // Fail fast while Redis is away: callers answer 503 rather than queue unboundedly.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt: number) => reconnectDelay(attempt, Math.random()),
    connectionName: 'herald-publisher',
  });

  // Ready = the pattern subscription is confirmed and the publisher (for /publish and
  // client events) is connected; readiness and the up gauge follow it.
  let subscribed = false;
  let up = false;
  let closing = false;
  let lastError = '';
  const update = (why: string): void => {
    const value = subscribed && publisher.status === 'ready';
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
  subscriber.on('ready', () => {
    connected = true;
    subscriber.psubscribe(pattern).then(
      () => setSubscribed(true, 'subscribed'),
      (err: Error) => {
        // Without the subscription the gateway is useless: start over on a new connection.
        blog.warn({ err: err.message }, 'psubscribe failed; reconnecting');
        subscriber.disconnect(true);
      },
    );
  });
  subscriber.on('close', () => setSubscribed(false, 'subscriber connection closed'));
  subscriber.on('reconnecting', () => {
    if (connected) metrics.redisReconnects.inc();
    connected = false;
    setSubscribed(false, 'subscriber reconnecting');
  });
  publisher.on('ready', () => update('publisher ready'));
  publisher.on('close', () => update('publisher connection closed'));
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

  subscriber.on('pmessage', (_pattern: string, channel: string, message: string) => {
    const receivedAt = performance.now();
    metrics.redisMessages.inc();
    const topic = channelToTopic(prefix, channel);
    if (topic === undefined) {
      metrics.notificationDropped('invalid_topic');
      return;
    }
    deliverer.deliver(topic, message, receivedAt);
  });

  subscriber.connect().catch(() => undefined); // retried by retryStrategy; errors logged above
  publisher.connect().catch(() => undefined);

  return {
    get up() {
      return up;
    },
    async publish(items) {
      const pipeline = publisher.pipeline();
      for (const { topic, payload } of items) pipeline.publish(topicToChannel(prefix, topic), payload);
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err !== null);
      if (results === null || failed !== undefined) throw failed?.[0] ?? new Error('pipeline aborted');
    },
    async recordEvent(e) {
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

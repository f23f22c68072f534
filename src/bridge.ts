// The Redis side, assembled: a subscriber connection routed by interest (interest.ts),
// a command connection for POST /publish, client events, history reads and recording,
// the recorder role when history is on (recorder.ts), and the gap fill after a
// subscriber drop (gapfill.ts). This module's own state machine is readiness: `up`
// while every held topic is subscribed and the command connection is ready (with
// history on, with the function library loaded and the recorder settled: a gateway
// that took a slot is ready once its pattern is subscribed, so that a plain PUBLISH
// sent once it is ready is recorded).
//
// Who subscribes to what (docs/DELIVERY.md has the picture):
//   history off: each gateway SUBSCRIBEs `<prefix>:<topic>` for the topics it holds.
//   history on:  recorders PSUBSCRIBE `<prefix>:*` and record; the library announces each
//                recorded notification on `<ns>:notify:{<topic>}`, which each gateway
//                SUBSCRIBEs for the topics it holds. herald_publish announces directly.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Deliverer } from './deliver.js';
import { createGapFill } from './gapfill.js';
import { createHistory, type History, type HistoryConfig, LibraryConflict } from './history.js';
import { createInterest, type Subscriptions } from './interest.js';
import { names as namesOf } from './keys.js';
import { decodeAnnouncement, librarySettings } from './library.js';
import { reconnectDelay } from './limits.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { offsetMs } from './offsets.js';
import { createRecorder, type Recorder } from './recorder.js';
import { channelToTopic, topicToChannel } from './topics.js';

export interface ClientEvent {
  type: 'ack' | 'mark_read';
  userId: string;
  notificationId: string;
  connectionId: string;
}

export interface Bridge {
  /** True while every held topic is subscribed and the command connection is ready. */
  readonly up: boolean;
  /** What connections need of the routing: holding topics, and waiting for them. */
  readonly subscriptions: Subscriptions;
  /** Publish each item, its payload JSON (one pipeline): herald_publish with history on, else PUBLISH. */
  publish(items: readonly { topic: string; payload: string }[]): Promise<void>;
  /** XADD to the events stream, capped with MAXLEN ~. */
  recordEvent(event: ClientEvent): Promise<void>;
  /** The history, when on. */
  readonly history: History | undefined;
  /** The recorder slot this gateway holds (history on), or undefined. */
  readonly recorderSlot: number | undefined;
  close(): Promise<void>;
}

export interface BridgeOptions {
  url: string;
  namespace: string;
  prefix: string;
  events: { stream: string; maxLen: number };
  deliverer: Deliverer;
  log: Logger;
  metrics: Metrics;
  /** undefined = history off (HERALD_HISTORY_SIZE or HERALD_HISTORY_TTL_S is 0). */
  history: HistoryConfig | undefined;
  recorders: number;
  maxNotificationBytes: number;
  /** HERALD_RECORDER_MAX_WAITING_BYTES. */
  recorderMaxWaitingBytes: number;
  /** Topics held by every connection (system): subscribed once, never left. */
  sticky(topic: string): boolean;
  /** Redis holds this deployment's library with other settings, or another's with our
   *  prefix, when this gateway first reaches it: it must not start. */
  onConflict(err: LibraryConflict): void;
}

/** How long an ack or mark_read waits for a command connection that is reconnecting, ms. */
const EVENT_WAIT_MS = 2000;
/** After a library conflict found once running, the next look, ms. */
const CONFLICT_RETRY_MS = 5000;

/** Resolves when `client` is ready, or after `ms` (a command then fails as usual). */
function readyWithin(client: Redis, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
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

export function createBridge(opts: BridgeOptions): Bridge {
  const { url, prefix, events, deliverer, log, metrics } = opts;
  const names = namesOf(opts.namespace);
  const blog = log.child({ component: 'bridge' });
  /** This gateway's name in recorder leases and seen keys: unique per process start. */
  const caller = `${process.pid}-${randomBytes(4).toString('hex')}`;

  const subscriber = new Redis(url, {
    lazyConnect: true,
    // interest.ts subscribes again on every 'ready', so that `up` means "confirmed"; a
    // SUBSCRIBE cut off by a lost connection fails rather than being sent again.
    autoResubscribe: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: null,
    retryStrategy: (attempt: number) => reconnectDelay(attempt, Math.random()),
    // The pid tells gateways on one host apart in CLIENT LIST.
    connectionName: `herald-subscriber-${process.pid}`,
  });
  const commands = new Redis(url, {
    lazyConnect: true,
    // Fail fast while Redis is away: callers answer 503 rather than queue unboundedly.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt: number) => reconnectDelay(attempt, Math.random()),
    connectionName: `herald-commands-${process.pid}`,
  });

  const history =
    opts.history === undefined
      ? undefined
      : createHistory(commands, names, librarySettings(opts.namespace, prefix, opts.history, opts.recorders), opts.history);
  const recorder: Recorder | undefined =
    history === undefined
      ? undefined
      : createRecorder({
          subscriber,
          commands,
          names,
          prefix,
          caller,
          maxNotificationBytes: opts.maxNotificationBytes,
          maxWaitingBytes: opts.recorderMaxWaitingBytes,
          onEpoch: (e) => history.noteEpoch(e),
          onSettled: () => update('recorder settled'),
          metrics,
          log,
        });

  // History on: what arrives is a recorded notification announced with its position.
  // Off: the payload as published.
  const onMessage =
    history === undefined
      ? (topic: string, message: Buffer, receivedAt: number): void => {
          deliverer.deliver(topic, message, receivedAt);
        }
      : (topic: string, message: Buffer, receivedAt: number): void => {
          const a = decodeAnnouncement(message);
          if (a === undefined) {
            metrics.notificationDropped('malformed');
            return;
          }
          history.noteEpoch(a.epoch);
          deliverer.deliver(topic, a.payload, receivedAt, {
            id: a.id,
            offset: a.offset,
            epoch: a.epoch,
            ts: offsetMs(a.offset),
            json: a.json,
          });
        };

  const gapFill =
    history === undefined
      ? undefined
      : createGapFill({
          history,
          deliverer,
          held: () => interest.held,
          commandsReady: (ms) => readyWithin(commands, ms),
          metrics,
          log,
        });

  const interest = createInterest({
    subscriber,
    channelOf: history === undefined ? (t) => topicToChannel(prefix, t) : names.notify,
    topicOf: history === undefined ? (c) => channelToTopic(prefix, c) : names.topicOfNotify,
    sticky: opts.sticky,
    onMessage,
    onIdle: (topic) => deliverer.forget(topic),
    onState: (subscribed) => {
      if (subscribed) gapFill?.subscribed();
      else gapFill?.lost();
      update(subscribed ? 'subscribed' : 'subscriber connection lost');
    },
    metrics,
    log,
  });
  interest.hold('system');

  // The subscriber connection's events, in the order that matters: the recorder's
  // pattern goes out before the topic channels, so once they are confirmed after a
  // reconnect (and the gap fill reads from there), recording is back too.
  subscriber.on('ready', () => {
    recorder?.subscriberReady();
    interest.connectionReady();
  });
  const lost = (): void => {
    recorder?.subscriberLost();
    interest.connectionLost();
  };
  subscriber.on('close', lost);
  subscriber.on('reconnecting', lost);
  subscriber.on('end', lost);
  subscriber.on('messageBuffer', interest.onMessage);
  if (recorder !== undefined) subscriber.on('pmessageBuffer', recorder.onMessage);

  /** With history on, the library is loaded on the command connection's current session. */
  let libraryLoaded = history === undefined;
  let everLoaded = false;
  let up = false;
  let closing = false;
  function update(why: string): void {
    const value = !closing && interest.up && commands.status === 'ready' && libraryLoaded && (recorder?.settled ?? true);
    if (up === value) return;
    up = value;
    metrics.redisUp.set(value ? 1 : 0);
    if (value)
      blog.info({ namespace: opts.namespace, history: history !== undefined, recorderSlot: recorder?.slot }, 'redis subscription active');
    else if (!closing) blog.warn({ why }, 'redis unavailable');
  }

  // Counts lost connections, not retries: one outage is one reconnect.
  let connected = false;
  subscriber.on('ready', () => {
    connected = true;
  });
  subscriber.on('reconnecting', () => {
    if (connected) metrics.redisReconnects.inc();
    connected = false;
  });

  commands.on('ready', () => {
    if (history === undefined) {
      update('command connection ready');
      return;
    }
    // A Redis that restarted without its data lost the library too: look every time.
    history.load().then(
      () => {
        libraryLoaded = true;
        everLoaded = true;
        recorder?.libraryLoaded();
        update('library loaded');
      },
      (err: Error) => {
        if (err instanceof LibraryConflict && !everLoaded) {
          opts.onConflict(err);
          return;
        }
        blog.error({ err }, 'cannot load the function library; trying again');
        setTimeout(() => commands.disconnect(true), err instanceof LibraryConflict ? CONFLICT_RETRY_MS : 0).unref();
      },
    );
  });
  commands.on('close', () => {
    if (history !== undefined) libraryLoaded = false;
    update('command connection closed');
  });

  let lastError = '';
  for (const [name, client] of [
    ['subscriber', subscriber],
    ['commands', commands],
  ] as const) {
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

  subscriber.connect().catch(() => undefined); // retried by retryStrategy; errors logged above
  commands.connect().catch(() => undefined);

  return {
    get up() {
      return up;
    },
    subscriptions: interest,
    history,
    get recorderSlot() {
      return recorder?.slot;
    },
    async publish(items) {
      if (history !== undefined) {
        // POST /publish serialised each item's data: JSON, known without a parse.
        await history.publish(items.map((i) => ({ ...i, json: true })));
        return;
      }
      const pipeline = commands.pipeline();
      for (const { topic, payload } of items) pipeline.publish(topicToChannel(prefix, topic), payload);
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err !== null);
      if (results === null || failed !== undefined) throw failed?.[0] ?? new Error('pipeline aborted');
    },
    async recordEvent(e) {
      // A gateway that just started (or reconnected) accepts sockets before its
      // command connection is back: wait for it briefly rather than fail the event.
      await readyWithin(commands, EVENT_WAIT_MS);
      await commands.xadd(
        events.stream,
        'MAXLEN',
        '~',
        String(events.maxLen),
        '*',
        'type',
        e.type,
        'userId',
        e.userId,
        'notificationId',
        e.notificationId,
        'connectionId',
        e.connectionId,
        'ts',
        String(Date.now()),
      );
    },
    async close() {
      closing = true;
      update('closing');
      // Each step is bounded: a Redis that hangs must not hold the shutdown.
      const within = (p: Promise<unknown>): Promise<unknown> =>
        Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
      await within(recorder?.close() ?? Promise.resolve());
      await interest.close();
      const quit = async (client: Redis): Promise<void> => {
        if (client.status === 'ready') await within(client.quit());
        client.disconnect();
      };
      await Promise.all([quit(subscriber), quit(commands)]);
    },
  };
}

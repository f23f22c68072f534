// The Redis side, assembled: the two connections (redis.ts), the subscriber's channels
// routed by interest (interest.ts), the command connection for POST /publish, client
// events and history (history.ts), and with history on the function library kept
// loaded (loader.ts), the recorder role (recorder.ts) and the gap fill after a
// subscriber drop (gapfill.ts). Each of those holds its own state; this module's one
// state is readiness: `up` while every held topic is subscribed and the command
// connection is ready (with history on, with the function library loaded and the
// recorder settled: a gateway that took a slot is ready once its pattern is
// subscribed, so that a plain PUBLISH sent once it is ready is recorded).
//
// Who subscribes to what (docs/DELIVERY.md has the picture):
//   history off: each gateway SUBSCRIBEs `<prefix>:<topic>` for the topics it holds.
//   history on:  recorders PSUBSCRIBE `<prefix>:*` and record; the library announces each
//                recorded notification on `<ns>:notify:{<topic>}`, which each gateway
//                SUBSCRIBEs for the topics it holds. herald_publish announces directly.
import type { Redis } from 'ioredis';
import type { Deliverer } from './deliver.js';
import { createGapFill } from './gapfill.js';
import { createHistory, type History, type HistoryConfig, type LibraryConflict, type Position } from './history.js';
import { createInterest, type Subscriptions } from './interest.js';
import { names as namesOf } from './keys.js';
import { decodeAnnouncement, librarySettings } from './library.js';
import { createLibraryLoader } from './loader.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { createRecorder, type Recorder } from './recorder.js';
import { createRedisConnections, within } from './redis.js';
import { channelToTopic, topicToChannel } from './topics.js';

/** One `ack` or `mark_read` frame: one events-stream entry per id. */
export interface ClientEvent {
  type: 'ack' | 'mark_read';
  userId: string;
  /** 1 to MAX_ACK_IDS ids, distinct. */
  notificationIds: readonly string[];
  connectionId: string;
}

export interface Bridge {
  /** True while every held topic is subscribed and the command connection is ready. */
  readonly up: boolean;
  /** What connections need of the routing: holding topics, and waiting for them. */
  readonly subscriptions: Subscriptions;
  /** The users' control channels, held while a user has a connection here (presence.ts). */
  readonly controls: Subscriptions;
  /** The command connection (presence.ts's batches). */
  readonly commands: Redis;
  /** PUBLISHes a control message on the user's channel; resolves with how many gateways heard it. */
  publishControl(userId: string, message: string): Promise<number>;
  /**
   * Publish each item, its payload JSON (one pipeline): herald_publish with history on,
   * answering each item's position (id and offset) in order; else PUBLISH (undefined:
   * each gateway names a payload without an id itself).
   */
  publish(items: readonly { topic: string; payload: string }[]): Promise<Position[] | undefined>;
  /** One XADD per id to the events stream, capped with MAXLEN ~, in one pipeline (one round trip). */
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
  /** This gateway's name in recorder leases, seen keys and presence: unique per process start. */
  gatewayId: string;
  /** A message on a user's control channel (control.ts). */
  onControl(userId: string, message: Buffer): void;
}

/** How long an ack or mark_read waits for a command connection that is reconnecting, ms. */
const EVENT_WAIT_MS = 2000;
/** Each step of close(), at most, ms. */
const CLOSE_STEP_MS = 1000;

export function createBridge(opts: BridgeOptions): Bridge {
  const { prefix, events, deliverer, log, metrics } = opts;
  const names = namesOf(opts.namespace);
  const blog = log.child({ component: 'bridge' });
  const caller = opts.gatewayId;

  /** Readiness, this module's one state (update() below). */
  let up = false;
  let closing = false;

  const redis = createRedisConnections({ url: opts.url, log, metrics });
  const { subscriber, commands } = redis;

  const history =
    opts.history === undefined
      ? undefined
      : createHistory(commands, names, librarySettings(opts.namespace, prefix, opts.history, opts.recorders), opts.history);
  const library =
    history === undefined
      ? undefined
      : createLibraryLoader({
          commands,
          history,
          onChange: (why) => {
            if (library?.loaded === true) recorder?.libraryLoaded();
            update(why);
          },
          onConflict: opts.onConflict,
          log,
        });
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
            ts: a.ts,
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
          commandsReady: redis.commandsReady,
          metrics,
          log,
        });

  const interest = createInterest({
    kind: 'topic',
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

  // One channel per user with a connection here: control messages reach only the
  // gateways holding the user.
  const controls = createInterest({
    kind: 'control',
    subscriber,
    channelOf: names.control,
    topicOf: names.userOfControl,
    sticky: () => false,
    onMessage: (userId, message) => opts.onControl(userId, message),
    onIdle: () => undefined,
    onState: () => update('control channels'),
    metrics,
    log,
  });

  // The subscriber connection's events, in the order that matters: the recorder's
  // pattern goes out before the topic channels, so once they are confirmed after a
  // reconnect (and the gap fill reads from there), recording is back too.
  subscriber.on('ready', () => {
    recorder?.subscriberReady();
    interest.connectionReady();
    controls.connectionReady();
  });
  const lost = (): void => {
    recorder?.subscriberLost();
    interest.connectionLost();
    controls.connectionLost();
  };
  subscriber.on('close', lost);
  subscriber.on('reconnecting', lost);
  subscriber.on('end', lost);
  const controlHead = Buffer.from(names.control(''), 'utf8').subarray(0, -1);
  subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
    if (channel.length > controlHead.length && channel.subarray(0, controlHead.length).equals(controlHead))
      controls.onMessage(channel, message);
    else interest.onMessage(channel, message);
  });
  if (recorder !== undefined) subscriber.on('pmessageBuffer', recorder.onMessage);
  commands.on('ready', () => update('command connection ready'));
  commands.on('close', () => update('command connection closed'));

  // Readiness: derived from the parts' states whenever one changes.
  function update(why: string): void {
    const value =
      !closing && interest.up && controls.up && commands.status === 'ready' && (library?.loaded ?? true) && (recorder?.settled ?? true);
    if (up === value) return;
    up = value;
    metrics.redisUp.set(value ? 1 : 0);
    if (value)
      blog.info({ namespace: opts.namespace, history: history !== undefined, recorderSlot: recorder?.slot }, 'redis subscription active');
    else if (!closing) blog.warn({ why }, 'redis unavailable');
  }

  redis.connect();

  return {
    get up() {
      return up;
    },
    subscriptions: interest,
    controls,
    commands,
    publishControl: (userId, message) => commands.publish(names.control(userId), message),
    history,
    get recorderSlot() {
      return recorder?.slot;
    },
    async publish(items) {
      if (history !== undefined) {
        // POST /publish serialised each item's data: JSON, known without a parse.
        return await history.publish(items.map((i) => ({ ...i, json: true })));
      }
      const pipeline = commands.pipeline();
      for (const { topic, payload } of items) pipeline.publish(topicToChannel(prefix, topic), payload);
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err !== null);
      if (results === null || failed !== undefined) throw failed?.[0] ?? new Error('pipeline aborted');
      return undefined;
    },
    async recordEvent(e) {
      // A gateway that just started (or reconnected) accepts sockets before its
      // command connection is back: wait for it briefly rather than fail the event.
      await redis.commandsReady(EVENT_WAIT_MS);
      const ts = String(Date.now());
      const pipeline = commands.pipeline();
      for (const notificationId of e.notificationIds) {
        pipeline.xadd(
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
          notificationId,
          'connectionId',
          e.connectionId,
          'ts',
          ts,
        );
      }
      const results = await pipeline.exec();
      // Redis runs the XADDs one by one: any that failed fails the frame (the client
      // retries it whole; an id recorded twice is what at-least-once events allow).
      const failed = results?.find(([err]) => err !== null);
      if (results === null || failed !== undefined) throw failed?.[0] ?? new Error('pipeline aborted');
    },
    async close() {
      closing = true;
      update('closing');
      // Each step is bounded: a Redis that hangs must not hold the shutdown.
      if (recorder !== undefined) await within(recorder.close(), CLOSE_STEP_MS);
      await interest.close();
      await controls.close();
      await redis.close(CLOSE_STEP_MS);
    },
  };
}

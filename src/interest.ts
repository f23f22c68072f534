// Interest routing: the gateway's Redis subscriber holds one channel per topic that a
// connection here holds (or is about to), so Redis sends this gateway only what it will
// deliver, whatever the number of gateways. Topics are reference-counted (uWS reports
// a topic's first and last subscriber; a connection being set up reserves its topics),
// and SUBSCRIBE/UNSUBSCRIBE are batched: a burst of connects costs a few commands, not
// one per connection. One state machine: the subscriber connection and its channels.
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import { available, newBudget } from './limits.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** What connections need of the routing; embedded mode has a trivial one. */
export interface Subscriptions {
  /** One more holder of `topic` here (a uWS subscriber, or a connection being set up). */
  hold(topic: string): void;
  /** One holder fewer; at none the channel is left (in the next batch). */
  release(topic: string): void;
  /**
   * Calls `done` once Redis delivers every one of `topics` to this gateway: at once
   * when it already does, or when the subscriber connection is down (the gap fill
   * covers that time once it is back).
   */
  whenSubscribed(topics: readonly string[], done: () => void): void;
}

export const alwaysSubscribed: Subscriptions = {
  hold: () => undefined,
  release: () => undefined,
  whenSubscribed: (_topics, done) => done(),
};

export interface InterestOptions {
  /** What the routes are: topics (notifications) or users (control.ts's channels). */
  kind: 'topic' | 'control';
  /** The subscriber connection (autoResubscribe off: connectionReady subscribes again).
   *  Its owner calls connectionReady, connectionLost and onMessage. */
  subscriber: Redis;
  channelOf(topic: string): string;
  /** channelOf's inverse; undefined for a channel that is not one of ours. */
  topicOf(channel: string): string | undefined;
  /** Held by every connection (system): subscribed once, never left. */
  sticky(topic: string): boolean;
  onMessage(topic: string, message: Buffer, receivedAt: number): void;
  /** A topic nobody here holds any more (per-topic state elsewhere can go). */
  onIdle(topic: string): void;
  /** true once every held topic is subscribed after a (re)connect; false when the connection is lost. */
  onState(up: boolean): void;
  metrics: Metrics;
  log: Logger;
}

export interface Interest extends Subscriptions {
  /** Topics held here: what a gap fill covers. */
  readonly held: Iterable<string>;
  readonly up: boolean;
  /** The connection is (again) ready: subscribe every held topic. */
  connectionReady(): void;
  connectionLost(): void;
  /** A message on one of the topic channels. */
  onMessage(channel: Buffer, message: Buffer): void;
  /** Leave every channel (shutdown). */
  close(): Promise<void>;
}

/**
 * SUBSCRIBEs are paced by a token bucket: while it has tokens a new topic goes out at
 * once (one command in flight; what arrives meanwhile joins the next), and once a
 * connect storm empties it, at most SUBSCRIBE_PER_S commands a second go out, each for
 * everything that arrived meanwhile. A storm of thousands of connects costs a few
 * hundred commands, not one per connection; a lone connect waits for nothing.
 */
const SUBSCRIBE_BURST = 50;
// Not fewer: a steady stream of new users (each a new channel of each kind) waits for the
// bucket, up to 1/SUBSCRIBE_PER_S s per connect once the burst is spent.
const SUBSCRIBE_PER_S = 200;
/** The bucket's refill period: SUBSCRIBE_BURST tokens per this many ms. */
const SUBSCRIBE_REFILL_MS = (1000 * SUBSCRIBE_BURST) / SUBSCRIBE_PER_S;
/** Idle topics are left together in one UNSUBSCRIBE this long after the first of them
 *  turned idle, ms (a topic held again meanwhile stays). */
const UNSUBSCRIBE_EVERY_MS = 1000;
/** Channels per command: bounds one command's size and Redis time. */
const CHUNK = 1000;

interface Waiter {
  remaining: number;
  done: () => void;
}

export function createInterest(opts: InterestOptions): Interest {
  const { subscriber, metrics, log } = opts;
  const ilog = log.child({ component: 'interest' });
  /** Topic -> holders here. Sticky topics stay at >= 1. */
  const refs = new Map<string, number>();
  /** Channels Redis confirmed on the current connection. */
  const active = new Set<string>();
  /** Held, not yet sent. */
  const pending = new Set<string>();
  /** Active, no holder left: left at the next unsubscribe flush unless held again. */
  const idle = new Set<string>();
  const waiters = new Map<string, Waiter[]>();
  let connected = false;
  let up = false;
  let inFlight = false;
  let batchTimer: NodeJS.Timeout | undefined;
  const bucket = newBudget(SUBSCRIBE_BURST, performance.now());
  /** Bumped when the connection is lost: answers to commands of an older one are ignored. */
  let generation = 0;

  function setUp(value: boolean): void {
    if (up === value) return;
    up = value;
    opts.onState(value);
  }

  function settle(topic: string): void {
    const list = waiters.get(topic);
    if (list === undefined) return;
    waiters.delete(topic);
    for (const w of list) if (--w.remaining === 0) w.done();
  }

  function schedule(): void {
    if (!connected || inFlight || batchTimer !== undefined || pending.size === 0) return;
    const tokens = available(bucket, performance.now(), SUBSCRIBE_BURST, SUBSCRIBE_REFILL_MS);
    // setTimeout rather than a microtask even when a token is there: the topics of
    // everything the event loop is handling now go out together.
    batchTimer = setTimeout(flush, tokens >= 1 ? 0 : Math.ceil(((1 - tokens) * 1000) / SUBSCRIBE_PER_S));
  }

  /** One SUBSCRIBE of up to CHUNK pending topics; the next goes out when it is confirmed. */
  function flush(): void {
    batchTimer = undefined;
    if (!connected || pending.size === 0) return;
    const topics: string[] = [];
    for (const t of pending) {
      topics.push(t);
      if (topics.length === CHUNK) break;
    }
    for (const t of topics) pending.delete(t);
    inFlight = true;
    // The resubscribe after a (re)connect is not paced. A token is taken even when the
    // timer fired a hair early (timers keep whole ms): the debt delays the next command.
    if (up) {
      available(bucket, performance.now(), SUBSCRIBE_BURST, SUBSCRIBE_REFILL_MS);
      bucket.tokens -= 1;
    }
    const gen = generation;
    metrics.redisSubscriptionCommand('subscribe');
    subscriber.subscribe(...topics.map(opts.channelOf)).then(
      () => {
        if (gen !== generation) return; // the connection went meanwhile; 'ready' starts over
        inFlight = false;
        for (const t of topics) {
          active.add(t);
          if (!refs.has(t)) idled(t); // released while in flight
          settle(t);
        }
        metrics.redisSubscriptions(opts.kind, active.size);
        // After a (re)connect the backlog goes out at once, a chunk at a time; otherwise
        // what came meanwhile waits for its batch.
        if (!up && pending.size > 0) flush();
        else if (pending.size > 0) schedule();
        else setUp(true);
      },
      (err: Error) => {
        if (gen !== generation) return;
        inFlight = false;
        // Without its channels the gateway delivers nothing: start over on a new connection.
        ilog.error({ err, channels: topics.length }, 'subscribe failed; reconnecting');
        subscriber.disconnect(true);
      },
    );
  }

  /** Set while topics are idle: leaves them all in one go (an event, not a poll). */
  let leaveTimer: NodeJS.Timeout | undefined;
  function idled(topic: string): void {
    idle.add(topic);
    if (leaveTimer !== undefined || !connected) return;
    leaveTimer = setTimeout(leave, UNSUBSCRIBE_EVERY_MS);
    leaveTimer.unref();
  }
  function leave(): void {
    leaveTimer = undefined;
    if (!connected) return;
    while (idle.size > 0) {
      const topics: string[] = [];
      for (const t of idle) {
        topics.push(t);
        if (topics.length === CHUNK) break;
      }
      for (const t of topics) {
        idle.delete(t);
        active.delete(t);
      }
      metrics.redisSubscriptionCommand('unsubscribe');
      // A topic held again before this is confirmed is subscribed again after it (same
      // connection, commands in order).
      subscriber.unsubscribe(...topics.map(opts.channelOf)).catch(() => undefined);
    }
    metrics.redisSubscriptions(opts.kind, active.size);
  }

  function ready(): void {
    connected = true;
    active.clear();
    idle.clear();
    for (const t of refs.keys()) pending.add(t);
    if (pending.size === 0) setUp(true);
    else flush();
  }
  function lost(): void {
    if (!connected) return;
    connected = false;
    generation++;
    inFlight = false;
    active.clear();
    pending.clear();
    idle.clear();
    clearTimeout(batchTimer);
    batchTimer = undefined;
    clearTimeout(leaveTimer);
    leaveTimer = undefined;
    metrics.redisSubscriptions(opts.kind, 0);
    // Whoever waits is answered now: delivery resumes, gap-filled, once the connection is back.
    for (const t of [...waiters.keys()]) settle(t);
    setUp(false);
  }

  return {
    connectionReady: ready,
    connectionLost: lost,
    onMessage(channel, message) {
      const receivedAt = performance.now();
      const topic = opts.topicOf(channel.toString());
      metrics.redisMessages(opts.kind);
      if (topic === undefined) return;
      opts.onMessage(topic, message, receivedAt);
    },
    get held() {
      return refs.keys();
    },
    get up() {
      return up;
    },
    hold(topic) {
      const n = refs.get(topic);
      if (n !== undefined) {
        refs.set(topic, n + 1);
        return;
      }
      refs.set(topic, 1);
      if (idle.delete(topic) || active.has(topic)) return;
      pending.add(topic);
      schedule();
    },
    release(topic) {
      const n = refs.get(topic);
      if (n === undefined || opts.sticky(topic)) return;
      if (n > 1) {
        refs.set(topic, n - 1);
        return;
      }
      refs.delete(topic);
      opts.onIdle(topic);
      if (pending.delete(topic)) settle(topic);
      else if (active.has(topic)) idled(topic);
    },
    whenSubscribed(topics, done) {
      if (!connected) return done();
      const w: Waiter = { remaining: 0, done };
      for (const t of topics) {
        if (active.has(t)) continue;
        w.remaining++;
        const list = waiters.get(t);
        if (list === undefined) waiters.set(t, [w]);
        else list.push(w);
      }
      if (w.remaining === 0) done();
    },
    async close() {
      clearTimeout(leaveTimer);
      clearTimeout(batchTimer);
      connected = false;
    },
  };
}

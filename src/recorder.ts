// The recorder role (history on): a few gateways (HERALD_RECORDERS slots, leases in
// Redis) pattern-subscribe to `<prefix>:*` and record every plain PUBLISH into the
// topic's history through the function library, which announces each newly recorded
// notification, with its position, on the topic's internal channel: the channel the
// gateways holding that topic subscribe to. With two recorders every message is still
// recorded and announced once (the library's seen keys), and either one can die
// without a message lost; a lapsed slot is taken by another gateway within
// LEASE_TTL_MS + LEASE_EVERY_MS. One state machine: whether this gateway records.
import type { Redis } from 'ioredis';
import { isJson, isTooLarge } from './deliver.js';
import type { Names } from './keys.js';
import { LEASE_TTL_MS } from './library.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { channelToTopic } from './topics.js';

export interface RecorderOptions {
  /** The gateway's subscriber connection: the pattern subscription lives beside the
   *  topic channels, so that once those are back after a reconnect, so is recording. */
  subscriber: Redis;
  /** The gateway's command connection: leases and recording calls go through it. */
  commands: Redis;
  names: Names;
  prefix: string;
  /** This gateway's name in leases and seen keys: unique per process start. */
  caller: string;
  maxNotificationBytes: number;
  /** Bytes of payload that may wait to be recorded, calls in flight included (HERALD_RECORDER_MAX_WAITING_BYTES). */
  maxWaitingBytes: number;
  /** The epoch each recording call answers with. */
  onEpoch(epoch: string): void;
  /** Called once, when `settled` turns true. */
  onSettled(): void;
  metrics: Metrics;
  log: Logger;
}

export interface Recorder {
  /** The slot held, or undefined. */
  readonly slot: number | undefined;
  /** This gateway knows whether it records: its first lease call found no free slot,
   *  or it took one and its pattern subscription is confirmed. Until then a plain
   *  PUBLISH may reach no recorder, so the gateway does not call itself ready. */
  readonly settled: boolean;
  /** The library is (again) loaded: try for a slot, and any failed recording, now rather than at the next tick. */
  libraryLoaded(): void;
  /** The subscriber connection is (again) ready: subscribe the pattern when holding a
   *  slot. Call before the topic channels are subscribed again (commands keep order). */
  subscriberReady(): void;
  subscriberLost(): void;
  /** A message of the pattern subscription. */
  onMessage(pattern: Buffer, channel: Buffer, payload: Buffer): void;
  /** Give the slot up and stop (shutdown). */
  close(): Promise<void>;
}

/** A lease call this often, ms (renewal, or an attempt at a free slot). */
export const LEASE_EVERY_MS = 1000;
/** Messages, and payload bytes, per recording call: bound one call's Redis time and size. */
const RECORD_BATCH = 256;
const RECORD_BATCH_BYTES = 1024 * 1024;
/** Recording calls in flight at once. */
const MAX_IN_FLIGHT = 4;
/**
 * Messages waiting to be recorded (Redis slow, or refusing writes), in-flight calls
 * included, are bounded by count and by bytes (RecorderOptions.maxWaitingBytes); past
 * either bound the oldest waiting are dropped, counted
 * (herald_history_writes_total{result="dropped"}) and logged.
 */
export const MAX_QUEUED_MESSAGES = 100_000;
/** After a failed recording call, the next try, ms. */
const RETRY_MS = 1000;

/** One pattern subscription's life: `since` is when it began (Redis time, ms), read
 *  just after it was confirmed; entries recorded before it are publishes it never
 *  received (library.ts, record). */
interface Span {
  since: number | undefined;
}

interface Message {
  topic: string;
  /** j: JSON, t: text (checked here once, so that no gateway parses it again). */
  kind: 'j' | 't';
  payload: Buffer;
  /** The subscription that brought it. */
  span: Span;
}

export function createRecorder(opts: RecorderOptions): Recorder {
  const { subscriber, commands, names, metrics } = opts;
  const rlog = opts.log.child({ component: 'recorder' });
  const pattern = `${opts.prefix}:*`;
  const recordFn = `${names.library}_record`;
  let slot: number | undefined;
  /** When the lease was last renewed (performance-free wall clock, ms). */
  let renewedAt = 0;
  let connected = false;
  /** The pattern is subscribed (or being subscribed) on the current connection. */
  let recording = false;
  let span: Span = { since: undefined };
  let closed = false;
  let settled = false;
  function settle(): void {
    if (settled) return;
    settled = true;
    opts.onSettled();
  }

  // Recording: in arrival order (each recorder sees messages in publish order, so
  // offsets follow it), batched per event-loop turn.
  const queue: Message[] = [];
  let queuedBytes = 0;
  let inFlight = 0;
  let inFlightBytes = 0;
  let inFlightMessages = 0;
  let retryAt = 0;
  let flushScheduled = false;
  let droppedSinceLog = 0;

  function enqueue(m: Message): void {
    queue.push(m);
    queuedBytes += m.payload.length;
    while (
      queue.length > 0 &&
      (queue.length + inFlightMessages > MAX_QUEUED_MESSAGES || queuedBytes + inFlightBytes > opts.maxWaitingBytes)
    ) {
      const old = queue.shift() as Message;
      queuedBytes -= old.payload.length;
      droppedSinceLog++;
      metrics.historyWrites('dropped', 1);
    }
    if (droppedSinceLog > 0 && Date.now() - dropLoggedAt >= 10_000) logDrops();
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  }

  function flush(): void {
    flushScheduled = false;
    const now = Date.now();
    if (now < retryAt) {
      flushScheduled = true;
      setTimeout(flush, retryAt - now).unref();
      return;
    }
    while (queue.length > 0 && inFlight < MAX_IN_FLIGHT) {
      // A batch is one span's messages; one whose start is not known yet waits for it.
      const first = (queue[0] as Message).span;
      if (first.since === undefined) return;
      let n = 1;
      let bytes = (queue[0] as Message).payload.length;
      for (; n < queue.length && n < RECORD_BATCH && (queue[n] as Message).span === first; n++) {
        const size = (queue[n] as Message).payload.length;
        if (bytes + size > RECORD_BATCH_BYTES) break;
        bytes += size;
      }
      const batch = queue.splice(0, n);
      const args: Array<string | Buffer> = [opts.caller, String(first.since)];
      for (const m of batch) args.push(m.topic, m.kind, m.payload);
      queuedBytes -= bytes;
      inFlight++;
      inFlightBytes += bytes;
      inFlightMessages += batch.length;
      const landed = (): void => {
        inFlight--;
        inFlightBytes -= bytes;
        inFlightMessages -= batch.length;
      };
      commands.call('FCALL', recordFn, '0', ...args).then(
        (reply) => {
          landed();
          const [epoch, recorded, reached] = reply as [string, number, number];
          opts.onEpoch(epoch);
          metrics.historyWrites('recorded', recorded);
          metrics.announcementsReached.inc(reached);
          metrics.historyWrites('found', batch.length - recorded);
          if (queue.length > 0 && !flushScheduled) flush();
        },
        (err: Error) => {
          landed();
          // Kept (at the front, in order) and tried again shortly: a notification is
          // delivered once it is recorded, never without its position.
          metrics.historyWrites('failed', batch.length);
          rlog.warn({ err, messages: batch.length, queued: queue.length + batch.length }, 'history write failed; retrying');
          queue.unshift(...batch);
          queuedBytes += bytes;
          retryAt = Date.now() + RETRY_MS;
          if (!flushScheduled) {
            flushScheduled = true;
            setTimeout(flush, RETRY_MS).unref();
          }
        },
      );
    }
  }

  // The first drop is logged at once, then at most one line each 10 s with the count.
  let dropLoggedAt = Number.NEGATIVE_INFINITY;
  function logDrops(): void {
    if (droppedSinceLog === 0) return;
    rlog.error(
      { dropped: droppedSinceLog, maxMessages: MAX_QUEUED_MESSAGES, maxBytes: opts.maxWaitingBytes },
      'notifications dropped: too many waiting to be recorded',
    );
    droppedSinceLog = 0;
    dropLoggedAt = Date.now();
  }
  const dropLog = setInterval(logDrops, 10_000);
  dropLog.unref();

  function onMessage(_pattern: Buffer, channel: Buffer, payload: Buffer): void {
    metrics.redisMessages('pattern');
    const topic = channelToTopic(opts.prefix, channel.toString());
    if (topic === undefined) {
      metrics.notificationDropped('invalid_topic');
      return;
    }
    if (isTooLarge(payload, opts.maxNotificationBytes)) {
      metrics.notificationDropped('too_large');
      return;
    }
    // Checked once here for every gateway, which then embeds the payload without a parse.
    enqueue({ topic, kind: isJson(payload.toString()) ? 'j' : 't', payload, span });
  }

  function startRecording(): void {
    if (recording || !connected || slot === undefined) return;
    recording = true;
    const current: Span = { since: undefined };
    span = current;
    // Redis time is read after the subscription is confirmed: a publish between the two
    // is taken for a new one (recorded twice at worst, never lost).
    subscriber
      .psubscribe(pattern)
      .then(() => {
        settle();
        return commands.call('TIME');
      })
      .then(
        (time) => {
          const [sec, us] = time as [string, string];
          current.since = Number(sec) * 1000 + Math.floor(Number(us) / 1000);
          rlog.info({ slot, pattern }, 'recording');
          if (queue.length > 0 && !flushScheduled) flush();
        },
        (err: Error) => {
          // What this span brought is recorded against the local clock (close to Redis's:
          // it must not wait forever); the next lease tick tries again.
          current.since ??= Date.now();
          if (span === current) recording = false;
          rlog.warn({ err }, 'cannot start recording; trying again');
        },
      );
  }

  function stopRecording(why: string): void {
    if (slot === undefined) return;
    rlog.info({ slot, why }, 'recording stopped');
    if (recording && connected) subscriber.punsubscribe(pattern).catch(() => undefined);
    recording = false;
    slot = undefined;
    metrics.recorder.set(0);
  }

  async function lease(): Promise<void> {
    if (closed) return;
    // A lease not renewed within its TTL may be another gateway's by now.
    if (slot !== undefined && Date.now() - renewedAt > LEASE_TTL_MS) stopRecording('lease lapsed');
    // A gateway that cannot receive the pattern does not renew: its slot lapses to another.
    if (commands.status !== 'ready' || !connected) return;
    let got: number;
    try {
      got = (await commands.call('FCALL', `${names.library}_lease`, '0', opts.caller)) as number;
    } catch {
      return; // tried again next time; the connection logs the error
    }
    if (closed) return;
    if (got < 0) {
      if (slot !== undefined) stopRecording('slot taken');
      settle();
      return;
    }
    renewedAt = Date.now();
    if (slot !== got) {
      if (slot !== undefined) stopRecording('slot changed');
      slot = got;
      metrics.recorder.set(1);
      metrics.recorderLeases.inc();
    }
    startRecording(); // no-op while recording
  }

  const leaseTimer = setInterval(() => void lease(), LEASE_EVERY_MS);
  leaseTimer.unref();

  return {
    get slot() {
      return slot;
    },
    get settled() {
      return settled;
    },
    libraryLoaded() {
      void lease();
      // Calls that failed because the library was missing (Redis restarted without its
      // data) go again now rather than at the retry tick.
      if (retryAt > Date.now()) {
        retryAt = 0;
        flush();
      }
    },
    subscriberReady() {
      connected = true;
      startRecording();
      // A slot that lapsed while the subscriber was away (an outage longer than the
      // lease), or a library loaded before this connection was back (when lease() does
      // not try), is tried for now, not at the next tick: recording is what delivery waits for.
      if (slot === undefined) void lease();
    },
    subscriberLost() {
      connected = false;
      recording = false;
    },
    onMessage,
    async close() {
      closed = true;
      clearInterval(leaseTimer);
      clearInterval(dropLog);
      const held = slot !== undefined;
      stopRecording('closing');
      connected = false;
      if (held && commands.status === 'ready') {
        await commands.call('FCALL', `${names.library}_release`, '0', opts.caller).catch(() => undefined);
      }
    },
  };
}

// The recorder role (history on): a few gateways (HERALD_RECORDERS slots, leases in
// Redis) pattern-subscribe to `<prefix>:*` and record every plain PUBLISH into the
// topic's history through the function library, which announces each newly recorded
// notification, with its position, on the topic's internal channel: the channel the
// gateways holding that topic subscribe to. With two recorders every message is still
// recorded and announced once (the library's seen keys), and either one can die
// without a message lost; a lapsed slot is taken by another gateway within
// LEASE_TTL_MS + LEASE_EVERY_MS. One state machine: whether this gateway records (its
// slot, and its pattern subscription's span); what waits to be recorded is
// recordqueue.ts's.
import type { Redis } from 'ioredis';
import type { Names } from './keys.js';
import { LEASE_TTL_MS } from './library.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { isJson, isTooLarge } from './payload.js';
import { createRecordQueue, type Span } from './recordqueue.js';
import { channelToTopic } from './topics.js';

export interface RecorderOptions {
  /** The gateway's subscriber connection: the pattern subscription lives beside the
   *  topic channels, so that once those are back after a reconnect, so is recording. */
  subscriber: Redis;
  /** The gateway's command connection: leases and recording calls (recordqueue.ts) go through it. */
  commands: Redis;
  names: Names;
  prefix: string;
  /** This gateway's name in leases and seen keys: unique per process start. */
  caller: string;
  maxNotificationBytes: number;
  /** RecordQueueOptions.maxWaitingBytes. */
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

export function createRecorder(opts: RecorderOptions): Recorder {
  const { subscriber, commands, names, metrics } = opts;
  const rlog = opts.log.child({ component: 'recorder' });
  const pattern = `${opts.prefix}:*`;
  /** What the pattern subscription brought, waiting to be recorded. */
  const queue = createRecordQueue({
    commands,
    recordFn: `${names.library}_record`,
    caller: opts.caller,
    maxWaitingBytes: opts.maxWaitingBytes,
    onEpoch: opts.onEpoch,
    metrics,
    log: opts.log,
  });
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
    queue.add({ topic, kind: isJson(payload.toString()) ? 'j' : 't', payload, span });
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
          queue.kick();
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
      queue.retryNow();
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
      queue.close();
      const held = slot !== undefined;
      stopRecording('closing');
      connected = false;
      if (held && commands.status === 'ready') {
        await commands.call('FCALL', `${names.library}_release`, '0', opts.caller).catch(() => undefined);
      }
    },
  };
}

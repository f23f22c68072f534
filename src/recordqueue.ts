// What a recorder (recorder.ts) has received and not yet recorded: the plain
// PUBLISHes of its pattern subscription, recorded through the function library's
// <ns>_record in arrival order (each recorder sees messages in publish order, so
// offsets follow it), batched per event-loop turn, a few calls in flight, bounded by
// count and bytes. One state machine: the queue, the calls in flight, and the retry
// after a failed call (a notification is delivered once it is recorded, never without
// its position, so a failed batch is kept and tried again).
import type { Redis } from 'ioredis';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

export interface RecordQueueOptions {
  /** The command connection: recording calls go through it. */
  commands: Redis;
  /** The library's <ns>_record function. */
  recordFn: string;
  /** This gateway's name in seen keys: unique per process start. */
  caller: string;
  /** Bytes of payload that may wait to be recorded, calls in flight included (HERALD_RECORDER_MAX_WAITING_BYTES). */
  maxWaitingBytes: number;
  /** The epoch each recording call answers with. */
  onEpoch(epoch: string): void;
  metrics: Metrics;
  log: Logger;
}

export interface RecordQueue {
  /** Queue a message (the oldest waiting are dropped past the bounds). */
  add(m: Message): void;
  /** A span's start became known: record what waited for it. */
  kick(): void;
  /** Calls that failed (the library was missing: Redis restarted without its data) go again now rather than at the retry tick. */
  retryNow(): void;
  /** Stop: what waits is not recorded (the drops not yet logged are). */
  close(): void;
}

/** Messages, and payload bytes, per recording call: bound one call's Redis time and size. */
const RECORD_BATCH = 256;
const RECORD_BATCH_BYTES = 1024 * 1024;
/** Recording calls in flight at once. */
const MAX_IN_FLIGHT = 4;
/**
 * Messages waiting to be recorded (Redis slow, or refusing writes), in-flight calls
 * included, are bounded by count and by bytes (RecordQueueOptions.maxWaitingBytes); past
 * either bound the oldest waiting are dropped, counted
 * (herald_history_writes_total{result="dropped"}) and logged.
 */
export const MAX_QUEUED_MESSAGES = 100_000;
/** After a failed recording call, the next try, ms. */
const RETRY_MS = 1000;
/** At most one log line about dropped notifications this often, ms. */
const DROP_LOG_EVERY_MS = 10_000;

/** One pattern subscription's life: `since` is when it began (Redis time, ms), read
 *  just after it was confirmed; entries recorded before it are publishes it never
 *  received (library.lua, record). */
export interface Span {
  since: number | undefined;
}

export interface Message {
  topic: string;
  /** j: JSON, t: text (checked once by the recorder, so that no gateway parses it again). */
  kind: 'j' | 't';
  payload: Buffer;
  /** The subscription that brought it. */
  span: Span;
}

export function createRecordQueue(opts: RecordQueueOptions): RecordQueue {
  const { commands, recordFn, metrics } = opts;
  const rlog = opts.log.child({ component: 'recorder' });
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
    if (droppedSinceLog > 0) noteDrops();
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

  // The first drop is logged at once, then at most one line each DROP_LOG_EVERY_MS with
  // the count: a timer is set only while drops wait to be logged.
  let dropLoggedAt = Number.NEGATIVE_INFINITY;
  let dropLogTimer: NodeJS.Timeout | undefined;
  function noteDrops(): void {
    if (dropLogTimer !== undefined) return;
    const wait = dropLoggedAt + DROP_LOG_EVERY_MS - Date.now();
    if (wait <= 0) logDrops();
    else {
      dropLogTimer = setTimeout(logDrops, wait);
      dropLogTimer.unref();
    }
  }
  function logDrops(): void {
    dropLogTimer = undefined;
    if (droppedSinceLog === 0) return;
    rlog.error(
      { dropped: droppedSinceLog, maxMessages: MAX_QUEUED_MESSAGES, maxBytes: opts.maxWaitingBytes },
      'notifications dropped: too many waiting to be recorded',
    );
    droppedSinceLog = 0;
    dropLoggedAt = Date.now();
  }

  return {
    add: enqueue,
    kick() {
      if (queue.length > 0 && !flushScheduled) flush();
    },
    retryNow() {
      if (retryAt > Date.now()) {
        retryAt = 0;
        flush();
      }
    },
    close() {
      clearTimeout(dropLogTimer);
      logDrops();
    },
  };
}

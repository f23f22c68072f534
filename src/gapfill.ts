// Gap fill (history on, docs/DELIVERY.md): clients stay connected while their gateway's
// Redis subscriber reconnects, and whatever was announced meanwhile never reached the
// gateway. Once the subscriptions are back it reads each held topic's history from
// where it stood at the drop and delivers what is missing (the dedup window drops what
// was delivered already); a topic it cannot refill gets `resumed` recovered: false.
// One state machine: subscribed, or dropped since a point.
import { performance } from 'node:perf_hooks';
import type { Deliverer } from './deliver.js';
import type { History, ResumePoint } from './history.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { encode } from './protocol.js';

export interface GapFillOptions {
  history: History;
  deliverer: Deliverer;
  /** The topics held here now. */
  held(): Iterable<string>;
  /** Resolves once history can be read (the command connection is ready), or after `ms`. */
  commandsReady(ms: number): Promise<void>;
  metrics: Metrics;
  log: Logger;
}

export interface GapFill {
  /** The subscriptions are confirmed (the first time, or again after a drop). */
  subscribed(): void;
  /** The subscriber connection was lost. */
  lost(): void;
}

/** How far before the newest entry heard a fill starts on topics without an offset, ms. */
export const GAP_MARGIN_MS = 2000;
/** The second pass after a resubscribe, ms: catches what recorders recorded late. */
const LATE_FILL_MS = 2000;
/** How long a fill waits for the command connection, ms. */
const COMMANDS_WAIT_MS = 10_000;

export function createGapFill(opts: GapFillOptions): GapFill {
  const { history, deliverer, metrics } = opts;
  const glog = opts.log.child({ component: 'gapfill' });
  /** Wall clock when the subscriptions were last confirmed. */
  let subscribedAt: number | undefined;
  /** Set while dropped: the epoch the delivered offsets belong to (a reconnecting
   *  command connection may already have read a new one: Redis lost its data), the
   *  offsets delivered up to the drop (taken then: live notifications that arrive with
   *  the resubscription, before the fill starts, must not move a topic's start past
   *  what was missed), and where topics without one start. */
  let drop: { epoch: string | undefined; offsets: ReadonlyMap<string, string>; sinceMs: number } | undefined;

  /**
   * A topic with a notification delivered here resumes after its offset; any other
   * held topic from shortly before the newest entry this gateway had heard of
   * (GAP_MARGIN_MS covers entries recorded out of publish order).
   */
  function points(offsets: ReadonlyMap<string, string>, sinceMs: number): Map<string, ResumePoint> {
    const out = new Map<string, ResumePoint>();
    for (const topic of opts.held()) {
      const offset = offsets.get(topic);
      out.set(topic, offset !== undefined ? { offset } : { since: sinceMs });
    }
    return out;
  }

  async function fill(epoch: string | undefined, at: ReadonlyMap<string, ResumePoint>, first: boolean): Promise<void> {
    if (epoch === undefined || at.size === 0) return;
    await opts.commandsReady(COMMANDS_WAIT_MS);
    let recoveries: Awaited<ReturnType<typeof history.since>>;
    try {
      recoveries = await history.since(epoch, at, Date.now());
    } catch (err) {
      glog.warn({ err, topics: at.size }, 'gap fill failed');
      if (first) for (const topic of at.keys()) unrecoverable(topic);
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
        const position = { id: e.id, offset: e.offset, ts: e.ts, epoch: history.epoch ?? epoch, replayed: true, json: e.json };
        if (deliverer.deliver(topic, e.payload, performance.now(), position) === 'published') replayed++;
      }
    }
    metrics.replayedNotifications.inc(replayed);
    glog.info({ topics: recoveries.size, replayed, pass: first ? 'first' : 'late' }, 'gap filled after resubscribing');
  }

  function unrecoverable(topic: string): void {
    metrics.gapFill('unrecoverable');
    deliverer.signal(topic, encode({ type: 'resumed', topics: { [topic]: { recovered: false } } }));
  }

  return {
    subscribed() {
      subscribedAt = Date.now();
      if (drop === undefined) return;
      const { epoch, offsets, sinceMs } = drop;
      drop = undefined;
      const at = points(offsets, sinceMs);
      void fill(epoch, at, true).then(() => setTimeout(() => void fill(epoch, at, false), LATE_FILL_MS).unref());
    },
    lost() {
      // Only a subscription that was up can have missed anything; a second loss before
      // the fill keeps the first point.
      if (subscribedAt === undefined || drop !== undefined) return;
      drop = {
        epoch: history.epoch,
        offsets: new Map(deliverer.lastOffsets),
        sinceMs: (deliverer.latestEntryMs ?? subscribedAt) - GAP_MARGIN_MS,
      };
    },
  };
}

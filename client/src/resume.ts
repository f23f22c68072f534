// Recovery of missed notifications (the `resume` frame): what the client remembers
// per topic between connections, and the `resume` frames built from it. No socket and
// no timers here: the client feeds in what it sees (notification positions, `resumed`
// answers) and asks for a plan on each reconnect.
//
// Per topic it keeps the highest position seen: a history entry id `<ms>-<seq>` and
// the epoch (Redis dataset) it belongs to. A topic resumes after that entry while the
// entry is recent; otherwise, or without a position, from a time: the moment up to
// which the previous connection is known to have received everything (the latest
// server timestamp it received: a pong's, a notification's), less a margin. Not the
// connection's start (`connected.serverTime`): a topic's history expires
// (HERALD_HISTORY_TTL_S) once the topic goes quiet, and the gateway cannot tell an
// expired history from a trimmed one, so a point older than that is answered
// recovered: false although nothing was missed. A resume point sent but not answered
// yet stays pending: it is sent again, unchanged, on the next connection, even if
// newer notifications arrived meanwhile (the gap behind it is still open).
import { compareOffsets, isOffset, parseOffset } from './grammar.js';
import type { ClientFrame } from './protocol.js';

/** Topics per `resume` frame: the gateway refuses more. */
export const MAX_RESUME_TOPICS = 256;

/**
 * Subtracted from the time sent as `since`: covers notifications recorded just before
 * the timestamp but delivered just after it, and small clock differences between
 * gateways (pong times) and Redis (entry times); replays inside the margin that were
 * already seen are removed by de-duplication.
 */
export const RESUME_MARGIN_MS = 2000;

/**
 * A position at most this old (its entry time against the new connection's
 * serverTime) is resumed from by offset; an older one by time, as its topic's history
 * may have expired meanwhile (HERALD_HISTORY_TTL_S, 300 s by default, should stay above it).
 */
export const RESUME_OFFSET_MAX_AGE_MS = 60_000;

/** Where a topic resumes from: after an entry, or from a time (ms, entry time >= since). */
export type ResumePoint = { offset: string } | { since: number };

export type ResumeFrame = Omit<Extract<ClientFrame, { type: 'resume' }>, 'id'>;

/** A notification's place in its topic's history. */
export interface TopicPosition {
  /** The history entry id, `<ms>-<seq>`. */
  offset: string;
  /** The Redis dataset the offset belongs to. */
  epoch: string;
}

/** The points as `resume` frames of at most `max` topics each, in the points' order. */
export function resumeFrames(epoch: string, points: Iterable<readonly [string, ResumePoint]>, max = MAX_RESUME_TOPICS): ResumeFrame[] {
  if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`resume frames: expected a chunk size >= 1, got ${max}`);
  const chunks: Array<Array<readonly [string, ResumePoint]>> = [];
  for (const entry of points) {
    const last = chunks[chunks.length - 1];
    if (last === undefined || last.length === max) chunks.push([entry]);
    else last.push(entry);
  }
  // fromEntries defines each key (a topic may be `__proto__`), never assigns through a setter.
  return chunks.map((chunk) => ({ type: 'resume', epoch, topics: Object.fromEntries(chunk) }));
}

/** What to send on a reconnect: one epoch, a point per topic. */
export interface ResumePlan {
  epoch: string;
  points: Map<string, ResumePoint>;
  /**
   * First connection: topics whose given position is of another epoch than the plan's
   * (Redis lost the dataset it points into): nothing can be resumed; they are answered
   * `recovered: false` by the client itself.
   */
  lost: string[];
}

export interface PlanTimes {
  /**
   * Server ms up to which the previous connection received everything: the latest
   * server timestamp it received. undefined on the client's first connection: topics
   * then resume only from positions given to it (a position store, the app), or from
   * `since` (the app's), with no age limit on the positions.
   */
  coveredUntil: number | undefined;
  /** First connection only: the app's time (ms) for topics without a position. */
  since?: number | undefined;
  /** Server ms now: the new connection's `serverTime`. */
  now: number;
  /** Default RESUME_MARGIN_MS. */
  marginMs?: number;
  /** Default RESUME_OFFSET_MAX_AGE_MS. */
  offsetMaxAgeMs?: number;
}

interface TopicState {
  position: TopicPosition | undefined;
  /** Sent in a resume not answered yet. */
  pending: ResumePoint | undefined;
}

export class ResumeState {
  readonly #topics = new Map<string, TopicState>();
  #epoch: string | undefined;
  /** The epoch of the pending points (one resume frame carries one epoch). */
  #pendingEpoch: string | undefined;
  /** Topics with a pending point. */
  #pendingCount = 0;

  /** The latest epoch seen, from `connected` frames and notifications. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  noteEpoch(epoch: string): void {
    this.#epoch = epoch;
  }

  /** The highest position seen on `topic` (in its epoch). */
  position(topic: string): TopicPosition | undefined {
    const p = this.#topics.get(topic)?.position;
    return p === undefined ? undefined : { ...p };
  }

  /** Topics with a resume sent and not answered, with their points. */
  get pending(): Map<string, ResumePoint> {
    const out = new Map<string, ResumePoint>();
    for (const [topic, s] of this.#topics) if (s.pending !== undefined) out.set(topic, s.pending);
    return out;
  }

  /**
   * A notification's position (live or replayed): kept when it is past the known one,
   * or of another epoch than it (a newer dataset: the old offsets mean nothing there).
   * The epoch also becomes the latest one. False (and ignored) when it is not an offset.
   */
  observe(topic: string, offset: string, epoch: string): boolean {
    if (!isOffset(offset)) return false;
    this.#epoch = epoch;
    const s = this.#state(topic);
    if (s.position === undefined || s.position.epoch !== epoch || compareOffsets(offset, s.position.offset) > 0) {
      s.position = { offset, epoch };
    }
    return true;
  }

  /**
   * A connection that does not resume (history was off on the previous one, or resume
   * is turned off): what was missed before is lost to the client, so positions and
   * pending points are dropped. The latest epoch is kept.
   */
  restart(): void {
    this.#topics.clear();
    this.#pendingEpoch = undefined;
    this.#pendingCount = 0;
  }

  /**
   * The points for a reconnect, for each topic of `topics` (what the new connection
   * holds): a pending point, as it was sent; else the known position, if of the plan's
   * epoch and at most `offsetMaxAgeMs` old; else `since` = `coveredUntil` - `marginMs`.
   * The plan's epoch is that of the pending points, else the latest known. The points
   * become pending; topics not in `topics` are forgotten. undefined when no epoch is
   * known (nothing then becomes pending).
   */
  plan(topics: Iterable<string>, times: PlanTimes): ResumePlan | undefined {
    const held = new Set(topics);
    for (const topic of [...this.#topics.keys()]) if (!held.has(topic)) this.forget(topic);
    const epoch = this.#pendingCount > 0 ? this.#pendingEpoch : this.#epoch;
    if (epoch === undefined) return undefined;
    const covered = times.coveredUntil;
    const since = covered === undefined ? undefined : Math.max(0, Math.floor(covered - (times.marginMs ?? RESUME_MARGIN_MS)));
    const maxAge = times.offsetMaxAgeMs ?? RESUME_OFFSET_MAX_AGE_MS;
    const points = new Map<string, ResumePoint>();
    const lost: string[] = [];
    for (const topic of held) {
      const s = this.#state(topic);
      if (s.pending === undefined) {
        const p = s.position;
        if (since === undefined) {
          // First connection: what the client was given, however old (the gateway says if the history still reaches it).
          if (p !== undefined && p.epoch !== epoch) {
            lost.push(topic);
            s.position = undefined;
            continue;
          }
          if (p !== undefined) s.pending = { offset: p.offset };
          else if (times.since !== undefined) s.pending = { since: Math.max(0, Math.floor(times.since)) };
          else continue; // nothing known: nothing to resume
        } else {
          const fresh = p !== undefined && p.epoch === epoch && times.now - (parseOffset(p.offset)?.[0] ?? 0) <= maxAge;
          s.pending = p !== undefined && fresh ? { offset: p.offset } : { since };
        }
        this.#pendingCount++;
      }
      points.set(topic, s.pending);
    }
    if (this.#pendingCount > 0) this.#pendingEpoch = epoch;
    return { epoch, points, lost };
  }

  /**
   * A position the client was given (a position store, `initialPositions`), taken when
   * the topic has none yet or this one is further in the same epoch. False when it is not a position.
   */
  seed(topic: string, position: TopicPosition): boolean {
    if (!isOffset(position.offset) || typeof position.epoch !== 'string' || position.epoch === '') return false;
    const s = this.#state(topic);
    const p = s.position;
    if (p === undefined || (p.epoch === position.epoch && compareOffsets(position.offset, p.offset) > 0)) {
      s.position = { offset: position.offset, epoch: position.epoch };
    }
    return true;
  }

  /** The pending point of `topic` and the epoch it was planned in, if any. */
  pendingPoint(topic: string): { epoch: string; point: ResumePoint } | undefined {
    const point = this.#topics.get(topic)?.pending;
    return point === undefined || this.#pendingEpoch === undefined ? undefined : { epoch: this.#pendingEpoch, point };
  }

  /**
   * A `resumed` answer (or signal) for `topic`: not pending any more. Not recovered:
   * the position is forgotten too (the gap behind it cannot be filled; the app reloads
   * the topic instead, and the next resume starts from a time).
   */
  resolved(topic: string, recovered: boolean): void {
    const s = this.#topics.get(topic);
    if (s === undefined) return; // not held (any more): nothing to remember
    this.#unpend(s);
    if (!recovered) s.position = undefined;
  }

  /** The topic is not held any more (unsubscribed, revoked, refused). */
  forget(topic: string): void {
    const s = this.#topics.get(topic);
    if (s === undefined) return;
    this.#unpend(s);
    this.#topics.delete(topic);
  }

  #state(topic: string): TopicState {
    let s = this.#topics.get(topic);
    if (s === undefined) {
      s = { position: undefined, pending: undefined };
      this.#topics.set(topic, s);
    }
    return s;
  }

  #unpend(s: TopicState): void {
    if (s.pending === undefined) return;
    s.pending = undefined;
    if (--this.#pendingCount === 0) this.#pendingEpoch = undefined;
  }
}

// Who is connected here, and across every gateway. Locally: each user with a
// connection here (open, or admitted and being opened), its sockets and the latest
// revocation heard for it. In Redis (presence.lua holds the structures): this
// gateway's count per user and per topic, written in batches once a second with a
// heartbeat, never one command per connection. A gateway that stops beating stops
// counting after HERALD_PRESENCE_TTL_S, and any live gateway removes its entries.
//
// Admission after the token (the per-user cap and revocation) is batched too: the
// upgrades verified while one check is in flight go in the next, one script call.
// Before the check, the gateway subscribes to the user's control channel, so that a
// revocation stored after the check is heard here (control.ts).
import { readFileSync } from 'node:fs';
import { Refusal } from '@herald/client/codes';
import type { Redis } from 'ioredis';
import type { Identity } from './auth.js';
import type { Socket } from './connection.js';
import type { Subscriptions } from './interest.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

const PRESENCE_LUA = readFileSync(new URL('./presence.lua', import.meta.url), 'utf8');

/** What the upgrade answers when the user may not connect. */
export type UserRefusal = typeof Refusal.TokenRevoked | typeof Refusal.TooManyConnectionsForUser;

/** One user with connections here. */
interface UserEntry {
  /** Connections admitted and not yet closed (open, or being opened). */
  count: number;
  /** Upgrades waiting for their admission check. */
  checking: number;
  readonly sockets: Set<Socket>;
  /** The latest revocation heard for the user (unix s; 0: none). */
  revokedAt: number;
}

export interface PresenceConfig {
  gatewayId: string;
  namespace: string;
  /** 0 = no limit. */
  maxConnectionsPerUser: number;
  /** Presence kept in Redis (HERALD_PRESENCE). */
  presence: boolean;
  presenceTtlMs: number;
  /** `connected`/`disconnected` entries go to this stream; undefined = none. */
  events: { stream: string; maxLen: number } | undefined;
  /** How long a revocation is kept (HERALD_JWT_MAX_LIFETIME_S). */
  maxTokenLifetimeS: number;
}

export interface PresenceDeps {
  config: PresenceConfig;
  /** The command connection; undefined in embedded mode. */
  commands: Redis | undefined;
  /** The users' control channels (interest.ts keyed by user id); embedded: alwaysSubscribed. */
  controls: Subscriptions;
  /** Connections here holding `topic` (uWS's count). */
  subscribers(topic: string): number;
  metrics: Metrics;
  log: Logger;
}

export interface Counts {
  users: Map<string, number>;
  topics: Map<string, number>;
}

export interface ConnectionEvent {
  type: 'connected' | 'disconnected';
  userId: string;
  connectionId: string;
  ts: number;
  /** disconnected only. */
  code?: number;
  reason?: string;
  by?: 'server' | 'client';
}

/** Entries (user or topic counts) per flush call, and events per call: bounds one script's Redis time. */
const FLUSH_ENTRIES = 2000;
const FLUSH_EVENTS = 1000;
/** Upgrades per admission check. */
const ADMIT_BATCH = 1000;
/** Events held while Redis is unreachable; past it the oldest are dropped (and counted). */
const MAX_WAITING_EVENTS = 100_000;
const FLUSH_EVERY_MS = 1000;
/** Revocations kept in memory, at most (embedded mode: the only record). */
const MAX_LOCAL_REVOCATIONS = 100_000;

interface Check {
  userId: string;
  issuedAt: number;
  entry: UserEntry;
  resolve: (refusal: UserRefusal | undefined) => void;
}

type PresenceCommand = (...args: string[]) => Promise<unknown>;

export function createPresence(deps: PresenceDeps) {
  const { config, commands, controls, metrics } = deps;
  const { gatewayId: gw, namespace: ns, maxConnectionsPerUser: cap } = config;
  const plog = deps.log.child({ component: 'presence' });
  const users = new Map<string, UserEntry>();
  const dirtyUsers = new Set<string>();
  const dirtyTopics = new Set<string>();
  const events: ConnectionEvent[] = [];
  /** Embedded mode's revocations: user -> [revoked before (s), kept until (ms)]. */
  const localRevocations = new Map<string, [number, number]>();
  const ttl = String(config.presenceTtlMs);

  let call: PresenceCommand | undefined;
  if (commands !== undefined) {
    commands.defineCommand('heraldPresence', { numberOfKeys: 0, lua: PRESENCE_LUA });
    call = (commands as unknown as { heraldPresence: PresenceCommand }).heraldPresence.bind(commands);
  }
  const ready = (): boolean => commands?.status === 'ready';

  function entryOf(userId: string): UserEntry {
    let e = users.get(userId);
    if (e === undefined) {
      e = { count: 0, checking: 0, sockets: new Set(), revokedAt: 0 };
      users.set(userId, e);
      metrics.userConnections.set(users.size);
      controls.hold(userId);
    }
    return e;
  }

  function leaveIfIdle(userId: string, e: UserEntry): void {
    if (e.count > 0 || e.checking > 0 || users.get(userId) !== e) return;
    users.delete(userId);
    metrics.userConnections.set(users.size);
    controls.release(userId);
  }

  function changed(userId: string): void {
    if (config.presence && commands !== undefined) dirtyUsers.add(userId);
  }

  function revokedAt(userId: string): number {
    const local = localRevocations.get(userId);
    if (local !== undefined && local[1] < Date.now()) localRevocations.delete(userId);
    return Math.max(users.get(userId)?.revokedAt ?? 0, localRevocations.get(userId)?.[0] ?? 0);
  }

  /**
   * Revocations this process made or heard (control messages, admission replies): the only
   * record in embedded mode, and what a local decision knows while Redis is unreachable.
   * Bounded: past MAX_LOCAL_REVOCATIONS the oldest is forgotten.
   */
  function remember(userId: string, before: number): void {
    if (before <= (localRevocations.get(userId)?.[0] ?? 0)) return;
    if (localRevocations.size >= MAX_LOCAL_REVOCATIONS) {
      const oldest = localRevocations.keys().next().value;
      if (oldest !== undefined) localRevocations.delete(oldest);
    }
    localRevocations.delete(userId);
    localRevocations.set(userId, [before, Date.now() + config.maxTokenLifetimeS * 1000]);
  }

  /** The decision this process can make alone: embedded mode, presence off, or Redis away. */
  function decideLocally(c: Check): UserRefusal | undefined {
    metrics.admissionCheck('local');
    if (c.issuedAt < revokedAt(c.userId)) return Refusal.TokenRevoked;
    if (cap > 0 && c.entry.count + 1 > cap) return Refusal.TooManyConnectionsForUser;
    return undefined;
  }

  function settle(c: Check, refusal: UserRefusal | undefined): void {
    c.entry.checking--;
    if (refusal === undefined) {
      c.entry.count++;
      changed(c.userId);
    }
    leaveIfIdle(c.userId, c.entry);
    c.resolve(refusal);
  }

  // --- admission checks, batched -------------------------------------------------
  const queue: Check[] = [];
  let checking = false;
  let checkScheduled = false;
  /** Flushes sent so far: one sent while a check is in flight wrote counts without its admissions. */
  let flushesSent = 0;

  function scheduleCheck(): void {
    if (checking || checkScheduled || queue.length === 0) return;
    checkScheduled = true;
    // The upgrades of everything the event loop is handling now go in one call.
    setImmediate(runChecks);
  }

  function runChecks(): void {
    checkScheduled = false;
    const batch = queue.splice(0, ADMIT_BATCH);
    if (batch.length === 0) return;
    if (call === undefined || !ready()) {
      for (const c of batch) settle(c, decideLocally(c));
      scheduleCheck();
      return;
    }
    const args = ['admit', ns, gw, ttl, String(config.presence ? cap : -1)];
    const sent = new Map<string, number>();
    for (const c of batch) {
      if (!sent.has(c.userId)) sent.set(c.userId, c.entry.count);
      args.push(c.userId, String(c.issuedAt), String(sent.get(c.userId)));
    }
    checking = true;
    const flushesBefore = flushesSent;
    call(...args)
      .then(
        (reply) => {
          const out = reply as number[];
          const admitted = new Map<string, number>();
          metrics.admissionCheck('redis', batch.length);
          batch.forEach((c, i) => {
            const verdict = out[2 * i] as number;
            const revoked = out[2 * i + 1] as number;
            if (revoked > 0) remember(c.userId, revoked);
            c.entry.revokedAt = Math.max(c.entry.revokedAt, revoked);
            if (verdict === 1 || c.issuedAt < c.entry.revokedAt) {
              // Revoked in Redis, or a revocation heard on the user's channel since.
              if (verdict === 0) changed(c.userId); // the script counted it: count it out again
              settle(c, Refusal.TokenRevoked);
            } else if (verdict === 2 || (!config.presence && cap > 0 && c.entry.count + 1 > cap)) {
              settle(c, Refusal.TooManyConnectionsForUser);
            } else {
              admitted.set(c.userId, (admitted.get(c.userId) ?? 0) + 1);
              settle(c, undefined);
            }
          });
          // The script wrote what this gateway held when the batch left plus what it
          // admitted; a connection that closed meanwhile is written by the next flush, and
          // so is every count when a flush went out after the batch (Redis ran it after the
          // script: it wrote the count without the admissions).
          if (flushesSent === flushesBefore)
            for (const [userId, n] of admitted) {
              if ((users.get(userId)?.count ?? 0) === (sent.get(userId) ?? 0) + n) dirtyUsers.delete(userId);
            }
        },
        (err: Error) => {
          plog.warn({ err, upgrades: batch.length }, 'admission check failed; deciding with what this gateway knows');
          for (const c of batch) settle(c, decideLocally(c));
        },
      )
      .finally(() => {
        checking = false;
        scheduleCheck();
      });
  }

  // --- the flush: counts, heartbeat and events, once a second --------------------
  let flushing = false;
  /** This gateway has beaten once: a later "not listed" means it was reaped (or Redis lost its data). */
  let listed = false;

  function take<T>(set: Set<T>, n: number): T[] {
    const out: T[] = [];
    for (const x of set) {
      if (out.length === n) break;
      out.push(x);
    }
    for (const x of out) set.delete(x);
    return out;
  }

  function flush(): void {
    if (flushing || call === undefined || !ready()) return;
    const userIds = config.presence ? take(dirtyUsers, FLUSH_ENTRIES) : [];
    const topics = config.presence ? take(dirtyTopics, FLUSH_ENTRIES - userIds.length) : [];
    const batch = events.splice(0, FLUSH_EVENTS);
    const args = ['flush', ns, gw, ttl, config.presence ? '1' : '0', String(userIds.length + topics.length)];
    for (const u of userIds) args.push(`c:${u}`, String(users.get(u)?.count ?? 0));
    for (const t of topics) args.push(`s:${t}`, String(deps.subscribers(t)));
    args.push(config.events?.stream ?? '', String(config.events?.maxLen ?? 0), String(batch.length));
    for (const e of batch) {
      const fields = ['type', e.type, 'userId', e.userId, 'connectionId', e.connectionId, 'gateway', gw, 'ts', String(e.ts)];
      if (e.type === 'disconnected') fields.push('code', String(e.code), 'reason', e.reason ?? '', 'by', e.by ?? 'client');
      args.push(String(fields.length), ...fields);
    }
    if (!config.presence && batch.length === 0) return;
    flushing = true;
    flushesSent++;
    call(...args).then(
      (reply) => {
        const [added, reaped, live] = reply as [number, number, number];
        metrics.presenceFlush(true);
        metrics.presenceWrites.inc(userIds.length + topics.length);
        metrics.connectionEvent('written', batch.length);
        if (config.presence) {
          metrics.presenceReaped.inc(reaped);
          metrics.presenceGateways.set(live);
          if (added === 1 && listed) {
            plog.warn('this gateway was taken for dead (or Redis lost its data): writing its presence again');
            writeAll();
          }
          listed = true;
        }
        flushing = false;
        // A backlog (a reconnect's rewrite, a connect storm) goes out at once, a chunk at a time.
        if (dirtyUsers.size + dirtyTopics.size > 0 || events.length > 0) setImmediate(flush);
      },
      (err: Error) => {
        metrics.presenceFlush(false);
        plog.warn({ err }, 'presence flush failed; retrying');
        for (const u of userIds) dirtyUsers.add(u);
        for (const t of topics) dirtyTopics.add(t);
        events.unshift(...batch);
        flushing = false;
      },
    );
  }

  function writeAll(): void {
    for (const u of users.keys()) dirtyUsers.add(u);
    for (const t of topicsHeld()) dirtyTopics.add(t);
  }

  /** Every topic held here, from the sockets (the flush asks uWS for each count). */
  function topicsHeld(): Set<string> {
    const out = new Set<string>();
    for (const e of users.values()) for (const ws of e.sockets) for (const t of ws.getTopics()) out.add(t);
    return out;
  }

  const timer = call === undefined ? undefined : setInterval(flush, FLUSH_EVERY_MS);
  timer?.unref();
  // Reconnected (Redis may have restarted empty): the next flush tells, by the heartbeat.
  commands?.on('ready', () => setImmediate(flush));

  function queueEvent(e: ConnectionEvent): void {
    if (config.events === undefined || commands === undefined) return;
    if (events.length >= MAX_WAITING_EVENTS) {
      events.shift();
      metrics.connectionEvent('dropped');
    }
    events.push(e);
  }

  return {
    /**
     * An upgrade whose token verified: may the user connect? Resolves undefined when
     * admitted (a place is then held for the user until `opened` + `closed`, or
     * `abandoned`), or with the refusal.
     */
    async admit(identity: Identity): Promise<UserRefusal | undefined> {
      const { userId } = identity;
      const entry = entryOf(userId);
      entry.checking++;
      // Listening to the user's control channel before the check: a revocation stored after it is heard.
      await new Promise<void>((resolve) => controls.whenSubscribed([userId], resolve));
      return new Promise((resolve) => {
        const c: Check = { userId, issuedAt: identity.issuedAt, entry, resolve };
        if (call === undefined) {
          settle(c, decideLocally(c));
          return;
        }
        queue.push(c);
        scheduleCheck();
      });
    },

    /** An admitted upgrade that did not happen (the client left meanwhile). */
    abandoned(userId: string): void {
      const e = users.get(userId);
      if (e === undefined || e.count === 0) return;
      e.count--;
      changed(userId);
      leaveIfIdle(userId, e);
    },

    opened(ws: Socket): void {
      const ud = ws.getUserData();
      const e = entryOf(ud.identity.userId);
      e.sockets.add(ws);
      queueEvent({ type: 'connected', userId: ud.identity.userId, connectionId: ud.connectionId, ts: Date.now() });
    },

    closed(ws: Socket, code: number, reason: string, by: 'server' | 'client'): void {
      const ud = ws.getUserData();
      const userId = ud.identity.userId;
      const e = users.get(userId);
      if (e?.sockets.delete(ws) === true) {
        e.count--;
        changed(userId);
        leaveIfIdle(userId, e);
      }
      queueEvent({ type: 'disconnected', userId, connectionId: ud.connectionId, ts: Date.now(), code, reason, by });
    },

    /** A topic's subscriber count changed here (uWS's subscription handler). */
    topicChanged(topic: string): void {
      if (config.presence && commands !== undefined) dirtyTopics.add(topic);
    },

    /** The user's open sockets here. */
    sockets(userId: string): ReadonlySet<Socket> {
      return users.get(userId)?.sockets ?? new Set();
    },

    /** Whether any connection of the user is here (open or being opened). */
    holds(userId: string): boolean {
      return users.has(userId);
    },

    /** The latest revocation known here for the user (unix s; 0: none). */
    revokedAt,

    /** A revocation heard on the user's channel (Redis mode) or made here (embedded mode). */
    noteRevocation(userId: string, before: number): void {
      const e = users.get(userId);
      if (e !== undefined) e.revokedAt = Math.max(e.revokedAt, before);
      remember(userId, before);
    },

    /** Connections per user and per topic: across live gateways (Redis, presence on), else here. */
    async read(userIds: readonly string[], topics: readonly string[]): Promise<Counts> {
      if (call === undefined || !config.presence) {
        return {
          users: new Map(userIds.map((u) => [u, users.get(u)?.count ?? 0])),
          topics: new Map(topics.map((t) => [t, deps.subscribers(t)])),
        };
      }
      const counts = (await call('read', ns, ttl, String(userIds.length), ...userIds, ...topics)) as number[];
      return {
        users: new Map(userIds.map((u, i) => [u, counts[i] ?? 0])),
        topics: new Map(topics.map((t, i) => [t, counts[userIds.length + i] ?? 0])),
      };
    },

    /** Revokes the user's tokens issued before now (Redis's clock) and tells the gateways
     *  holding the user, in one script: stored, then published. Resolves with how many
     *  gateways heard it and the time stored (unix s). */
    async revoke(userId: string, channel: string): Promise<{ gateways: number; before: number }> {
      if (call === undefined) throw new Error('revoke needs Redis');
      const [gateways, before] = (await call('revoke', ns, userId, String(config.maxTokenLifetimeS), channel)) as [number, number];
      return { gateways, before };
    },

    /** Shutdown, after the sockets closed: the last events and counts go out, then this gateway's entries are removed. */
    async close(deadlineMs: number): Promise<void> {
      clearInterval(timer);
      if (call === undefined || !ready()) return;
      const until = Date.now() + deadlineMs;
      try {
        while ((events.length > 0 || (config.presence && dirtyUsers.size + dirtyTopics.size > 0)) && Date.now() < until) {
          if (!flushing) flush();
          await new Promise((r) => setTimeout(r, 20));
        }
        if (config.presence) while (Date.now() < until && (await call('leave', ns, gw)) !== 1);
      } catch (err) {
        plog.warn({ err }, 'presence not removed at shutdown; it expires with the heartbeat');
      }
    },

    /** Users with a connection here, for /stats and the tests. */
    get userCount() {
      return users.size;
    },
  };
}

export type Presence = ReturnType<typeof createPresence>;

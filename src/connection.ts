// A WebSocket's life after the upgrade: open, each client frame, close. Per-socket
// state is typed UserData set at upgrade; nothing is attached to `ws`, and `ws` is
// never touched after close (async continuations check `closed`).
import { performance } from 'node:perf_hooks';
import { ErrorFrame, type ErrorFrameCode, ServerClose, type ServerCloseCode, SUBJECT_MISMATCH } from '@herald/client/codes';
import type { Admission } from './admission.js';
import { AuthFailure, type AuthResult, type Identity, type Verifier } from './auth.js';
import type { Bridge } from './bridge.js';
import type { Config } from './config.js';
import { buildNotification } from './deliver.js';
import { createExpiryWheel } from './expiry.js';
import type { Recovery, ResumePoint } from './history.js';
import type { Subscriptions } from './interest.js';
import { available, type Budget, consume, newBudget, newRateWindow, type RateWindow, spend } from './limits.js';
import type { Logger } from './log.js';
import type { CloseLabel, Metrics } from './metrics.js';
import type { Presence } from './presence.js';
import {
  type ClientFrame,
  DEFAULT_HISTORY_LIMIT,
  decodeClientFrame,
  type ErrorCode,
  encode,
  encodeHistoryReply,
  type RequestId,
  type ServerFrame,
} from './protocol.js';
import { initialTopics, isBaseTopic, isGranted } from './topics.js';
import type { WebSocket } from './uws.js';

export interface UserData {
  readonly connectionId: string;
  /** The client address admission control counted this connection against. */
  readonly ip: string;
  /** Replaced by a successful `auth` frame (same user, new expiry and grants). */
  identity: Identity;
  /** How many topics are held by a grant (subscribed with `subscribe`), beyond the
   *  initial ones (always allowed, never counted against the limit; derived from the
   *  identity, not stored per socket). */
  grantedTopicCount: number;
  /** Topics the control API subscribed this connection to: kept across an `auth` renewal
   *  whatever the new token grants (undefined until there is one). */
  serverTopics: Set<string> | undefined;
  readonly rate: RateWindow;
  /** History entries this connection may still be replayed (HERALD_REPLAY_BUDGET). */
  readonly replay: Budget;
  /**
   * Frame order (see canStart): subscriptions being set up in Redis, answered in the
   * order they were asked (`subscribing`); requests later frames must wait for (a token
   * renewal, a resume: `busy`); and the frames that wait (`waiting`). Subscribes go
   * ahead of each other's answers, so one batch covers a client's many topics.
   */
  subscribing: Array<{ ready: boolean; complete: () => void; topics: readonly string[]; dropped?: Set<string> }>;
  busy: number;
  waiting: ClientFrame[] | undefined;
  closed: boolean;
  /** Set just before the server ends the socket, so the close metric says why. */
  closeReason: CloseLabel | undefined;
}

export type Socket = WebSocket<UserData>;

export function newUserData(connectionId: string, identity: Identity, ip: string, replayBudget: number): UserData {
  return {
    connectionId,
    ip,
    identity,
    grantedTopicCount: 0,
    serverTopics: undefined,
    rate: newRateWindow(performance.now()),
    replay: newBudget(replayBudget, performance.now()),
    subscribing: [],
    busy: 0,
    waiting: undefined,
    closed: false,
    closeReason: undefined,
  };
}

function labelForCode(code: number): CloseLabel {
  switch (code) {
    case 1000:
    case 1005: // a close frame without a status: what a browser's ws.close() sends
      return 'normal';
    case 1001:
      return 'going_away';
    case 1006:
      return 'abnormal';
    default:
      return 'other';
  }
}

export interface ConnectionDeps {
  config: Config;
  admission: Admission;
  verifier: Verifier;
  metrics: Metrics;
  log: Logger;
  /** undefined in embedded mode: ack/mark_read are then acknowledged and discarded. */
  bridge: Bridge | undefined;
  /** Which topics Redis routes here (interest.ts); embedded mode: alwaysSubscribed. */
  subscriptions: Subscriptions;
  /** Who is connected (presence.ts): told of every open, close and topic change. */
  presence: Presence;
}

/** Frames queued behind a request in progress, at most. */
const MAX_WAITING = 256;

/**
 * The registry of open connections: the uWS handlers (open, message, close,
 * subscription) and the process-wide timers that sweep every socket (token expiry,
 * backpressure), with the set of sockets they share.
 */
export function createConnections(deps: ConnectionDeps) {
  const { config, metrics, log, bridge, admission, verifier, subscriptions, presence } = deps;
  const { maxPayloadBytes, maxTopicsPerConnection } = config;
  const { messages: rateLimit, windowMs } = config.rateLimit;
  const heartbeatMs = (config.idleTimeoutS * 1000) / 2;
  const sockets = new Set<Socket>();
  let topicCount = 0;
  let allClosed: (() => void) | undefined;
  const debug = log.isLevelEnabled('debug');

  function send(ws: Socket, frame: ServerFrame): void {
    // 2 = dropped: the socket already holds maxBackpressure unsent.
    if (ws.send(encode(frame)) === 2) metrics.directFramesDropped.inc();
    else metrics.messagesSent.inc();
  }

  function sendRaw(ws: Socket, frame: string): void {
    if (ws.send(frame) === 2) metrics.directFramesDropped.inc();
    else metrics.messagesSent.inc();
  }

  /** An `error` frame for a code of the table (codes.ts, ErrorFrame). */
  function sendError(
    ws: Socket,
    error: ErrorFrameCode & { code: ErrorCode },
    message: string,
    id: RequestId | undefined,
    extra?: { retryAfterMs: number } | { reason: string },
  ): void {
    metrics.error(error.code);
    send(ws, { type: 'error', code: error.code, message, ...(id !== undefined ? { id } : {}), ...extra });
  }

  /** Closes with a close of the table (codes.ts, ServerClose); its reason is also the close metric's label. */
  function end(ws: Socket, close: ServerCloseCode & { reason: CloseLabel }): void {
    const ud = ws.getUserData();
    if (ud.closed) return;
    ud.closeReason = close.reason;
    ws.end(close.code, close.reason);
  }

  /**
   * Runs `write` after an await: only if the socket is still open (`ws` must not be
   * touched after close), and corked (uWS wants every write outside its own callbacks
   * corked, or each goes out as its own syscall).
   */
  function corkIfOpen(ws: Socket, ud: UserData, write: () => void): void {
    if (!ud.closed) ws.cork(write);
  }

  /** A topic the control API gave the connection: kept across an `auth` renewal. */
  function markServerTopic(ud: UserData, topic: string): void {
    ud.serverTopics ??= new Set();
    ud.serverTopics.add(topic);
  }

  const withId = (id: RequestId | undefined) => (id !== undefined ? { id } : {});

  /**
   * Whether `frame` may be handled now: not while frames wait before it or a renewal or
   * resume is in progress; and, unless it is a subscribe, not before every subscription
   * asked earlier is answered (a resume or unsubscribe must find the topic held).
   */
  function canStart(ud: UserData, frame: ClientFrame): boolean {
    if ((ud.waiting?.length ?? 0) > 0 || ud.busy > 0) return false;
    return frame.type === 'subscribe' || ud.subscribing.length === 0;
  }

  /** Handles the frames that waited, in order, for as long as they may start. */
  function drain(ws: Socket, ud: UserData): void {
    const queue = ud.waiting;
    if (queue === undefined || ud.closed) return;
    ud.waiting = undefined;
    while (queue.length > 0 && canStart(ud, queue[0] as ClientFrame)) dispatch(ws, ud, queue.shift() as ClientFrame);
    if (queue.length > 0) ud.waiting = ud.waiting === undefined ? queue : [...queue, ...ud.waiting];
  }

  /** A request later frames wait for begins (see canStart)... */
  function begin(ud: UserData): void {
    ud.busy++;
  }

  /** ...and ends. */
  function finish(ws: Socket, ud: UserData): void {
    ud.busy--;
    drain(ws, ud);
  }

  /**
   * Subscribes `ws` to `topics` (none of which it holds yet) once Redis delivers them to
   * this gateway, then runs `then` in the same step: from that reply on, nothing
   * published to them is missed. Nothing reaches the socket for them before. Answers
   * go out in the order they were asked.
   */
  function subscribeThen(ws: Socket, ud: UserData, topics: readonly string[], then: () => void): void {
    for (const t of topics) subscriptions.hold(t); // reserved while Redis confirms
    const entry: UserData['subscribing'][number] = {
      ready: false,
      topics,
      complete: (): void => {
        if (!ud.closed) {
          for (const t of topics) ws.subscribe(t);
          then();
          // The control API took a topic away while it was being set up: it leaves now, said after the answer.
          for (const t of entry.dropped ?? []) if (leave(ws, ud, t)) send(ws, { type: 'unsubscribed', topic: t, server: true });
        }
        for (const t of topics) subscriptions.release(t);
      },
    };
    ud.subscribing.push(entry);
    let inHandler = true;
    subscriptions.whenSubscribed(topics, () => {
      entry.ready = true;
      // After the handler returned: the socket may have closed, and writes must be corked.
      if (inHandler || ud.closed) completeReady(ws, ud);
      else ws.cork(() => completeReady(ws, ud));
    });
    inHandler = false;
  }

  function completeReady(ws: Socket, ud: UserData): void {
    while (ud.subscribing[0]?.ready === true) (ud.subscribing.shift() as { complete: () => void }).complete();
    if (ud.subscribing.length === 0) drain(ws, ud);
  }

  function subscribe(ws: Socket, ud: UserData, topic: string, id: RequestId | undefined): void {
    const reply = (): void => send(ws, { type: 'subscribed', topic, ...withId(id) });
    if (ws.isSubscribed(topic)) {
      reply();
      return;
    }
    if (!isBaseTopic(ud.identity, topic)) {
      if (!isGranted(ud.identity.grants, topic)) {
        sendError(ws, ErrorFrame.Forbidden, `not allowed to subscribe to ${topic}`, id);
        return;
      }
      if (ud.grantedTopicCount >= maxTopicsPerConnection) {
        sendError(ws, ErrorFrame.TooManyTopics, `at most ${maxTopicsPerConnection} subscribed topics per connection`, id);
        return;
      }
      ud.grantedTopicCount++;
    }
    subscribeThen(ws, ud, [topic], reply);
  }

  /** Leaves `topic` if held; whether it was. */
  function leave(ws: Socket, ud: UserData, topic: string): boolean {
    if (!ws.isSubscribed(topic)) return false;
    ws.unsubscribe(topic);
    if (!isBaseTopic(ud.identity, topic)) ud.grantedTopicCount--;
    ud.serverTopics?.delete(topic);
    return true;
  }

  function unsubscribe(ws: Socket, ud: UserData, topic: string, id: RequestId | undefined): void {
    leave(ws, ud, topic);
    send(ws, { type: 'unsubscribed', topic, ...withId(id) });
  }

  /**
   * `ack` / `mark_read`, one id or a list: one reply for the frame (in the form it
   * came), one events-stream entry per distinct id, all in one Redis round trip.
   */
  function clientEvent(ws: Socket, ud: UserData, frame: Extract<ClientFrame, { type: 'ack' | 'mark_read' }>): void {
    const { type, id } = frame;
    const target =
      frame.notificationIds !== undefined ? { notificationIds: frame.notificationIds } : { notificationId: frame.notificationId };
    const ids = target.notificationIds !== undefined ? [...new Set(target.notificationIds)] : [target.notificationId];
    const replied = (): void => {
      if (id !== undefined && !ud.closed)
        send(ws, type === 'ack' ? { type: 'acked', ...target, id } : { type: 'marked_read', ...target, id });
    };
    if (bridge === undefined) {
      metrics.clientEvent(type, 'discarded', ids.length);
      replied();
      return;
    }
    bridge.recordEvent({ type, userId: ud.identity.userId, notificationIds: ids, connectionId: ud.connectionId }).then(
      () => {
        metrics.clientEvent(type, 'recorded', ids.length);
        corkIfOpen(ws, ud, replied);
      },
      (err: Error) => {
        metrics.clientEvent(type, 'failed', ids.length);
        log.warn({ connectionId: ud.connectionId, userId: ud.identity.userId, err, ids: ids.length }, `${type} not recorded`);
        corkIfOpen(ws, ud, () => sendError(ws, ErrorFrame.Unavailable, `${type} could not be recorded; retry later`, id));
      },
    );
  }

  // Token expiry: ticks every 250 ms so a connection outlives its `exp` by at most that.
  const expiries = createExpiryWheel<Socket>(Date.now());
  const expirySweep = setInterval(() => {
    for (const ws of expiries.due(Date.now())) {
      // Closed sockets leave the wheel in close(), so every one here is open.
      ws.cork(() => end(ws, ServerClose.TokenExpired));
    }
  }, 250);
  expirySweep.unref();

  /** An `auth` frame: verify the new token, then swap identity, grants and expiry. */
  function renewToken(ws: Socket, ud: UserData, token: string, id: RequestId | undefined): void {
    begin(ud);
    verifier.verify(token).then(
      (result) =>
        corkIfOpen(ws, ud, () => {
          applyRenewal(ws, ud, result, id);
          finish(ws, ud);
        }),
      (err: Error) => {
        log.error({ connectionId: ud.connectionId, err }, 'token verification crashed');
        corkIfOpen(ws, ud, () => {
          sendError(ws, ErrorFrame.Unavailable, 'the token could not be verified; retry later', id);
          finish(ws, ud);
        });
      },
    );
  }

  function applyRenewal(ws: Socket, ud: UserData, result: AuthResult, id: RequestId | undefined): void {
    if (!result.ok) {
      metrics.reauth(result.reason);
      sendError(ws, ErrorFrame.AuthFailed, `token refused (${result.reason}); the current token stays in force`, id, {
        reason: result.reason,
      });
      return;
    }
    const next = result.identity;
    if (next.userId !== ud.identity.userId) {
      metrics.reauth(SUBJECT_MISMATCH);
      sendError(ws, ErrorFrame.AuthFailed, 'the token is for another user', id, { reason: SUBJECT_MISMATCH });
      return;
    }
    // A revocation heard since this connection opened (or stored before: checked at upgrade).
    if (next.issuedAt < presence.revokedAt(next.userId)) {
      metrics.reauth(AuthFailure.TokenRevoked);
      sendError(ws, ErrorFrame.AuthFailed, 'token refused (token_revoked); the current token stays in force', id, {
        reason: AuthFailure.TokenRevoked,
      });
      return;
    }
    // The new claims replace the old: drop what they no longer grant, join new role topics.
    const revoked: string[] = [];
    let grantedTopicCount = 0;
    for (const topic of ws.getTopics()) {
      if (isBaseTopic(next, topic)) continue;
      if (isGranted(next.grants, topic) || ud.serverTopics?.has(topic) === true) {
        grantedTopicCount++;
      } else {
        ws.unsubscribe(topic);
        revoked.push(topic);
      }
    }
    expiries.remove(ws, ud.identity.expiresAt);
    expiries.add(ws, next.expiresAt);
    ud.identity = next;
    ud.grantedTopicCount = grantedTopicCount;
    metrics.reauth('ok');
    // New role topics join before the reply, as on connect.
    const joined = initialTopics(next.userId, next.roles).filter((t) => !ws.isSubscribed(t));
    subscribeThen(ws, ud, joined, () => {
      send(ws, { type: 'authenticated', expiresAt: next.expiresAt, topics: ws.getTopics(), revoked, ...withId(id) });
    });
  }

  // Slow readers. uWS skips publishes to a socket holding maxBackpressure unsent but
  // cannot tell us (no `dropped` handler in 20.30), and its own closeOnBackpressureLimit
  // drops the socket with a 1006 indistinguishable from any other. So once a second we
  // look at every socket's backlog: O(connections) native calls, not per message.
  const { maxBackpressureBytes, closeOnBackpressure } = config;
  const backpressureSweep = setInterval(() => {
    let over = 0;
    for (const ws of sockets) {
      if (ws.getBufferedAmount() < maxBackpressureBytes) continue;
      over++;
      if (closeOnBackpressure) {
        metrics.backpressureCloses.inc();
        // The close frame queues behind the backlog: a client that reads again sees it.
        ws.cork(() => end(ws, ServerClose.Backpressure));
      }
    }
    metrics.backpressured.set(closeOnBackpressure ? 0 : over);
  }, 1000);
  backpressureSweep.unref();

  /**
   * `resume`: replay what the client missed on topics it holds, in order, each frame
   * marked replayed, then say per topic whether the replay is complete. Never a
   * partial replay: a topic that cannot be recovered whole replays nothing.
   */
  function resume(ws: Socket, ud: UserData, frame: Extract<ClientFrame, { type: 'resume' }>): void {
    const history = bridge?.history;
    const points = new Map<string, ResumePoint>();
    const answer = new Map<string, Recovery>();
    for (const [topic, point] of Object.entries(frame.topics)) {
      if (history !== undefined && ws.isSubscribed(topic)) points.set(topic, point);
      else answer.set(topic, { recovered: false, why: history === undefined ? 'history_off' : 'not_held' });
    }
    const reply = (recoveries: Map<string, Recovery>): void => {
      const topics: Record<string, { recovered: boolean }> = Object.create(null) as Record<string, { recovered: boolean }>;
      let replayed = 0;
      for (const [topic, r] of recoveries) {
        topics[topic] = { recovered: r.recovered };
        metrics.resume(r.recovered ? undefined : r.why);
        if (!r.recovered) continue;
        for (const e of r.entries) {
          const position = { id: e.id, offset: e.offset, ts: e.ts, epoch: frame.epoch, replayed: true, json: e.json };
          sendRaw(ws, buildNotification(topic, e.payload, e.ts, undefined, position).frame);
          replayed++;
        }
      }
      metrics.replayedNotifications.inc(replayed);
      send(ws, { type: 'resumed', topics, ...withId(frame.id) });
    };
    if (points.size === 0 || history === undefined) {
      reply(answer);
      return;
    }
    // An exhausted budget refuses before any Redis read.
    if (available(ud.replay, performance.now(), config.replayBudget) < 1) {
      metrics.rateLimited.inc();
      sendError(ws, ErrorFrame.RateLimited, "this connection's replay budget is spent; retry later", frame.id, {
        retryAfterMs: Math.ceil(60_000 / config.replayBudget),
      });
      return;
    }
    // One resume at a time per connection: later frames wait for its answer.
    begin(ud);
    history.since(frame.epoch, points, Date.now()).then(
      (recoveries) =>
        corkIfOpen(ws, ud, () => {
          // Each replayed entry is spent from the connection's replay budget: one frame
          // may not make the gateway send hundreds of topics' history again and again.
          let entries = 0;
          for (const r of recoveries.values()) if (r.recovered) entries += r.entries.length;
          const budget = spend(ud.replay, entries, performance.now(), config.replayBudget);
          if (budget.kind === 'later') {
            metrics.rateLimited.inc();
            sendError(
              ws,
              ErrorFrame.RateLimited,
              `a replay of ${entries} notifications is over this connection's replay budget now; retry later`,
              frame.id,
              { retryAfterMs: budget.retryAfterMs },
            );
          } else {
            for (const [t, r] of recoveries) {
              // More than the budget ever holds: nothing is replayed, and the topics that had
              // something to replay are reloaded by the client.
              answer.set(t, budget.kind === 'never' && r.recovered && r.entries.length > 0 ? { recovered: false, why: 'too_many' } : r);
            }
            reply(answer);
          }
          finish(ws, ud);
        }),
      (err: Error) => {
        log.warn({ connectionId: ud.connectionId, err }, 'resume failed');
        corkIfOpen(ws, ud, () => {
          sendError(ws, ErrorFrame.Unavailable, 'history could not be read; retry later', frame.id);
          finish(ws, ud);
        });
      },
    );
  }

  /**
   * `history`: a page of a topic's stored notifications, for a topic the connection
   * holds or its token grants (as `subscribe` would allow). Like a resume it is a
   * replay: one at a time per connection (later frames wait for its answer), at most
   * one Redis round trip, and every entry sent is spent from the replay budget.
   */
  function history(ws: Socket, ud: UserData, frame: Extract<ClientFrame, { type: 'history' }>): void {
    const { topic, id } = frame;
    const store = bridge?.history;
    if (store === undefined) {
      metrics.historyRequest('history_off');
      sendError(ws, ErrorFrame.HistoryUnavailable, 'this gateway keeps no history', id);
      return;
    }
    if (!ws.isSubscribed(topic) && !isBaseTopic(ud.identity, topic) && !isGranted(ud.identity.grants, topic)) {
      metrics.historyRequest('forbidden');
      sendError(ws, ErrorFrame.Forbidden, `not allowed to read the history of ${topic}`, id);
      return;
    }
    const overBudget = (retryAfterMs: number, message: string): void => {
      metrics.historyRequest('over_budget');
      metrics.rateLimited.inc();
      sendError(ws, ErrorFrame.RateLimited, message, id, { retryAfterMs });
    };
    // An exhausted budget refuses before any Redis read.
    if (available(ud.replay, performance.now(), config.replayBudget) < 1) {
      overBudget(Math.ceil(60_000 / config.replayBudget), "this connection's replay budget is spent; retry later");
      return;
    }
    // A budget below the limit caps the page, so that no request is over the whole budget
    // (refused for ever); the client pages on with `before` or `after`.
    const requested = frame.limit ?? DEFAULT_HISTORY_LIMIT;
    const limit = config.replayBudget === 0 ? requested : Math.min(requested, config.replayBudget);
    begin(ud);
    store.page(topic, { limit, before: frame.before, after: frame.after }, Date.now()).then(
      (page) =>
        corkIfOpen(ws, ud, () => {
          const n = page.entries.length;
          const budget = spend(ud.replay, n, performance.now(), config.replayBudget);
          if (budget.kind === 'ok') {
            const frames = page.entries.map(
              (e) =>
                buildNotification(topic, e.payload, e.ts, undefined, {
                  id: e.id,
                  offset: e.offset,
                  ts: e.ts,
                  epoch: page.epoch,
                  json: e.json,
                }).frame,
            );
            metrics.historyRequest('served');
            metrics.replayedNotifications.inc(n);
            sendRaw(ws, encodeHistoryReply(topic, page.epoch, frames, id));
          } else {
            // 'never' cannot be (the page is capped at the budget): answered as 'later' in a minute.
            const retryAfterMs = budget.kind === 'later' ? budget.retryAfterMs : 60_000;
            overBudget(retryAfterMs, `a page of ${n} notifications is over this connection's replay budget now; retry later`);
          }
          finish(ws, ud);
        }),
      (err: Error) => {
        metrics.historyRequest('failed');
        log.warn({ connectionId: ud.connectionId, err }, 'history request failed');
        corkIfOpen(ws, ud, () => {
          sendError(ws, ErrorFrame.Unavailable, 'history could not be read; retry later', id);
          finish(ws, ud);
        });
      },
    );
  }

  function dispatch(ws: Socket, ud: UserData, frame: ClientFrame): void {
    switch (frame.type) {
      case 'ping':
        send(ws, { type: 'pong', ...withId(frame.id), ts: Date.now() });
        return;
      case 'subscribe':
        subscribe(ws, ud, frame.topic, frame.id);
        return;
      case 'unsubscribe':
        unsubscribe(ws, ud, frame.topic, frame.id);
        return;
      case 'ack':
      case 'mark_read':
        clientEvent(ws, ud, frame);
        return;
      case 'auth':
        renewToken(ws, ud, frame.token, frame.id);
        return;
      case 'resume':
        resume(ws, ud, frame);
        return;
      case 'history':
        history(ws, ud, frame);
        return;
      default: {
        const never: never = frame;
        throw new Error(`unhandled frame ${JSON.stringify(never)}`);
      }
    }
  }

  return {
    sockets,
    /** Topics with at least one subscriber on this process. */
    topicCount: () => topicCount,

    /** uWS reports every change of a topic's subscriber count, closes included. */
    subscription(_ws: Socket, topicBuffer: ArrayBuffer, newCount: number, oldCount: number): void {
      const topic = Buffer.from(topicBuffer).toString();
      if (oldCount === 0 && newCount > 0) {
        topicCount++;
        subscriptions.hold(topic);
      } else if (newCount === 0 && oldCount > 0) {
        topicCount--;
        subscriptions.release(topic);
      }
      presence.topicChanged(topic);
      metrics.topics.set(topicCount);
    },

    open(ws: Socket): void {
      const ud = ws.getUserData();
      sockets.add(ws);
      presence.opened(ws);
      expiries.add(ws, ud.identity.expiresAt);
      metrics.connectionsOpened.inc();
      metrics.connectionsOpen.inc();
      // `connected` promises delivery: it goes out once Redis routes the topics here.
      const topics = initialTopics(ud.identity.userId, ud.identity.roles);
      subscribeThen(ws, ud, topics, () => {
        send(ws, {
          type: 'connected',
          connectionId: ud.connectionId,
          userId: ud.identity.userId,
          topics,
          heartbeatMs,
          serverTime: Date.now(),
          ...(bridge?.history?.epoch !== undefined ? { epoch: bridge.history.epoch } : {}),
        });
      });
      if (debug) log.debug({ connectionId: ud.connectionId, userId: ud.identity.userId }, 'connection open');
    },

    message(ws: Socket, message: ArrayBuffer, isBinary: boolean): void {
      const ud = ws.getUserData();
      metrics.messagesReceived.inc();
      // uWS's own limit is set above ours so that we, not uWS, answer with a 1009.
      if (message.byteLength > maxPayloadBytes) {
        end(ws, ServerClose.MessageTooBig);
        return;
      }
      if (isBinary) {
        end(ws, ServerClose.BinaryFrame);
        return;
      }
      // The ArrayBuffer is neutered when this callback returns: decode it now.
      const decoded = decodeClientFrame(Buffer.from(message).toString('utf8'));
      if (decoded.kind === 'not_json') {
        end(ws, ServerClose.NotJson);
        return;
      }

      const decision = consume(ud.rate, performance.now(), rateLimit, windowMs);
      if (decision.kind === 'close') {
        end(ws, ServerClose.RateLimited);
        return;
      }
      const id = decoded.kind === 'frame' ? decoded.frame.id : decoded.id;
      if (decision.kind === 'reject') {
        metrics.rateLimited.inc();
        sendError(ws, ErrorFrame.RateLimited, 'too many messages', id, { retryAfterMs: decision.retryAfterMs });
        return;
      }
      switch (decoded.kind) {
        case 'invalid':
          sendError(ws, ErrorFrame.InvalidMessage, decoded.message, id);
          return;
        case 'unknown_type':
          sendError(ws, ErrorFrame.UnknownType, decoded.message, id);
          return;
        case 'frame':
          if (canStart(ud, decoded.frame)) {
            dispatch(ws, ud, decoded.frame);
            return;
          }
          // Behind a request in progress: handled in order once it is answered.
          ud.waiting ??= [];
          if (ud.waiting.length >= MAX_WAITING) {
            metrics.rateLimited.inc();
            sendError(ws, ErrorFrame.RateLimited, `at most ${MAX_WAITING} frames may wait for a request in progress`, id, {
              retryAfterMs: 1000,
            });
            return;
          }
          ud.waiting.push(decoded.frame);
          return;
      }
    },

    close(ws: Socket, code: number, message: ArrayBuffer): void {
      const ud = ws.getUserData();
      ud.closed = true;
      sockets.delete(ws);
      // The reason the server gave, or the client's own (at most 123 bytes by the protocol).
      if (ud.closeReason !== undefined) presence.closed(ws, code, ud.closeReason, 'server');
      else presence.closed(ws, code, Buffer.from(message).toString('utf8'), 'client');
      expiries.remove(ws, ud.identity.expiresAt);
      admission.release(ud.ip);
      if (sockets.size === 0) allClosed?.();
      metrics.connectionsOpen.dec();
      metrics.connectionClosed(ud.closeReason ?? labelForCode(code));
      if (debug) log.debug({ connectionId: ud.connectionId, userId: ud.identity.userId, code }, 'connection closed');
    },

    /** The control API: closes with 4000 `disconnected`, or 4001 `reconnect`. */
    disconnect(ws: Socket, reconnect: boolean): boolean {
      end(ws, reconnect ? ServerClose.Reconnect : ServerClose.Disconnected);
      return true;
    },

    /** The control API revoked the token this connection holds: 1008 `token_revoked`. */
    revoke(ws: Socket): boolean {
      end(ws, ServerClose.TokenRevoked);
      return true;
    },

    /**
     * The control API subscribes the connection to `topic`, grant or not: a `subscribed`
     * frame marked `server` once delivery is promised, as for a client's subscribe.
     * Counted against HERALD_MAX_TOPICS_PER_CONNECTION: at the limit it is skipped (false).
     */
    serverSubscribe(ws: Socket, topic: string): boolean {
      const ud = ws.getUserData();
      if (ws.isSubscribed(topic)) return false;
      // A subscribe of it still in flight (the client's, or an earlier control message):
      // that one answers; the topic is only marked the server's, to outlive a renewal.
      if (ud.subscribing.some((e) => e.topics.includes(topic))) {
        if (!isBaseTopic(ud.identity, topic)) markServerTopic(ud, topic);
        return false;
      }
      if (!isBaseTopic(ud.identity, topic)) {
        if (ud.grantedTopicCount >= maxTopicsPerConnection) {
          log.warn({ connectionId: ud.connectionId, topic }, 'server-side subscribe skipped: the connection holds the most topics allowed');
          return false;
        }
        ud.grantedTopicCount++;
        markServerTopic(ud, topic);
      }
      subscribeThen(ws, ud, [topic], () => send(ws, { type: 'subscribed', topic, server: true }));
      return true;
    },

    /** The control API unsubscribes the connection from `topic`: an `unsubscribed` frame marked `server`. */
    serverUnsubscribe(ws: Socket, topic: string): boolean {
      const ud = ws.getUserData();
      if (leave(ws, ud, topic)) {
        send(ws, { type: 'unsubscribed', topic, server: true });
        return true;
      }
      // Still being set up (a subscribe waiting for Redis): it is left as soon as it is held.
      const pending = ud.subscribing.find((e) => e.topics.includes(topic));
      if (pending === undefined) return false;
      pending.dropped ??= new Set();
      pending.dropped.add(topic);
      return true;
    },

    /** Shutdown: end every socket with 1001. uWS runs each close handler from end(), so
     *  this usually resolves at once; the promise covers sockets still closing. */
    closeAll(): Promise<void> {
      clearInterval(expirySweep);
      clearInterval(backpressureSweep);
      const done = new Promise<void>((resolve) => {
        allClosed = resolve;
      });
      for (const ws of [...sockets]) end(ws, ServerClose.ShuttingDown);
      if (sockets.size === 0) allClosed?.();
      return done;
    },
  };
}

export type Connections = ReturnType<typeof createConnections>;

// The WebSocket upgrade: authenticate with the JWT before upgrading, in the order
// uWS requires. Copy everything out of `req` synchronously (it is only valid inside
// this callback), register onAborted before the first await, and after the await
// either cork + upgrade or cork + refuse. Every refusal is an entry of the code table
// (@herald/client/codes, Refusal): status, body and headers come from there.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type HttpRefusal, NotReady, Refusal } from '@herald/client/codes';
import { type Admission, addressKey, clientAddress } from './admission.js';
import { AuthFailure, type Verifier } from './auth.js';
import type { Config } from './config.js';
import { newUserData } from './connection.js';
import { chooseSubprotocol, connectionListsUpgrade, findToken, isOriginAllowed, type UpgradeRequest } from './handshake.js';
import { type Exchange, refuse, track } from './http.js';
import type { Subscriptions } from './interest.js';
import type { Lifecycle } from './lifecycle.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { Presence } from './presence.js';
import { createRefusalLog, REFUSAL_LOG_INTERVAL_MS } from './refusals.js';
import { initialTopics } from './topics.js';
import type { HttpRequest, HttpResponse, us_socket_context_t } from './uws.js';

export interface UpgradeDeps {
  config: Config;
  admission: Admission;
  verifier: Verifier;
  metrics: Metrics;
  log: Logger;
  lifecycle: Lifecycle;
  /** The per-user checks after the token: revocation and HERALD_MAX_CONNECTIONS_PER_USER. */
  presence: Presence;
  /** The topic routes (interest.ts), warmed while the checks run. */
  subscriptions: Subscriptions;
}

/** The refused upgrade for each token failure: AuthFailure's names are Refusal's (401, or 503 key_unavailable). */
export const TOKEN_REFUSALS: ReadonlyMap<AuthFailure, HttpRefusal> = new Map(
  (Object.keys(AuthFailure) as Array<keyof typeof AuthFailure>).map((name) => [AuthFailure[name], Refusal[name]]),
);

function countProtocols(header: string): number {
  let n = header === '' ? 0 : 1;
  for (let i = header.indexOf(','); i !== -1; i = header.indexOf(',', i + 1)) n++;
  return n;
}

function remoteAddress(res: HttpResponse): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString();
}

export function createUpgradeHandler(deps: UpgradeDeps) {
  const { config, verifier, metrics, log, lifecycle, admission, presence, subscriptions } = deps;
  // Request-shape limits, checked before anything else: refusing these costs nothing.
  const maxProtocols = 8;
  const maxQueryBytes = config.jwt.maxTokenBytes + 1024;
  const maxAuthorizationBytes = config.jwt.maxTokenBytes + 64;
  const ulog = log.child({ component: 'upgrade' });
  // Refusal lines are bounded (refusals.ts); the counts come once per interval. The
  // timer lives as long as the process and does not keep it alive.
  const refusals = createRefusalLog();
  const summary = setInterval(() => {
    const s = refusals.flush();
    if (s !== undefined) ulog.warn({ intervalS: REFUSAL_LOG_INTERVAL_MS / 1000, ...s }, 'upgrade refusals (summary)');
  }, REFUSAL_LOG_INTERVAL_MS);
  summary.unref();

  /** A token refusal: counted, logged (bounded), answered 401 (or 503 key_unavailable). */
  function refuseToken(ex: Exchange, reason: AuthFailure, source: string | undefined): void {
    metrics.authFailure(reason);
    if (refusals.note(reason)) ulog.warn({ reason, source, remote: ex.finished ? undefined : remoteAddress(ex.res) }, 'upgrade refused');
    refuse(ex, TOKEN_REFUSALS.get(reason) ?? Refusal.Internal);
  }

  /** A request-shape refusal: counted by its reason. */
  function refuseShape(
    ex: Exchange,
    refusal: typeof Refusal.ConnectionNotUpgrade | typeof Refusal.UriTooLong | typeof Refusal.TooManyProtocols,
  ): void {
    metrics.admissionRefused(refusal.reason);
    refuse(ex, refusal);
  }

  return (res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void => {
    const secKey = req.getHeader('sec-websocket-key');
    const secExtensions = req.getHeader('sec-websocket-extensions');
    const forwardedFor = config.trustProxy ? req.getHeader('x-forwarded-for') : '';
    const connection = req.getHeader('connection');
    const hs: UpgradeRequest = {
      authorization: req.getHeader('authorization'),
      protocols: req.getHeader('sec-websocket-protocol'),
      cookie: req.getHeader('cookie'),
      origin: req.getHeader('origin'),
      query: req.getQuery() ?? '',
    };
    const ex = track(res);

    const readiness = lifecycle.readiness();
    if (!readiness.ready && readiness.why === NotReady.Draining) {
      refuse(ex, Refusal.Draining);
      return;
    }
    if (!connectionListsUpgrade(connection)) {
      refuseShape(ex, Refusal.ConnectionNotUpgrade);
      return;
    }
    // A long query or subprotocol list that carries a token is an oversized token
    // (401, like in any other source); otherwise it is a malformed request.
    if (hs.query.length > maxQueryBytes) {
      if (/(?:^|&)token=/.test(hs.query)) {
        refuseToken(ex, AuthFailure.TokenTooLarge, 'query');
        return;
      }
      refuseShape(ex, Refusal.UriTooLong);
      return;
    }
    if (countProtocols(hs.protocols) > maxProtocols) {
      refuseShape(ex, Refusal.TooManyProtocols);
      return;
    }
    if (hs.protocols.length > maxAuthorizationBytes + 256) {
      refuseToken(ex, AuthFailure.TokenTooLarge, 'subprotocol');
      return;
    }
    if (hs.authorization.length > maxAuthorizationBytes) {
      refuseToken(ex, AuthFailure.TokenTooLarge, 'header');
      return;
    }

    // Every per-address limit counts by this key: an IPv6 client is its whole prefix.
    const ip = addressKey(clientAddress(remoteAddress(res), forwardedFor, config.trustProxy), config.admission.ipv6PrefixBits);
    const refusal = admission.admit(ip, performance.now());
    if (refusal !== undefined) {
      metrics.admissionRefused(refusal.reason);
      refuse(ex, refusal);
      return;
    }
    // From here on the place is held: every way out either upgrades or releases it.
    ex.onAbort = () => admission.release(ip);

    if (!isOriginAllowed(hs.origin, config.allowedOrigins)) {
      admission.release(ip);
      metrics.originRejected.inc();
      if (refusals.note(Refusal.OriginNotAllowed.reason)) {
        ulog.warn({ origin: hs.origin.slice(0, 200), remote: remoteAddress(res) }, 'upgrade refused: origin not allowed');
      }
      refuse(ex, Refusal.OriginNotAllowed);
      return;
    }
    const found = findToken(hs);
    if (found.kind !== 'token') {
      admission.release(ip);
      if (found.kind === 'none') refuseToken(ex, AuthFailure.MissingToken, undefined);
      else refuseToken(ex, AuthFailure.ConflictingTokens, found.sources.join(','));
      return;
    }

    const started = process.hrtime.bigint();
    verifier
      .verify(found.token)
      .then(async (result) => {
        metrics.authDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
        if (ex.finished) return; // the client left while we verified (onAbort released the place)
        if (!result.ok) {
          admission.release(ip);
          refuseToken(ex, result.reason, found.source);
          return;
        }
        const { identity } = result;
        // The connection's topics are asked of Redis now, beside the user's control channel
        // the check waits for, rather than after it: a new user waits for one SUBSCRIBE, not two.
        const topics = initialTopics(identity.userId, identity.roles);
        for (const t of topics) subscriptions.hold(t);
        let refusal: Awaited<ReturnType<Presence['admit']>>;
        try {
          refusal = await presence.admit(identity);
        } finally {
          // Held again by the connection, if it opens (uWS runs open() within upgrade()).
          setImmediate(() => {
            for (const t of topics) subscriptions.release(t);
          });
        }
        if (refusal !== undefined) {
          if (!ex.finished) admission.release(ip);
          if (refusal.reason === AuthFailure.TokenRevoked) {
            refuseToken(ex, AuthFailure.TokenRevoked, found.source);
            return;
          }
          const { reason } = Refusal.TooManyConnectionsForUser;
          metrics.admissionRefused(reason);
          if (refusals.note(reason)) ulog.warn({ reason, userId: identity.userId }, 'upgrade refused');
          refuse(ex, Refusal.TooManyConnectionsForUser);
          return;
        }
        if (ex.finished) {
          presence.abandoned(identity.userId); // admitted, but the client left meanwhile
          return;
        }
        const userData = newUserData(randomUUID(), identity, ip, config.replayBudget);
        ex.finished = true; // the exchange is consumed by the upgrade; close() releases the place
        ex.onAbort = undefined;
        res.cork(() => {
          res.upgrade(userData, secKey, chooseSubprotocol(hs.protocols), secExtensions, context);
        });
      })
      .catch((err: unknown) => {
        if (!ex.finished) admission.release(ip);
        ulog.error({ err }, 'token verification crashed');
        refuse(ex, Refusal.Internal);
      });
  };
}

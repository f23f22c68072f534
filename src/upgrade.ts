// The WebSocket upgrade: authenticate with the JWT before upgrading, in the order
// uWS requires. Copy everything out of `req` synchronously (it is only valid inside
// this callback), register onAborted before the first await, and after the await
// either cork + upgrade or cork + refuse.
import { randomUUID } from 'node:crypto';
import { AuthFailure, type Verifier } from './auth.js';
import type { Config } from './config.js';
import { chooseSubprotocol, findToken, isOriginAllowed, type UpgradeRequest } from './handshake.js';
import { reply, track, type Exchange } from './http.js';
import type { Lifecycle } from './lifecycle.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { newUserData } from './connection.js';
import type { HttpRequest, HttpResponse, us_socket_context_t } from './uws.js';

export interface UpgradeDeps {
  config: Config;
  verifier: Verifier;
  metrics: Metrics;
  log: Logger;
  lifecycle: Lifecycle;
}

function remoteAddress(res: HttpResponse): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString();
}

export function createUpgradeHandler(deps: UpgradeDeps) {
  const { config, verifier, metrics, log, lifecycle } = deps;
  const ulog = log.child({ component: 'upgrade' });

  function refuse(ex: Exchange, reason: AuthFailure, source: string | undefined): void {
    metrics.authFailure(reason);
    ulog.warn({ reason, source, remote: ex.aborted ? undefined : remoteAddress(ex.res) }, 'upgrade refused');
    const status = reason === AuthFailure.KeyUnavailable ? 503 : 401;
    reply(ex, status, { error: status === 401 ? 'unauthorized' : 'unavailable', reason }, {
      headers: status === 401 ? { 'WWW-Authenticate': `Bearer error="invalid_token"` } : {},
    });
  }

  return (res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void => {
    const secKey = req.getHeader('sec-websocket-key');
    const secExtensions = req.getHeader('sec-websocket-extensions');
    const hs: UpgradeRequest = {
      authorization: req.getHeader('authorization'),
      protocols: req.getHeader('sec-websocket-protocol'),
      cookie: req.getHeader('cookie'),
      origin: req.getHeader('origin'),
      query: req.getQuery() ?? '',
    };
    const ex = track(res);

    const readiness = lifecycle.readiness();
    if (!readiness.ready && readiness.reason === 'draining') {
      reply(ex, 503, { error: 'unavailable', reason: 'draining' });
      return;
    }
    if (!isOriginAllowed(hs.origin, config.allowedOrigins)) {
      metrics.originRejected.inc();
      ulog.warn({ origin: hs.origin.slice(0, 200), remote: remoteAddress(res) }, 'upgrade refused: origin not allowed');
      reply(ex, 403, { error: 'forbidden', reason: 'origin_not_allowed' });
      return;
    }
    const found = findToken(hs);
    if (found === undefined) {
      refuse(ex, AuthFailure.MissingToken, undefined);
      return;
    }

    const started = process.hrtime.bigint();
    verifier.verify(found.token).then(
      (result) => {
        metrics.authDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
        if (ex.aborted) return; // the client left while we verified
        if (!result.ok) {
          refuse(ex, result.reason, found.source);
          return;
        }
        const userData = newUserData(randomUUID(), result.identity);
        ex.aborted = true; // the exchange is consumed by the upgrade
        res.cork(() => {
          res.upgrade(userData, secKey, chooseSubprotocol(hs.protocols), secExtensions, context);
        });
      },
      (err: unknown) => {
        ulog.error({ err: (err as Error).message }, 'token verification crashed');
        reply(ex, 500, { error: 'internal' });
      },
    );
  };
}

// Assembles the uWS App: HTTP routes, the WebSocket behaviour, listen and stop.
import { Refusal } from '@herald/client/codes';
import type { Config } from './config.js';
import type { Connections, UserData } from './connection.js';
import type { Control } from './control.js';
import { DEMO_HEADERS, type DemoAsset, withWsPath } from './demo.js';
import { refuse, reply, track } from './http.js';
import type { Lifecycle } from './lifecycle.js';
import { CONTROL_ACTIONS, type Metrics } from './metrics.js';
import { methodNotAllowed } from './publish.js';
import {
  type HttpRequest,
  type HttpResponse,
  listenExclusive,
  type TemplatedApp,
  type Uws,
  type us_listen_socket,
  type us_socket_context_t,
} from './uws.js';

/** uWS's own frame cap. Above it uWS drops the socket without a close frame, so it
 *  sits well above HERALD_MAX_PAYLOAD_BYTES and connection.ts answers 1009 itself. */
export function uwsPayloadCap(maxPayloadBytes: number): number {
  return Math.max(4 * maxPayloadBytes, 64 * 1024);
}

export interface ServerDeps {
  uws: Uws;
  /** SSLApp options when serving TLS (checked by tls.ts). */
  tls: Parameters<Uws['SSLApp']>[0] | undefined;
  /** Share the port with sibling workers (SO_REUSEPORT) instead of holding it exclusively. */
  sharePort: boolean;
  config: Config;
  metrics: Metrics;
  lifecycle: Lifecycle;
  connections: Connections;
  upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => void;
  /** /metrics text and /stats, for this process or (under the supervisor) the whole host. */
  observe: { metrics(): Promise<string>; stats(): Promise<unknown> };
  publish: (res: HttpResponse, req: HttpRequest) => void;
  /** GET /presence and POST /control/* (control.ts). */
  control: Control;
  /** The demo page's files by URL path, when HERALD_DEMO is on. */
  demo: ReadonlyMap<string, DemoAsset> | undefined;
}

export interface Server {
  app: TemplatedApp;
  /** Resolves with the bound port (useful with HERALD_PORT=0). */
  listen(): Promise<number>;
  /** Stop accepting connections; open sockets are untouched. */
  stopListening(): void;
}

export function createServer(deps: ServerDeps): Server {
  const { uws, config, metrics, lifecycle, connections } = deps;
  const app = deps.tls === undefined ? uws.App() : uws.SSLApp(deps.tls);

  app.ws<UserData>(config.wsPath, {
    compression: uws.DISABLED,
    maxPayloadLength: uwsPayloadCap(config.maxPayloadBytes),
    idleTimeout: config.idleTimeoutS,
    sendPingsAutomatically: config.idleTimeoutS > 0,
    // Past this much unsent, uWS skips publishes to the socket: memory per slow socket
    // stays bounded. Herald, not uWS, closes such sockets (connection.ts), so that the
    // close has a code of its own and is counted.
    maxBackpressure: config.maxBackpressureBytes,
    closeOnBackpressureLimit: 0,
    upgrade: deps.upgrade,
    open: connections.open,
    message: connections.message,
    close: connections.close,
    subscription: connections.subscription,
  });

  app.get('/healthz', (res) => {
    reply(track(res), 200, { status: 'ok' });
  });
  app.get('/readyz', (res) => {
    const r = lifecycle.readiness();
    if (r.ready) reply(track(res), 200, { status: 'ready' });
    else reply(track(res), r.why.status, { status: 'unavailable', reason: r.why.reason });
  });
  app.get('/metrics', (res) => {
    const ex = track(res);
    deps.observe.metrics().then(
      (text) => reply(ex, 200, text, { contentType: metrics.registry.contentType }),
      () => refuse(ex, Refusal.Internal),
    );
  });
  app.get('/stats', (res) => {
    const ex = track(res);
    deps.observe.stats().then(
      (stats) => reply(ex, 200, stats),
      () => refuse(ex, Refusal.Internal),
    );
  });
  if (config.publishKey !== undefined) {
    app.post('/publish', deps.publish);
    app.any('/publish', methodNotAllowed(metrics));
  }
  // Presence is for publishers too (push or e-mail instead?); acting on connections needs the control key.
  if (config.controlKey !== undefined || config.publishKey !== undefined) {
    app.get('/presence', deps.control.presence);
    app.any('/presence', (res) => {
      metrics.controlRequest('presence', Refusal.PresenceMethodNotAllowed.status);
      refuse(track(res), Refusal.PresenceMethodNotAllowed);
    });
  }
  if (config.controlKey !== undefined) {
    for (const action of CONTROL_ACTIONS) {
      app.post(`/control/${action}`, deps.control.control(action));
      app.any(`/control/${action}`, (res) => {
        metrics.controlRequest(action, Refusal.MethodNotAllowed.status);
        refuse(track(res), Refusal.MethodNotAllowed);
      });
    }
  }
  if (deps.demo !== undefined) {
    const assets = withWsPath(deps.demo, config.wsPath);
    const serve = (res: HttpResponse, req: HttpRequest): void => {
      const asset = assets.get(req.getUrl());
      if (asset === undefined) refuse(track(res), Refusal.NotFound);
      else reply(track(res), 200, asset.body, { contentType: asset.contentType, headers: DEMO_HEADERS });
    };
    app.get('/demo', serve);
    app.get('/demo/*', serve);
  }
  // A plain GET on the WebSocket path (no Upgrade header) falls through to here.
  app.get(config.wsPath, (res) => {
    refuse(track(res), Refusal.UpgradeRequired);
  });
  app.any('/*', (res) => {
    refuse(track(res), Refusal.NotFound);
  });

  let listenSocket: us_listen_socket | undefined;
  return {
    app,
    listen() {
      return new Promise((resolve, reject) => {
        const onListen = (socket: us_listen_socket | false): void => {
          if (socket === false) {
            reject(new Error(`cannot listen on ${config.host}:${config.port} (address in use or not available)`));
            return;
          }
          listenSocket = socket;
          resolve(uws.us_socket_local_port(socket as never));
        };
        if (deps.sharePort) app.listen(config.host, config.port, onListen);
        else listenExclusive(uws, app, config.host, config.port, onListen);
      });
    },
    stopListening() {
      if (listenSocket !== undefined) uws.us_listen_socket_close(listenSocket);
      listenSocket = undefined;
    },
  };
}

// The gateway assembled from its parts. Reads like a table of contents: each line
// is one concern, each dependency passed explicitly.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { AggregatorRegistry } from 'prom-client';
import { createAdmission } from './admission.js';
import { createVerifier } from './auth.js';
import { type Bridge, createBridge } from './bridge.js';
import type { Config } from './config.js';
import { createConnections } from './connection.js';
import { type Control, createControl } from './control.js';
import { createDedupWindow } from './dedup.js';
import { createDeliverer, type Fanout } from './deliver.js';
import { loadDemoAssets } from './demo.js';
import type { LibraryConflict } from './history.js';
import { alwaysSubscribed } from './interest.js';
import { names } from './keys.js';
import { createLifecycle } from './lifecycle.js';
import type { Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { createPresence } from './presence.js';
import { createPublishHandler } from './publish.js';
import { createServer } from './server.js';
import { createSiblings } from './siblings.js';
import { hostStats, type WorkerStats } from './stats.js';
import { checkTls } from './tls.js';
import { createUpgradeHandler } from './upgrade.js';
import type { Uws } from './uws.js';

const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

export interface Gateway {
  port: number;
  /** Drain and stop; resolves true when everything closed within HERALD_SHUTDOWN_TIMEOUT_S. */
  shutdown(): Promise<boolean>;
}

export interface GatewayOptions {
  /** Set in a worker under the supervisor: share the port with the other workers. */
  workerId: number | undefined;
  /** Redis holds another deployment's function library, or ours with other settings
   *  (found when the gateway first reaches Redis): the gateway must stop. */
  onConflict?: (err: LibraryConflict) => void;
}

export async function startGateway(
  config: Config,
  log: Logger,
  uws: Uws,
  opts: GatewayOptions = { workerId: undefined },
): Promise<Gateway> {
  const metrics = createMetrics();
  const verifier = await createVerifier(config.jwt);
  const tls = config.tls === undefined ? undefined : await checkTls(config.tls);

  // The deliverer needs the app to publish through, and the app needs handlers that
  // need the bridge; `fanout` closes that loop once the app exists.
  let fanout: Fanout = { publish: () => false, numSubscribers: () => 0 };
  /** This process's name in Redis (recorder leases, presence): unique per start. */
  const gatewayId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  // The bridge hears control messages before control.ts exists: this closes that loop.
  let control: Control | undefined;
  const deliverer = createDeliverer({
    fanout: { publish: (t, f) => fanout.publish(t, f), numSubscribers: (t) => fanout.numSubscribers(t) },
    dedup: createDedupWindow(config.dedup),
    metrics,
    maxBytes: config.maxNotificationBytes,
  });
  const bridge: Bridge | undefined =
    config.redisUrl === undefined
      ? undefined
      : createBridge({
          url: config.redisUrl,
          namespace: config.namespace,
          prefix: config.channelPrefix,
          events: config.events,
          deliverer,
          log,
          metrics,
          history: config.history,
          recorders: config.recorders,
          maxNotificationBytes: config.maxNotificationBytes,
          recorderMaxWaitingBytes: config.recorderMaxWaitingBytes,
          // Every connection holds `system`. Role topics are left like any other when nobody
          // holds them: a `role:*` grant must not grow the gateway's subscriptions unbounded.
          sticky: (topic) => topic === 'system',
          gatewayId,
          onControl: (userId, message) => control?.onMessage(userId, message),
          onConflict: (err) => {
            if (opts.onConflict !== undefined) opts.onConflict(err);
            else throw err;
          },
        });
  const lifecycle = createLifecycle({
    log,
    timeoutMs: config.shutdownTimeoutMs,
    ...(bridge !== undefined ? { redisUp: () => bridge.up } : {}),
  });
  const admission = createAdmission(config.admission);
  // Per-address state is forgotten once idle; one sweep for the process.
  const sweeper = setInterval(() => admission.sweep(performance.now()), 10_000);
  sweeper.unref();
  const presence = createPresence({
    config: {
      gatewayId,
      namespace: config.namespace,
      maxConnectionsPerUser: config.maxConnectionsPerUser,
      presence: config.presence,
      presenceTtlMs: config.presenceTtlMs,
      events: config.connectionEvents ? config.events : undefined,
      maxTokenLifetimeS: config.jwt.maxLifetimeS,
    },
    commands: bridge?.commands,
    controls: bridge?.controls ?? alwaysSubscribed,
    subscribers: (topic) => fanout.numSubscribers(topic),
    metrics,
    log,
  });
  const connections = createConnections({
    config,
    metrics,
    log,
    bridge,
    admission,
    verifier,
    subscriptions: bridge?.subscriptions ?? alwaysSubscribed,
    presence,
  });
  control = createControl({
    config,
    presence,
    connections,
    publish: bridge?.publishControl,
    names: names(config.namespace),
    metrics,
    log,
  });

  // /stats and /metrics: this process, or under the supervisor every worker's.
  const startedAt = Date.now();
  const localStats = (): WorkerStats => ({
    id: opts.workerId ?? 0,
    pid: process.pid,
    connections: connections.sockets.size,
    topics: connections.topicCount(),
    rssBytes: process.memoryUsage.rss(),
    uptimeS: Math.round((Date.now() - startedAt) / 1000),
    redis: bridge === undefined ? 'embedded' : bridge.up ? 'up' : 'down',
    ...(bridge?.recorderSlot !== undefined ? { recorderSlot: bridge.recorderSlot } : {}),
  });
  const siblings = createSiblings({ stats: async () => localStats(), metrics: () => metrics.registry.getMetricsAsJSON() });
  const observe = {
    metrics: async (): Promise<string> =>
      opts.workerId === undefined
        ? metrics.registry.metrics()
        : AggregatorRegistry.aggregate((await siblings.gather('metrics')) as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics(),
    stats: async (): Promise<unknown> => hostStats(VERSION, (await siblings.gather('stats')) as WorkerStats[]),
  };
  const server = createServer({
    uws,
    tls,
    sharePort: opts.workerId !== undefined,
    config,
    metrics,
    lifecycle,
    connections,
    observe,
    upgrade: createUpgradeHandler({
      config,
      verifier,
      metrics,
      log,
      lifecycle,
      admission,
      presence,
      subscriptions: bridge?.subscriptions ?? alwaysSubscribed,
    }),
    control,
    publish: createPublishHandler({ config, bridge, deliverer, metrics, log }),
    demo: config.demo ? loadDemoAssets() : undefined,
  });
  fanout = { publish: (t, f) => server.app.publish(t, f), numSubscribers: (t) => server.app.numSubscribers(t) };

  const port = await server.listen();
  lifecycle.serving();
  log.info(
    {
      host: config.host,
      port,
      wsPath: config.wsPath,
      tls: tls !== undefined,
      mode: bridge === undefined ? 'embedded' : 'redis',
      algorithms: verifier.algorithms,
    },
    'herald listening',
  );

  return {
    port,
    shutdown: () =>
      lifecycle.shutdown([
        {
          name: 'stop accepting',
          run: () => {
            clearInterval(sweeper);
            server.stopListening();
          },
        },
        { name: 'close clients', run: () => connections.closeAll() },
        // The disconnected events go out, and this gateway's presence is removed at once.
        { name: 'leave presence', run: () => presence.close(2000) },
        { name: 'leave redis', run: () => bridge?.close() },
      ]),
  };
}

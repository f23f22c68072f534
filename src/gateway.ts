// The gateway assembled from its parts. Reads like a table of contents: each line
// is one concern, each dependency passed explicitly.
import { createVerifier } from './auth.js';
import { createBridge, type Bridge } from './bridge.js';
import type { Config } from './config.js';
import { createConnectionHandlers } from './connection.js';
import { createDedupWindow } from './dedup.js';
import { createDeliverer, type Publisher } from './deliver.js';
import { createLifecycle } from './lifecycle.js';
import type { Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { createPublishHandler } from './publish.js';
import { createServer } from './server.js';
import { createUpgradeHandler } from './upgrade.js';
import type { Uws } from './uws.js';

export interface Gateway {
  port: number;
  /** Drain and stop; resolves true when everything closed within HERALD_SHUTDOWN_TIMEOUT_S. */
  shutdown(): Promise<boolean>;
}

export async function startGateway(config: Config, log: Logger, uws: Uws): Promise<Gateway> {
  const metrics = createMetrics();
  const verifier = await createVerifier(config.jwt);

  // The deliverer needs the app to publish through, and the app needs handlers that
  // need the bridge; `publisher` closes that loop once the app exists.
  let publisher: Publisher = { publish: () => false, numSubscribers: () => 0 };
  const deliverer = createDeliverer({
    publisher: { publish: (t, f) => publisher.publish(t, f), numSubscribers: (t) => publisher.numSubscribers(t) },
    dedup: createDedupWindow(config.dedup),
    metrics,
    maxBytes: config.maxNotificationBytes,
  });
  const bridge: Bridge | undefined = config.redisUrl === undefined
    ? undefined
    : createBridge({ url: config.redisUrl, prefix: config.channelPrefix, events: config.events, deliverer, log, metrics });
  const lifecycle = createLifecycle({
    log,
    timeoutMs: config.shutdownTimeoutMs,
    ...(bridge !== undefined ? { redisUp: () => bridge.up } : {}),
  });
  const connections = createConnectionHandlers({ config, metrics, log, bridge });
  const server = createServer({
    uws,
    config,
    metrics,
    lifecycle,
    connections,
    upgrade: createUpgradeHandler({ config, verifier, metrics, log, lifecycle }),
    publish: createPublishHandler({ config, bridge, deliverer, metrics, log }),
  });
  publisher = { publish: (t, f) => server.app.publish(t, f), numSubscribers: (t) => server.app.numSubscribers(t) };

  const port = await server.listen();
  lifecycle.serving();
  log.info(
    { host: config.host, port, wsPath: config.wsPath, mode: bridge === undefined ? 'embedded' : 'redis', algorithms: verifier.algorithms },
    'herald listening',
  );

  return {
    port,
    shutdown: () =>
      lifecycle.shutdown([
        { name: 'stop accepting', run: () => server.stopListening() },
        { name: 'close clients', run: () => connections.closeAll() },
        { name: 'leave redis', run: () => bridge?.close() },
      ]),
  };
}

// The gateway's two Redis connections (Redis mode): the subscriber (the topic channels
// of interest.ts, and the recorder's pattern) and the command connection (POST
// /publish, client events, history reads, recording and leases). Here: how each is
// set up, its errors logged once each, lost subscriber connections counted, and a wait
// for the command connection to be ready. Each connection's life is ioredis's own
// state (`status`: connecting, ready, reconnecting, end), which its users follow
// through its events; the state kept here is only what the log and the reconnect
// counter need (the last error logged, whether the subscriber was up).
import { Redis } from 'ioredis';
import { reconnectDelay } from './limits.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

export interface RedisConnections {
  /** autoResubscribe off: interest.ts (and the recorder) subscribe again on every 'ready'. */
  readonly subscriber: Redis;
  /** No offline queue: a command while Redis is away fails at once (callers answer 503). */
  readonly commands: Redis;
  /** Resolves when the command connection is ready, or after `ms` (a command then fails as usual). */
  commandsReady(ms: number): Promise<void>;
  /** Starts both; ioredis reconnects (reconnectDelay), errors are logged here. */
  connect(): void;
  /** QUIT each that is ready (each bounded by `ms`: a Redis that hangs must not hold the shutdown), then disconnect. */
  close(ms: number): Promise<void>;
}

/** Resolves when `client` is ready, or after `ms`. An event, not a poll. */
function readyWithin(client: Redis, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      client.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.once('ready', done);
  });
}

/** Resolves when `p` settles or after `ms`, whichever is first; never rejects. */
export function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function createRedisConnections(opts: { url: string; log: Logger; metrics: Metrics }): RedisConnections {
  const { url, metrics } = opts;
  const rlog = opts.log.child({ component: 'redis' });

  const subscriber = new Redis(url, {
    lazyConnect: true,
    // interest.ts subscribes again on every 'ready', so that `up` means "confirmed"; a
    // SUBSCRIBE cut off by a lost connection fails rather than being sent again.
    autoResubscribe: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: null,
    retryStrategy: (attempt: number) => reconnectDelay(attempt, Math.random()),
    // The pid tells gateways on one host apart in CLIENT LIST.
    connectionName: `herald-subscriber-${process.pid}`,
  });
  const commands = new Redis(url, {
    lazyConnect: true,
    // Fail fast while Redis is away: callers answer 503 rather than queue unboundedly.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt: number) => reconnectDelay(attempt, Math.random()),
    connectionName: `herald-commands-${process.pid}`,
  });

  // herald_redis_reconnects_total counts lost connections, not retries: one outage is
  // one reconnect, however many attempts it takes.
  let subscriberUp = false;
  subscriber.on('ready', () => {
    subscriberUp = true;
  });
  subscriber.on('reconnecting', () => {
    if (subscriberUp) metrics.redisReconnects.inc();
    subscriberUp = false;
  });

  // ioredis repeats the same error on every retry; each distinct one is logged once,
  // until a connection is ready again.
  let lastError = '';
  for (const [name, client] of [
    ['subscriber', subscriber],
    ['commands', commands],
  ] as const) {
    client.on('error', (err: Error) => {
      if (err.message === lastError) return;
      lastError = err.message;
      rlog.warn({ client: name, err }, 'redis error');
    });
    client.on('ready', () => {
      lastError = '';
    });
  }

  return {
    subscriber,
    commands,
    commandsReady: (ms) => readyWithin(commands, ms),
    connect() {
      // Retried by retryStrategy; the errors are logged above.
      subscriber.connect().catch(() => undefined);
      commands.connect().catch(() => undefined);
    },
    async close(ms) {
      const quit = async (client: Redis): Promise<void> => {
        if (client.status === 'ready') await within(client.quit(), ms);
        client.disconnect();
      };
      await Promise.all([quit(subscriber), quit(commands)]);
    },
  };
}

// What a burst of connects or disconnects costs, the work the gateways do later in
// batches included (presence counts and connection events written once a second,
// UNSUBSCRIBEs a second after a channel turns idle): gateway and load CPU, and
// redis-server's CPU and commands from its INFO. The window opens just before the
// burst and closes once every gateway's counters for that batched work stopped moving.
import { performance } from 'node:perf_hooks';
import type { Redis as IORedis } from 'ioredis';
import { type Context, gatewayCpu, sleep } from './context.js';
import { settledCounters } from './counters.js';
import { round } from './stats.js';

/** One burst's raw totals (the report divides by `connections`). */
export interface Upkeep {
  /** Connections opened (connect) or closed (disconnect) in the window. */
  connections: number;
  /** From just before the burst until the batched work settled. */
  seconds: number;
  gatewayCpuMicros: number;
  /** The workers opening or closing their sockets. */
  loadCpuMicros: number;
  /** redis-server's user + system CPU (INFO cpu: getrusage, so finer than /proc's ticks). */
  redisCpuMicros: number;
  /**
   * Calls per command redis-server ran in the window (INFO commandstats), the harness's
   * own INFO left out. Redis 7 counts a command a script runs here as well, so a script
   * call shows as its EVALSHA plus everything it ran.
   */
  redisCommands: Record<string, number>;
}

/** Commands a client sends to run a script; no script can call one of them. */
export const SCRIPT_COMMANDS = ['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro'];

/** The commands the harness itself sends while a window is open. */
const OWN_COMMANDS = new Set(['info']);

/**
 * The batched work settles within two of its one-second periods; quiet for this long
 * spans both a presence flush and the UNSUBSCRIBE timer.
 */
const QUIET_MS = 2000;

interface RedisReading {
  cpuMicros: number;
  calls: Map<string, number>;
}

/** redis-server's CPU (µs) and calls per command so far, from one INFO. */
export function parseInfo(text: string): RedisReading {
  const num = (field: string): number => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN);
  const calls = new Map<string, number>();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1] as string, Number(m[2]));
  return { cpuMicros: Math.round((num('used_cpu_sys') + num('used_cpu_user')) * 1e6), calls };
}

async function readRedis(redis: IORedis): Promise<RedisReading> {
  return parseInfo((await redis.call('INFO', 'cpu', 'commandstats')) as string);
}

function commandsBetween(a: RedisReading, b: RedisReading): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, n] of [...b.calls].sort(([x], [y]) => x.localeCompare(y))) {
    const d = n - (a.calls.get(name) ?? 0);
    if (d > 0 && !OWN_COMMANDS.has(name)) out[name] = d;
  }
  return out;
}

/** Every command in a window, those inside scripts included. */
export const totalCommands = (u: Upkeep): number => Object.values(u.redisCommands).reduce((s, n) => s + n, 0);
/** Script calls in a window: round trips that each run many commands inside. */
export const scriptCalls = (u: Upkeep): number => SCRIPT_COMMANDS.reduce((s, c) => s + (u.redisCommands[c] ?? 0), 0);

/**
 * Herald: until its counters of batched work were still for QUIET_MS. The baseline
 * batches nothing; it waits as long, so both windows hold about the same idle time.
 */
async function settled(ctx: Context): Promise<void> {
  if (ctx.target === 'herald')
    await settledCounters(
      ctx.gateways.map((g) => g.port),
      QUIET_MS,
    );
  else await sleep(QUIET_MS);
}

/** Opens a window; `finish` waits for the batched work to settle and closes it. */
export async function startUpkeep(ctx: Context): Promise<{ finish(connections: number, loadCpuMicros: number): Promise<Upkeep> }> {
  // What the scenario before left to batch (churn's closes and connects) is not this
  // window's. The baseline leaves nothing.
  if (ctx.target === 'herald') await settled(ctx);
  const redis0 = await readRedis(ctx.publisher);
  const gw0 = gatewayCpu(ctx);
  const t0 = performance.now();
  return {
    async finish(connections, loadCpuMicros) {
      await settled(ctx);
      const gw = gatewayCpu(ctx) - gw0;
      const seconds = (performance.now() - t0) / 1000;
      const redis1 = await readRedis(ctx.publisher);
      return {
        connections,
        seconds: round(seconds, 2),
        gatewayCpuMicros: gw,
        loadCpuMicros: Math.round(loadCpuMicros),
        redisCpuMicros: redis1.cpuMicros - redis0.cpuMicros,
        redisCommands: commandsBetween(redis0, redis1),
      };
    },
  };
}

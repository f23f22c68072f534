// What every scenario is handed: the running target, its clients, and helpers to
// publish at a rate and to collect what the clients saw.
import { performance } from 'node:perf_hooks';
import type { Redis as IORedis } from 'ioredis';
import type { GatewayProc, Worker } from './services.js';
import { cpuMicros, merge, newHistogram, type Histogram } from './stats.js';
import type { Target } from './worker.js';

export interface Options {
  profile: string;
  connections: number;
  gateways: number;
  workers: number;
  concurrency: number;
  targetedRates: number[];
  broadcastRates: number[];
  stepSeconds: number;
  churnFraction: number;
  pin: boolean;
  baseline: boolean;
  out: string | undefined;
  /** Write gateway CPU profiles (node --cpu-prof) to this folder. */
  cpuProfDir: string | undefined;
}

export interface Context {
  target: Target;
  opts: Options;
  users: number;
  gateways: GatewayProc[];
  workers: Worker[];
  publisher: IORedis;
  /** Connections that completed their upgrade in the connect scenario. */
  connected: number;
  nextStep(): number;
}

export const wallNow = (): number => performance.timeOrigin + performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The payload every bench notification carries: step, sequence, publish time (ms). */
export function payload(step: number, n: number): string {
  return `{"id":"${step}-${n}","s":${step},"n":${n},"t":${wallNow()}}`;
}

/**
 * Publishes `count(elapsed)` messages paced at `rate`/s for `seconds` (rate Infinity =
 * as fast as Redis acknowledges, at most `window` in flight). Returns messages sent
 * and the seconds it took.
 */
export async function publishPaced(
  redis: IORedis,
  rate: number,
  seconds: number,
  message: (n: number) => [channel: string, payload: string],
  limit = Number.POSITIVE_INFINITY,
): Promise<{ sent: number; failed: number; seconds: number }> {
  const window = 4000;
  let sent = 0;
  let failed = 0;
  let inflight = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const fire = (): void => {
    const [channel, body] = message(sent++);
    inflight++;
    redis.publish(channel, body).then(
      () => {
        inflight--;
      },
      () => {
        inflight--;
        failed++;
      },
    );
  };
  while (performance.now() < deadline && sent < limit) {
    const due = Number.isFinite(rate) ? Math.min(limit, Math.floor((rate * (performance.now() - start)) / 1000)) : limit;
    while (sent < due && inflight < window) fire();
    await (Number.isFinite(rate) ? sleep(2) : new Promise((r) => setImmediate(r)));
  }
  const took = (performance.now() - start) / 1000;
  while (inflight > 0) await sleep(1);
  // Sent = accepted by Redis: a PUBLISH that failed is not counted as sent (or lost).
  return { sent: sent - failed, failed, seconds: took };
}

export interface Collected {
  received: number;
  duplicates: number;
  latency: Histogram;
  loadCpuMicros: number;
}

/** Polls the workers until `expected` arrived, or nothing new came for `quietMs`. */
export async function collect(ctx: Context, step: number, expected: number, quietMs = 2000, maxMs = 30_000): Promise<Collected> {
  const started = performance.now();
  let last = -1;
  let lastChange = started;
  for (;;) {
    const reports = await Promise.all(ctx.workers.map((w) => w.ask({ cmd: 'report', step }, 'report', 10_000)));
    const out: Collected = { received: 0, duplicates: 0, latency: newHistogram(), loadCpuMicros: 0 };
    for (const { report } of reports) {
      out.received += report.received;
      out.duplicates += report.duplicates;
      out.loadCpuMicros += report.cpuMicros;
      merge(out.latency, report.latency);
    }
    const t = performance.now();
    if (out.received !== last) {
      last = out.received;
      lastChange = t;
    }
    if (out.received >= expected || t - lastChange > quietMs || t - started > maxMs) return out;
    await sleep(200);
  }
}

export function gatewayCpu(ctx: Context): number {
  return ctx.gateways.reduce((sum, g) => sum + cpuMicros(g.pid), 0);
}

// connect: open every client with bounded concurrency; upgrades/s, connect time,
// failures, gateway memory per idle connection, and what the connects cost until the
// gateways' batched writes settled (upkeep.ts: Redis commands and CPU included).
import { type Context, gatewayCpu } from '../context.js';
import { merge, newHistogram, quantile, round, rssKiB } from '../stats.js';
import { startUpkeep, type Upkeep } from '../upkeep.js';

export interface ConnectResult {
  connections: number;
  ok: number;
  failed: number;
  errors: string[];
  seconds: number;
  upgradesPerSec: number;
  connectP50Ms: number;
  connectP99Ms: number;
  gatewayRssBeforeKiB: number[];
  gatewayRssAfterKiB: number[];
  kibPerConnection: number[];
  /** Until the last worker is done: the batched writes that follow are in `upkeep`. */
  gatewayCpuMicrosPerConnection: number;
  loadCpuMicrosPerConnection: number;
  /** Absent in records made before it was measured. */
  upkeep?: Upkeep;
}

export async function connect(ctx: Context, localAddress: (worker: number) => string): Promise<ConnectResult> {
  const rssBefore = await settledRss(ctx);
  const window = await startUpkeep(ctx);
  const gwCpu0 = gatewayCpu(ctx);
  const per = Math.ceil(ctx.users / ctx.workers.length);
  const urls = ctx.gateways.map((g) => `ws://127.0.0.1:${g.port}/ws`);
  const secret = process.env['BENCH_SECRET'] as string;
  const results = await Promise.all(
    ctx.workers.map((w, i) =>
      w.ask(
        {
          cmd: 'connect',
          from: i * per,
          to: Math.min(ctx.users, (i + 1) * per),
          urls,
          target: ctx.target,
          secret,
          concurrency: ctx.opts.concurrency,
          localAddress: localAddress(i),
        },
        'connected',
        600_000,
      ),
    ),
  );
  const gwCpu = gatewayCpu(ctx) - gwCpu0;
  const hist = newHistogram();
  let ok = 0;
  let failed = 0;
  let seconds = 0;
  let loadCpu = 0;
  const errors: string[] = [];
  for (const r of results) {
    ok += r.ok;
    failed += r.failed;
    seconds = Math.max(seconds, r.elapsedMs / 1000);
    loadCpu += r.cpuMicros;
    merge(hist, r.connectMs);
    errors.push(...r.errors);
  }
  const upkeep = await window.finish(ok, loadCpu);
  const rssAfter = await settledRss(ctx);
  const perGateway = ok / ctx.gateways.length;
  return {
    connections: ctx.users,
    ok,
    failed,
    errors,
    seconds: round(seconds, 2),
    upgradesPerSec: round(ok / seconds, 0),
    connectP50Ms: round(quantile(hist, 0.5), 2),
    connectP99Ms: round(quantile(hist, 0.99), 2),
    gatewayRssBeforeKiB: rssBefore,
    gatewayRssAfterKiB: rssAfter,
    kibPerConnection: rssAfter.map((a, i) => round((a - (rssBefore[i] ?? 0)) / perGateway, 2)),
    gatewayCpuMicrosPerConnection: round(gwCpu / Math.max(1, ok), 1),
    loadCpuMicrosPerConnection: round(loadCpu / Math.max(1, ok), 1),
    upkeep,
  };
}

/** Each gateway's RSS: the median of 5 readings 500 ms apart (V8's heap breathes). */
async function settledRss(ctx: Context): Promise<number[]> {
  const readings: number[][] = ctx.gateways.map(() => []);
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 500));
    for (const [j, g] of ctx.gateways.entries()) readings[j]?.push(rssKiB(g.pid));
  }
  return readings.map((r) => r.sort((a, b) => a - b)[2] ?? NaN);
}

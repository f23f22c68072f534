// idle: every client connected, nothing published, for a few seconds: what the gateways
// and redis-server spend on their own (timers, pings, leases, recorder renewals). At
// low rates this fixed cost dominates CPU per delivery, and it grows with the number
// of gateway processes, so the scale comparison shows it beside the per-step figures.
import { performance } from 'node:perf_hooks';
import { type Context, gatewayCpu, sleep } from '../context.js';
import { cpuMicros, round } from '../stats.js';

export interface IdleResult {
  seconds: number;
  /** All gateways together, ms of CPU per second of wall time. */
  gatewayCpuMsPerSec: number;
  redisCpuMsPerSec: number;
}

/** Long enough for several 10 ms /proc ticks per process, short beside a step. */
const IDLE_SECONDS = 3;

export async function idle(ctx: Context): Promise<IdleResult> {
  const gw0 = gatewayCpu(ctx);
  const redis0 = cpuMicros(ctx.redisPid);
  const t0 = performance.now();
  await sleep(IDLE_SECONDS * 1000);
  const seconds = (performance.now() - t0) / 1000;
  return {
    seconds: round(seconds, 2),
    gatewayCpuMsPerSec: round((gatewayCpu(ctx) - gw0) / 1000 / seconds, 1),
    redisCpuMsPerSec: round((cpuMicros(ctx.redisPid) - redis0) / 1000 / seconds, 1),
  };
}

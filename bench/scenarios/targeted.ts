// targeted: Redis PUBLISHes notifications:user:<n mod N> at stepped rates; each message
// goes to exactly one user. Delivered/s, lost, duplicated and end-to-end latency per step.
import { collect, gatewayCpu, publishBatched, type Collected, type Context } from '../context.js';
import { cpuMicros, quantile, round } from '../stats.js';

export interface RateStep {
  rate: number | 'max';
  sent: number;
  sentPerSec: number;
  received: number;
  deliveredPerSec: number;
  lost: number;
  duplicated: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  gatewayCpuMicrosPerDelivery: number;
  loadCpuMicrosPerDelivery: number;
  /** redis-server's CPU: the publishing script and, with history on, the recording. */
  redisCpuMicrosPerDelivery: number;
}

/** One step of `kind` at `rate` messages/s (Infinity = as fast as Redis takes them). */
export async function rateStep(ctx: Context, rate: number, kind: 'targeted' | 'broadcast'): Promise<RateStep> {
  const step = ctx.nextStep();
  for (const w of ctx.workers) w.tell({ cmd: 'step', step });
  const cpu0 = gatewayCpu(ctx);
  const self0 = process.cpuUsage();
  const redis0 = cpuMicros(ctx.redisPid);
  const pub = await publishBatched(ctx.publisher, rate, ctx.opts.stepSeconds, { step, users: ctx.users, system: kind === 'broadcast' });
  const got = await collect(ctx, step, { sent: pub.sent, kind });
  return summarize(rate, pub, got, gatewayCpu(ctx) - cpu0, process.cpuUsage(self0), cpuMicros(ctx.redisPid) - redis0);
}

export function targeted(ctx: Context, rate: number): Promise<RateStep> {
  return rateStep(ctx, rate, 'targeted');
}

function summarize(rate: number, pub: { sent: number; seconds: number }, got: Collected, gatewayMicros: number, self: NodeJS.CpuUsage, redisMicros: number): RateStep {
  const delivered = Math.max(1, got.received);
  return {
    rate: Number.isFinite(rate) ? rate : 'max',
    sent: pub.sent,
    sentPerSec: round(pub.sent / pub.seconds, 0),
    received: got.received,
    deliveredPerSec: round(got.received / pub.seconds, 0),
    lost: Math.max(0, got.expected - got.received),
    duplicated: got.duplicates,
    p50Ms: round(quantile(got.latency, 0.5), 2),
    p95Ms: round(quantile(got.latency, 0.95), 2),
    p99Ms: round(quantile(got.latency, 0.99), 2),
    maxMs: round(got.latency.max, 2),
    gatewayCpuMicrosPerDelivery: round(gatewayMicros / delivered, 2),
    loadCpuMicrosPerDelivery: round((got.loadCpuMicros + self.user + self.system) / delivered, 2),
    redisCpuMicrosPerDelivery: round(redisMicros / delivered, 2),
  };
}

// targeted: PUBLISH to notifications:user:<i> at stepped rates; each message goes to
// exactly one user. Delivered/s, lost, duplicated and end-to-end latency per step.
import { collect, gatewayCpu, payload, publishPaced, type Context } from '../context.js';
import { quantile, round } from '../stats.js';

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
}

export async function targeted(ctx: Context, rate: number): Promise<RateStep> {
  const step = ctx.nextStep();
  for (const w of ctx.workers) w.tell({ cmd: 'step', step });
  const cpu0 = gatewayCpu(ctx);
  const self0 = process.cpuUsage();
  const users = ctx.users;
  const pub = await publishPaced(ctx.publisher, rate, ctx.opts.stepSeconds, (n) => [`notifications:user:${n % users}`, payload(step, n)]);
  const got = await collect(ctx, step, pub.sent);
  return summarize(rate, pub, got.received, pub.sent, got, gatewayCpu(ctx) - cpu0, process.cpuUsage(self0));
}

export function summarize(
  rate: number,
  pub: { sent: number; seconds: number },
  received: number,
  expected: number,
  got: Awaited<ReturnType<typeof collect>>,
  gatewayMicros: number,
  self: NodeJS.CpuUsage,
): RateStep {
  const delivered = Math.max(1, received);
  return {
    rate: Number.isFinite(rate) ? rate : 'max',
    sent: pub.sent,
    sentPerSec: round(pub.sent / pub.seconds, 0),
    received,
    deliveredPerSec: round(received / pub.seconds, 0),
    lost: Math.max(0, expected - received),
    duplicated: got.duplicates,
    p50Ms: round(quantile(got.latency, 0.5), 2),
    p95Ms: round(quantile(got.latency, 0.95), 2),
    p99Ms: round(quantile(got.latency, 0.99), 2),
    maxMs: round(got.latency.max, 2),
    gatewayCpuMicrosPerDelivery: round(gatewayMicros / delivered, 2),
    loadCpuMicrosPerDelivery: round((got.loadCpuMicros + self.user + self.system) / delivered, 2),
  };
}

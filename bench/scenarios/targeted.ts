// targeted: Redis PUBLISHes notifications:user:<n mod N> at stepped rates; each message
// goes to exactly one user, named in its payload. Delivered/s, lost (per recipient),
// misrouted, duplicated and end-to-end latency per step; for Herald also what Redis
// routed to each gateway against what it delivered (routing.ts).
import { type Collected, type Context, collect, gatewayCpu, type Published, publishBatched } from '../context.js';
import { scrape, settledCounters } from '../counters.js';
import { accountStep, type StepRouting } from '../routing.js';
import { cpuMicros, quantile, round } from '../stats.js';

export interface RateStep {
  rate: number | 'max';
  sent: number;
  sentPerSec: number;
  received: number;
  /** received ÷ deliverySeconds. */
  deliveredPerSec: number;
  /** From the first send to the last receipt of the step. */
  deliverySeconds: number;
  lost: number;
  misrouted: number;
  duplicated: number;
  /** Received after a later notification of the same step on the same connection. */
  reordered: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  gatewayCpuMicrosPerDelivery: number;
  loadCpuMicrosPerDelivery: number;
  /** redis-server's CPU: the publishing script and, with history on, the recording. */
  redisCpuMicrosPerDelivery: number;
  redisCpuMicrosPerMessage: number;
  /** Sum of the publishing script's PUBLISH replies (redis-server's count of subscriptions reached). */
  publishReplies: number;
  /** Herald only: per gateway, Redis's messages against its deliveries, and the count checks. */
  routing?: StepRouting;
}

/** One step of `kind` at `rate` messages/s (Infinity = as fast as Redis takes them). */
export async function rateStep(ctx: Context, rate: number, kind: 'targeted' | 'broadcast'): Promise<RateStep> {
  const step = ctx.nextStep();
  for (const w of ctx.workers) w.tell({ cmd: 'step', step });
  const herald = ctx.target === 'herald';
  const ports = ctx.gateways.map((g) => g.port);
  // Read before the CPU counters start and after they stop: scraping is not the step's work.
  const before = herald ? await Promise.all(ports.map(scrape)) : [];
  const cpu0 = gatewayCpu(ctx);
  const self0 = process.cpuUsage();
  const redis0 = cpuMicros(ctx.redisPid);
  const pub = await publishBatched(ctx.publisher, rate, ctx.opts.stepSeconds, { step, users: ctx.users, system: kind === 'broadcast' });
  const got = await collect(ctx, step, { sent: pub.sent, kind });
  const cpu = { gateway: gatewayCpu(ctx) - cpu0, self: process.cpuUsage(self0), redis: cpuMicros(ctx.redisPid) - redis0 };
  const s = summarize(rate, pub, got, cpu);
  if (herald) {
    const after = await settledCounters(ports);
    s.routing = accountStep(before, after, {
      history: ctx.opts.history,
      publishReplies: pub.reached,
      systemMessages: kind === 'broadcast' ? pub.sent : 0,
    });
  }
  return s;
}

export function targeted(ctx: Context, rate: number): Promise<RateStep> {
  return rateStep(ctx, rate, 'targeted');
}

function summarize(rate: number, pub: Published, got: Collected, cpu: { gateway: number; self: NodeJS.CpuUsage; redis: number }): RateStep {
  const delivered = Math.max(1, got.received);
  // The publisher's run time would flatter a step whose deliveries trail behind it.
  const deliverySeconds = got.lastReceiptAt > 0 ? Math.max(0.001, (got.lastReceiptAt - pub.firstSendAt) / 1000) : NaN;
  return {
    rate: Number.isFinite(rate) ? rate : 'max',
    sent: pub.sent,
    sentPerSec: round(pub.sent / pub.seconds, 0),
    received: got.received,
    deliveredPerSec: got.received === 0 ? 0 : round(got.received / deliverySeconds, 0),
    deliverySeconds: round(deliverySeconds, 3),
    lost: got.lost,
    misrouted: got.misrouted,
    duplicated: got.duplicates,
    reordered: got.reordered,
    p50Ms: round(quantile(got.latency, 0.5), 2),
    p95Ms: round(quantile(got.latency, 0.95), 2),
    p99Ms: round(quantile(got.latency, 0.99), 2),
    maxMs: round(got.latency.max, 2),
    gatewayCpuMicrosPerDelivery: round(cpu.gateway / delivered, 2),
    loadCpuMicrosPerDelivery: round((got.loadCpuMicros + cpu.self.user + cpu.self.system) / delivered, 2),
    redisCpuMicrosPerDelivery: round(cpu.redis / delivered, 2),
    redisCpuMicrosPerMessage: round(cpu.redis / Math.max(1, pub.sent), 2),
    publishReplies: pub.reached,
  };
}

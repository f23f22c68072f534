// broadcast: PUBLISH to notifications:system at stepped rates; every message reaches
// every connected client. Deliveries/s, lost, latency.
import { collect, gatewayCpu, payload, publishPaced, type Context } from '../context.js';
import { summarize, type RateStep } from './targeted.js';

export async function broadcast(ctx: Context, rate: number): Promise<RateStep> {
  const step = ctx.nextStep();
  for (const w of ctx.workers) w.tell({ cmd: 'step', step });
  const cpu0 = gatewayCpu(ctx);
  const self0 = process.cpuUsage();
  const pub = await publishPaced(ctx.publisher, rate, ctx.opts.stepSeconds, (n) => ['notifications:system', payload(step, n)]);
  const expected = pub.sent * ctx.connected;
  const got = await collect(ctx, step, expected);
  return summarize(rate, pub, got.received, expected, got, gatewayCpu(ctx) - cpu0, process.cpuUsage(self0));
}

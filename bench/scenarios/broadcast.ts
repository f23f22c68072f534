// broadcast: Redis PUBLISHes notifications:system at stepped rates; every message
// reaches every connected client. Deliveries/s, lost, latency.
import type { Context } from '../context.js';
import { type RateStep, rateStep } from './targeted.js';

export function broadcast(ctx: Context, rate: number): Promise<RateStep> {
  return rateStep(ctx, rate, 'broadcast');
}

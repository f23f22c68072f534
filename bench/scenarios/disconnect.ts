// disconnect: the last scenario. Every worker drops all its clients at once (no close
// frame, as churn does) and the window stays open until the gateways' batched work
// for the closes settled (upkeep.ts): presence counts and connection events written,
// idle channels left. What a disconnect costs the gateways and redis-server.
import type { Context } from '../context.js';
import { startUpkeep, type Upkeep } from '../upkeep.js';

export async function disconnect(ctx: Context): Promise<Upkeep> {
  const window = await startUpkeep(ctx);
  const results = await Promise.all(ctx.workers.map((w) => w.ask({ cmd: 'drop' }, 'dropped', 60_000)));
  return window.finish(
    results.reduce((s, r) => s + r.dropped, 0),
    results.reduce((s, r) => s + r.cpuMicros, 0),
  );
}

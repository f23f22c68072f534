// churn: drop a fraction of the clients at once (abruptly, like phones losing their
// network), reconnect them, and time until all are back and notifications flow again.
import { performance } from 'node:perf_hooks';
import { type Context, collect, payload, publishPaced } from '../context.js';
import { round } from '../stats.js';

export interface ChurnResult {
  dropped: number;
  reconnected: number;
  failed: number;
  reconnectSeconds: number;
  /** From the drop until every reconnected client received a notification. */
  backAndFlowingSeconds: number;
  /** Per recipient: reconnected clients that did not get their notification. */
  lost: number;
  misrouted: number;
}

export async function churn(ctx: Context): Promise<ChurnResult> {
  const started = performance.now();
  const results = await Promise.all(
    ctx.workers.map((w) =>
      w.ask({ cmd: 'churn', fraction: ctx.opts.churnFraction, concurrency: ctx.opts.concurrency }, 'churned', 600_000),
    ),
  );
  const reconnectSeconds = (performance.now() - started) / 1000;
  const users = results.flatMap((r) => r.users);
  const step = ctx.nextStep();
  for (const w of ctx.workers) w.tell({ cmd: 'step', step });
  await publishPaced(
    ctx.publisher,
    Number.POSITIVE_INFINITY,
    60,
    (n) => [`notifications:user:${users[n]}`, payload(step, n, users[n])],
    users.length,
  );
  const got = await collect(ctx, step, { sent: users.length, kind: 'listed' });
  return {
    dropped: users.length,
    reconnected: results.reduce((s, r) => s + r.ok, 0),
    failed: results.reduce((s, r) => s + r.failed, 0),
    reconnectSeconds: round(reconnectSeconds, 2),
    backAndFlowingSeconds: round((performance.now() - started) / 1000, 2),
    lost: got.lost,
    misrouted: got.misrouted,
  };
}

// What every scenario is handed: the running target, its clients, and helpers to
// publish at a rate and to collect what the clients saw.
import { performance } from 'node:perf_hooks';
import type { Redis as IORedis } from 'ioredis';
import type { GatewayProc, Worker } from './services.js';
import { cpuMicros, type Histogram, merge, newHistogram } from './stats.js';
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
  /** 0 = no churn scenario. */
  churnFraction: number;
  pin: boolean;
  baseline: boolean;
  out: string | undefined;
  /** Write gateway CPU profiles (node --cpu-prof) to this folder. */
  cpuProfDir: string | undefined;
  /** Herald's per-topic history (on by default in Redis mode); off = HERALD_HISTORY_SIZE=0. */
  history: boolean;
  /** Herald's presence upkeep in Redis (on by default); off = HERALD_PRESENCE=false. */
  presence: boolean;
}

export interface Context {
  target: Target;
  opts: Options;
  users: number;
  gateways: GatewayProc[];
  workers: Worker[];
  publisher: IORedis;
  /** The redis-server (one for every target): its CPU per delivery is reported too. */
  redisPid: number;
  /** Connections that completed their upgrade in the connect scenario. */
  connected: number;
  nextStep(): number;
}

export const wallNow = (): number => performance.timeOrigin + performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The payload every bench notification carries: step, sequence, publish time (ms),
 *  and for a message meant for one user that user, so a misrouted one is seen. */
export function payload(step: number, n: number, user?: number): string {
  return `{"id":"${step}-${n}","s":${step},"n":${n},"t":${wallNow()}${user === undefined ? '' : `,"u":${user}`}}`;
}

/** What a paced publisher did: `reached` is the sum of the PUBLISH replies, redis-server's
 *  own count of the subscriptions its messages reached; `firstSendAt` is wall-clock ms. */
export interface Published {
  sent: number;
  failed: number;
  seconds: number;
  firstSendAt: number;
  reached: number;
}

/**
 * Publishes `count(elapsed)` messages paced at `rate`/s for `seconds` (rate Infinity =
 * as fast as Redis acknowledges, at most `window` in flight). Returns messages sent
 * and the seconds it took. Used where each message has its own channel (churn).
 */
export async function publishPaced(
  redis: IORedis,
  rate: number,
  seconds: number,
  message: (n: number) => [channel: string, payload: string],
  limit = Number.POSITIVE_INFINITY,
): Promise<Published> {
  const window = 4000;
  let sent = 0;
  let failed = 0;
  let reached = 0;
  let inflight = 0;
  const firstSendAt = wallNow();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const fire = (): void => {
    const [channel, body] = message(sent++);
    inflight++;
    redis.publish(channel, body).then(
      (n) => {
        inflight--;
        reached += n;
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
  return { sent: sent - failed, failed, seconds: took, firstSendAt, reached };
}

/**
 * Redis builds and PUBLISHes a batch of bench payloads itself, stamping each with its
 * own clock (TIME, the same wall clock the workers read). One EVALSHA per batch keeps
 * the publisher's CPU per message small, so it is not the load side's bottleneck.
 * Message n goes to notifications:user:<n mod users> (its payload naming that user as
 * "u"), or to notifications:system. The script returns the sum of its PUBLISH replies:
 * how many subscriptions redis-server itself says it reached, which the runner checks
 * against the gateways' own counters.
 */
const PUBLISH_BATCH_LUA = `
local n0, count, users, step, system = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5] == '1'
local reached = 0
for i = 0, count - 1 do
  local n = n0 + i
  local t = redis.call('TIME')
  local ms = string.format('%d.%03d', t[1] * 1000 + math.floor(t[2] / 1000), t[2] % 1000)
  local body = '{"id":"' .. step .. '-' .. n .. '","s":' .. step .. ',"n":' .. n .. ',"t":' .. ms
  if system then
    reached = reached + redis.call('PUBLISH', 'notifications:system', body .. '}')
  else
    local user = n % users
    reached = reached + redis.call('PUBLISH', 'notifications:user:' .. user, body .. ',"u":' .. user .. '}')
  end
end
return reached`;

type BatchPublisher = IORedis & { benchPublish(n0: number, count: number, users: number, step: number, system: string): Promise<number> };

export function withBatchPublish(redis: IORedis): BatchPublisher {
  const r = redis as BatchPublisher;
  if (typeof r.benchPublish !== 'function') redis.defineCommand('benchPublish', { numberOfKeys: 0, lua: PUBLISH_BATCH_LUA });
  return r;
}

/** Paced like publishPaced, in batches of at most 200 messages, at most 4 batches in flight. */
export async function publishBatched(
  redis: IORedis,
  rate: number,
  seconds: number,
  target: { step: number; users: number; system: boolean },
): Promise<Published> {
  const pub = withBatchPublish(redis);
  const maxBatch = 200;
  let queued = 0;
  let sent = 0;
  let failed = 0;
  let reached = 0;
  let inflight = 0;
  const firstSendAt = wallNow();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    const due = Number.isFinite(rate) ? Math.floor((rate * (performance.now() - start)) / 1000) : queued + maxBatch * 4;
    while (queued < due && inflight < 4) {
      const count = Math.min(maxBatch, due - queued);
      const n0 = queued;
      queued += count;
      inflight++;
      pub.benchPublish(n0, count, target.users, target.step, target.system ? '1' : '0').then(
        (n) => {
          inflight--;
          sent += count;
          reached += n;
        },
        () => {
          inflight--;
          failed += count;
        },
      );
    }
    await (Number.isFinite(rate) ? sleep(2) : new Promise((r) => setImmediate(r)));
  }
  const took = (performance.now() - start) / 1000;
  while (inflight > 0) await sleep(1);
  return { sent, failed, seconds: took, firstSendAt, reached };
}

export interface Collected {
  received: number;
  /** What the connected clients should have received. */
  expected: number;
  /** Per recipient: the sum over connections of max(0, expected − received). */
  lost: number;
  duplicates: number;
  reordered: number;
  misrouted: number;
  /** Wall-clock ms of the last receipt in any worker (0 = none). */
  lastReceiptAt: number;
  latency: Histogram;
  loadCpuMicros: number;
}

/**
 * Polls the workers until what they expect arrived, or nothing new came for `quietMs`.
 * Each worker counts what its connected clients should have received of `sent`
 * messages (a client that never connected expects nothing: that is a connect failure,
 * reported there, not a loss).
 */
export async function collect(
  ctx: Context,
  step: number,
  expect: { sent: number; kind: 'targeted' | 'broadcast' | 'listed' },
  quietMs = 2000,
  maxMs = 30_000,
): Promise<Collected> {
  const started = performance.now();
  let last = -1;
  let lastChange = started;
  for (;;) {
    const reports = await Promise.all(
      ctx.workers.map((w) => w.ask({ cmd: 'report', step, sent: expect.sent, kind: expect.kind, users: ctx.users }, 'report', 10_000)),
    );
    const out: Collected = {
      received: 0,
      expected: 0,
      lost: 0,
      duplicates: 0,
      reordered: 0,
      misrouted: 0,
      lastReceiptAt: 0,
      latency: newHistogram(),
      loadCpuMicros: 0,
    };
    for (const { report } of reports) {
      out.received += report.received;
      out.expected += report.expected;
      out.lost += report.lost;
      out.duplicates += report.duplicates;
      out.reordered += report.reordered;
      out.misrouted += report.misrouted;
      out.lastReceiptAt = Math.max(out.lastReceiptAt, report.lastReceiptAt);
      out.loadCpuMicros += report.cpuMicros;
      merge(out.latency, report.latency);
    }
    const t = performance.now();
    if (out.received !== last) {
      last = out.received;
      lastChange = t;
    }
    if (out.lost === 0 || t - lastChange > quietMs || t - started > maxMs) return out;
    await sleep(200);
  }
}

export function gatewayCpu(ctx: Context): number {
  return ctx.gateways.reduce((sum, g) => sum + cpuMicros(g.pid), 0);
}

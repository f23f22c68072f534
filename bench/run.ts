// The bench runner: starts a private redis-server, the gateway processes and the
// client workers, runs every scenario against Herald and then against the uWS
// baseline, and prints a markdown report (plus JSON under bench/results/).
// Every loop is bounded in count and time; every process it starts, it stops.
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis as IORedis } from 'ioredis';
import type { Context, Options } from './context.js';
import { broadcast } from './scenarios/broadcast.js';
import { churn, type ChurnResult } from './scenarios/churn.js';
import { connect, type ConnectResult } from './scenarios/connect.js';
import { targeted, type RateStep } from './scenarios/targeted.js';
import { ROOT, hasTaskset, killAll, startGateway, startRedis, startWorker } from './services.js';
import { rssKiB } from './stats.js';
import type { Target } from './worker.js';

const PROFILES: Record<string, Omit<Options, 'profile' | 'pin' | 'baseline' | 'out' | 'cpuProfDir' | 'history'>> = {
  // A few seconds: the test suite runs this so the harness cannot rot.
  smoke: { connections: 200, gateways: 1, workers: 2, concurrency: 50, targetedRates: [500], broadcastRates: [5], stepSeconds: 1, churnFraction: 0.1 },
  // About two minutes: `make bench`.
  quick: {
    connections: 5000, gateways: 1, workers: 2, concurrency: 200,
    targetedRates: [2000, 5000, 10000, 20000, Infinity], broadcastRates: [1, 2, 5], stepSeconds: 4, churnFraction: 0.1,
  },
  // 50,000 connections: four gateway processes here (open-files limit 20,000 each).
  full: {
    // Concurrency stays modest: the load core, not the gateways, sets the upgrade rate,
    // and more in flight only queues handshakes until they time out.
    connections: 50000, gateways: 4, workers: 4, concurrency: 100,
    targetedRates: [2000, 5000, 10000, 20000, 50000, Infinity], broadcastRates: [1, 2], stepSeconds: 8, churnFraction: 0.1,
  },
};

const USAGE = `usage: npm run bench -- [--profile smoke|quick|full] [--connections N] [--gateways N] [--workers N]
       [--concurrency N] [--rates 2000,5000,max] [--broadcast-rates 1,2,5] [--step-seconds S]
       [--churn 0.1] [--no-baseline] [--no-pin] [--no-history] [--out FILE.json] [--cpu-prof DIR]`;

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      profile: { type: 'string', default: 'quick' },
      connections: { type: 'string' }, gateways: { type: 'string' }, workers: { type: 'string' }, concurrency: { type: 'string' },
      rates: { type: 'string' }, 'broadcast-rates': { type: 'string' }, 'step-seconds': { type: 'string' }, churn: { type: 'string' },
      'no-baseline': { type: 'boolean', default: false }, 'no-pin': { type: 'boolean', default: false },
      'no-history': { type: 'boolean', default: false },
      out: { type: 'string' }, 'cpu-prof': { type: 'string' }, help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const base = PROFILES[values.profile];
  if (base === undefined) throw new Error(`--profile: expected one of ${Object.keys(PROFILES).join(', ')}`);
  const int = (v: string | undefined, name: string, def: number, max: number): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name}: expected an integer 1-${max}, got ${v}`);
    return n;
  };
  const rates = (v: string | undefined, def: number[]): number[] =>
    v === undefined ? def : v.split(',').map((r) => (r.trim() === 'max' ? Infinity : int(r.trim(), 'rates', 0, 1_000_000)));
  const opts: Options = {
    profile: values.profile,
    connections: int(values.connections, 'connections', base.connections, 200_000),
    gateways: int(values.gateways, 'gateways', base.gateways, 16),
    workers: int(values.workers, 'workers', base.workers, 16),
    concurrency: int(values.concurrency, 'concurrency', base.concurrency, 5000),
    targetedRates: rates(values.rates, base.targetedRates),
    broadcastRates: rates(values['broadcast-rates'], base.broadcastRates),
    stepSeconds: int(values['step-seconds'], 'step-seconds', base.stepSeconds, 600),
    churnFraction: values.churn === undefined ? base.churnFraction : Number(values.churn),
    pin: !values['no-pin'],
    baseline: !values['no-baseline'],
    out: values.out,
    cpuProfDir: values['cpu-prof'],
    history: !values['no-history'],
  };
  // One process holds at most ~19,500 sockets here (open-files hard limit 20,000).
  const perProcess = 19_000;
  if (opts.connections / opts.workers > perProcess) throw new Error(`--workers: ${opts.workers} workers would each hold over ${perProcess} sockets`);
  if (opts.connections / opts.gateways > perProcess) throw new Error(`--gateways: ${opts.gateways} gateways would each hold over ${perProcess} sockets`);
  if (!(opts.churnFraction > 0 && opts.churnFraction <= 1)) throw new Error('--churn: expected a fraction in (0, 1]');
  return opts;
}

function machine() {
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    if (execSync('git status --porcelain -- src bench', { cwd: ROOT }).toString().trim() !== '') commit += '+dirty';
  } catch {
    /* not a git checkout */
  }
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    commit,
    date: new Date().toISOString(),
  };
}

interface TargetResult {
  target: Target;
  connect: ConnectResult;
  targeted: RateStep[];
  broadcast: RateStep[];
  churn: ChurnResult;
  gatewayRssEndKiB: number[];
}

async function runTarget(target: Target, opts: Options, redis: { url: string; pid: number }, secret: string): Promise<TargetResult> {
  const redisUrl = redis.url;
  // Gateways on CPU 0, the load side (workers, this publisher) on CPU 1, when there are two.
  const pin = opts.pin && cpus().length >= 2;
  const gwCpu = pin ? '0' : undefined;
  const loadCpu = pin ? '1' : undefined;
  if (pin && hasTaskset) execSync(`taskset -p -c 1 ${process.pid}`, { stdio: 'ignore' });
  log(`${target}: starting ${opts.gateways} gateway process(es)`);
  const gateways = await Promise.all(Array.from({ length: opts.gateways }, () => startGateway(target, { redisUrl, secret, cpu: gwCpu, cpuProfDir: opts.cpuProfDir, history: opts.history })));
  const workers = Array.from({ length: opts.workers }, () => startWorker(loadCpu));
  const publisher = new IORedis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
  let step = 0;
  const ctx: Context = { target, opts, users: opts.connections, gateways, workers, publisher, redisPid: redis.pid, connected: 0, nextStep: () => ++step };
  try {
    log(`${target}: connect ${opts.connections} clients`);
    const c = await connect(ctx, (i) => `127.0.0.${2 + i}`);
    ctx.connected = c.ok;
    log(`${target}: ${c.ok} connected, ${c.failed} failed${c.errors.length > 0 ? ` (${c.errors.join('; ')})` : ''}`);
    const t: RateStep[] = [];
    for (const rate of opts.targetedRates) {
      t.push(await targeted(ctx, rate));
      log(`${target}: targeted ${rate}/s -> ${JSON.stringify(t.at(-1))}`);
    }
    const b: RateStep[] = [];
    for (const rate of opts.broadcastRates) {
      b.push(await broadcast(ctx, rate));
      log(`${target}: broadcast ${rate}/s -> ${JSON.stringify(b.at(-1))}`);
    }
    const ch = await churn(ctx);
    log(`${target}: churn -> ${JSON.stringify(ch)}`);
    const rssEnd = gateways.map((g) => rssKiB(g.pid));
    return { target, connect: c, targeted: t, broadcast: b, churn: ch, gatewayRssEndKiB: rssEnd };
  } finally {
    await Promise.all(workers.map((w) => w.ask({ cmd: 'close' }, 'closed', 30_000).catch(() => undefined)));
    publisher.disconnect();
    await Promise.all(gateways.map((g) => g.stop()));
  }
}

function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

const fmt = (x: number | string): string => (typeof x === 'number' ? (Number.isFinite(x) ? x.toLocaleString('en-US') : '–') : x);
const ratio = (h: number, b: number | undefined): string =>
  b === undefined || !Number.isFinite(b) || b === 0 || !Number.isFinite(h) ? '' : ` (${(h / b).toFixed(2)}×)`;

/** A markdown table: header, separator, rows. */
function table(headers: string[], rows: string[][]): string[] {
  return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

function report(results: TargetResult[], opts: Options, m: ReturnType<typeof machine>): string {
  const [h, b] = results as [TargetResult, TargetResult | undefined];
  const lines: string[] = [];
  lines.push(`## Herald bench: profile ${opts.profile}, ${opts.connections.toLocaleString('en-US')} connections`);
  lines.push('');
  lines.push(`Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, commit ${m.commit}, ${m.date}.`);
  lines.push(`Gateways: ${opts.gateways} process(es); client workers: ${opts.workers}; pinning: ${opts.pin && hasTaskset && m.cores >= 2 ? 'gateways CPU 0, load CPU 1' : 'off'}; step ${opts.stepSeconds} s; Herald history ${opts.history ? 'on' : 'off'}.`);
  lines.push('Ratios in parentheses are Herald ÷ baseline (a minimal uWS server, same harness and frames).');
  lines.push('');
  lines.push('### connect');
  lines.push(...table(
    ['target', 'ok', 'failed', 'upgrades/s', 'connect p50 ms', 'p99 ms', 'KiB/conn per gateway', 'gateway CPU µs/conn', 'load CPU µs/conn'],
    results.map((r) => {
      const c = r.connect;
      const bc = r === h ? b?.connect : undefined;
      return [
        r.target, fmt(c.ok), fmt(c.failed), fmt(c.upgradesPerSec) + ratio(c.upgradesPerSec, bc?.upgradesPerSec), fmt(c.connectP50Ms),
        fmt(c.connectP99Ms) + ratio(c.connectP99Ms, bc?.connectP99Ms), c.kibPerConnection.map(fmt).join(', '),
        fmt(c.gatewayCpuMicrosPerConnection) + ratio(c.gatewayCpuMicrosPerConnection, bc?.gatewayCpuMicrosPerConnection), fmt(c.loadCpuMicrosPerConnection),
      ];
    }),
  ));
  for (const kind of ['targeted', 'broadcast'] as const) {
    lines.push('');
    lines.push(`### ${kind}${kind === 'targeted' ? ' (notifications:user:<i>, one recipient each)' : ' (notifications:system, every client)'}`);
    lines.push(...table(
      ['target', 'rate/s', 'sent/s', 'delivered/s', 'lost', 'dup', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'gateway CPU µs/delivery', 'load CPU µs/delivery', 'redis CPU µs/delivery'],
      results.flatMap((r) =>
        r[kind].map((s, i) => {
          const bs = r === h ? b?.[kind][i] : undefined;
          return [
            r.target, fmt(s.rate), fmt(s.sentPerSec), fmt(s.deliveredPerSec) + ratio(s.deliveredPerSec, bs?.deliveredPerSec), fmt(s.lost),
            fmt(s.duplicated), fmt(s.p50Ms), fmt(s.p95Ms), fmt(s.p99Ms) + ratio(s.p99Ms, bs?.p99Ms), fmt(s.maxMs),
            fmt(s.gatewayCpuMicrosPerDelivery) + ratio(s.gatewayCpuMicrosPerDelivery, bs?.gatewayCpuMicrosPerDelivery), fmt(s.loadCpuMicrosPerDelivery),
            fmt(s.redisCpuMicrosPerDelivery),
          ];
        }),
      ),
    ));
  }
  lines.push('');
  lines.push('### churn');
  lines.push(...table(
    ['target', 'dropped', 'reconnected', 'failed', 'reconnect s', 'back and flowing s', 'lost'],
    results.map(({ target, churn: c }) => [
      target, fmt(c.dropped), fmt(c.reconnected), fmt(c.failed), fmt(c.reconnectSeconds), fmt(c.backAndFlowingSeconds), fmt(c.lost),
    ]),
  ));
  lines.push('');
  const best = h.targeted.filter((s) => s.lost === 0 && s.duplicated === 0 && s.p99Ms < 50).sort((x, y) => y.deliveredPerSec - x.deliveredPerSec)[0];
  lines.push(`Highest targeted rate with no loss and p99 < 50 ms (Herald): ${best === undefined ? 'none' : `${fmt(best.deliveredPerSec)} delivered/s (step ${fmt(best.rate)})`}.`);
  // redis-server shares the load side's core.
  const bottleneck = h.targeted.map((s) => (s.loadCpuMicrosPerDelivery + s.redisCpuMicrosPerDelivery > s.gatewayCpuMicrosPerDelivery ? 'load' : 'gateway'));
  lines.push(`Per step, the side spending more CPU per delivery (the likelier bottleneck on 2 cores; redis-server counts with the load): ${bottleneck.join(', ')}.`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const m = machine();
  const secret = `bench-${Math.random().toString(36).slice(2)}-secret-long-enough-for-hs256`;
  process.env['BENCH_SECRET'] = secret;
  // Redis runs the publishing script, so it sits with the load side.
  const redis = await startRedis(opts.pin && cpus().length >= 2 ? '1' : undefined);
  const results: TargetResult[] = [];
  for (const target of opts.baseline ? (['herald', 'baseline'] as const) : (['herald'] as const)) {
    results.push(await runTarget(target, opts, redis, secret));
  }
  const md = report(results, opts, m);
  console.log(md);
  const out = opts.out ?? join(ROOT, 'bench/results', `${m.date.replace(/[:.]/g, '-')}-${opts.profile}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ machine: m, options: { ...opts, targetedRates: opts.targetedRates.map(String) }, results }, null, 2)}\n`);
  log(`results written to ${out}`);
  killAll();
}

main().catch((err: unknown) => {
  console.error(`bench: ${(err as Error).message}`);
  killAll();
  process.exit(1);
});

// The bench runner: starts a private redis-server, the gateway processes and the
// client workers, runs every scenario against Herald and then against the uWS
// baseline, and prints a markdown report (plus its record as JSON, record.ts).
// A notification that reaches the wrong user fails the run (exit 1).
// `--report` instead writes RESULTS.md from the committed records (document.ts).
// Every loop is bounded in count and time; every process it starts, it stops.
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis as IORedis } from 'ioredis';
import type { Context, Options } from './context.js';
import { summary, writeDocument } from './document.js';
import { commandLine, FORMAT, machine, type RunRecord, type TargetResult } from './record.js';
import { runReport } from './report.js';
import { broadcast } from './scenarios/broadcast.js';
import { churn } from './scenarios/churn.js';
import { connect } from './scenarios/connect.js';
import { disconnect } from './scenarios/disconnect.js';
import { idle } from './scenarios/idle.js';
import { type RateStep, targeted } from './scenarios/targeted.js';
import { hasTaskset, killAll, ROOT, startGateway, startRedis, startWorker } from './services.js';
import { rssKiB } from './stats.js';
import type { Target } from './worker.js';

const PROFILES: Record<string, Omit<Options, 'profile' | 'pin' | 'out' | 'cpuProfDir' | 'history' | 'presence'>> = {
  // A few seconds: the test suite runs this so the harness cannot rot.
  smoke: {
    connections: 200,
    gateways: 1,
    workers: 2,
    concurrency: 50,
    targetedRates: [500],
    broadcastRates: [5],
    stepSeconds: 1,
    churnFraction: 0.1,
    baseline: true,
  },
  // About two minutes: `make bench`.
  quick: {
    connections: 5000,
    gateways: 1,
    workers: 2,
    concurrency: 200,
    targetedRates: [2000, 5000, 10000, 20000, Infinity],
    broadcastRates: [1, 2, 5],
    stepSeconds: 4,
    churnFraction: 0.1,
    baseline: true,
  },
  // How the cost per delivery moves with the number of gateways (--gateways 1, 2, 4):
  // targeted traffic only, Herald only, small enough for one process per side.
  scale: {
    connections: 8000,
    gateways: 1,
    workers: 2,
    concurrency: 200,
    targetedRates: [2000, 5000, 10000, 20000, Infinity],
    broadcastRates: [],
    stepSeconds: 6,
    churnFraction: 0,
    baseline: false,
  },
  // 50,000 connections: four gateway processes here (open-files limit 20,000 each).
  full: {
    // Concurrency stays modest: the load core, not the gateways, sets the upgrade rate,
    // and more in flight only queues handshakes until they time out.
    connections: 50000,
    gateways: 4,
    workers: 4,
    concurrency: 100,
    targetedRates: [2000, 5000, 10000, 20000, 50000, Infinity],
    broadcastRates: [1, 2],
    stepSeconds: 8,
    churnFraction: 0.1,
    baseline: true,
  },
};

const USAGE = `usage: npm run bench -- [--profile smoke|quick|scale|full] [--connections N] [--gateways N] [--workers N]
       [--concurrency N] [--rates 2000,5000,max] [--broadcast-rates 1,2,5|none] [--step-seconds S]
       [--churn 0.1|0] [--baseline | --no-baseline] [--no-pin] [--no-history] [--no-presence] [--out FILE.json]
       [--cpu-prof DIR]
   or: node dist-bench/run.js --report [--data DIR] [--out FILE.md]   (RESULTS.md from the run records)`;

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      profile: { type: 'string', default: 'quick' },
      connections: { type: 'string' },
      gateways: { type: 'string' },
      workers: { type: 'string' },
      concurrency: { type: 'string' },
      rates: { type: 'string' },
      'broadcast-rates': { type: 'string' },
      'step-seconds': { type: 'string' },
      churn: { type: 'string' },
      baseline: { type: 'boolean', default: false },
      'no-baseline': { type: 'boolean', default: false },
      'no-pin': { type: 'boolean', default: false },
      'no-history': { type: 'boolean', default: false },
      'no-presence': { type: 'boolean', default: false },
      out: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (values.baseline && values['no-baseline']) throw new Error('--baseline and --no-baseline: choose one');
  const base = PROFILES[values.profile];
  if (base === undefined) throw new Error(`--profile: expected one of ${Object.keys(PROFILES).join(', ')}`);
  const int = (v: string | undefined, name: string, def: number, max: number): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name}: expected an integer 1-${max}, got ${v}`);
    return n;
  };
  const rates = (v: string | undefined, def: number[], name: string): number[] =>
    v === undefined
      ? def
      : v.trim() === 'none'
        ? []
        : v.split(',').map((r) => (r.trim() === 'max' ? Infinity : int(r.trim(), name, 0, 1_000_000)));
  const opts: Options = {
    profile: values.profile,
    connections: int(values.connections, 'connections', base.connections, 200_000),
    gateways: int(values.gateways, 'gateways', base.gateways, 16),
    workers: int(values.workers, 'workers', base.workers, 16),
    concurrency: int(values.concurrency, 'concurrency', base.concurrency, 5000),
    targetedRates: rates(values.rates, base.targetedRates, 'rates'),
    broadcastRates: rates(values['broadcast-rates'], base.broadcastRates, 'broadcast-rates'),
    stepSeconds: int(values['step-seconds'], 'step-seconds', base.stepSeconds, 600),
    churnFraction: values.churn === undefined ? base.churnFraction : Number(values.churn),
    pin: !values['no-pin'],
    baseline: values.baseline || (base.baseline && !values['no-baseline']),
    out: values.out,
    cpuProfDir: values['cpu-prof'],
    history: !values['no-history'],
    presence: !values['no-presence'],
  };
  // One process holds at most ~19,500 sockets here (open-files hard limit 20,000).
  const perProcess = 19_000;
  if (opts.connections / opts.workers > perProcess)
    throw new Error(`--workers: ${opts.workers} workers would each hold over ${perProcess} sockets`);
  if (opts.connections / opts.gateways > perProcess)
    throw new Error(`--gateways: ${opts.gateways} gateways would each hold over ${perProcess} sockets`);
  if (!(opts.churnFraction >= 0 && opts.churnFraction <= 1)) throw new Error('--churn: expected a fraction in [0, 1] (0 = no churn)');
  return opts;
}

async function runTarget(target: Target, opts: Options, redis: { url: string; pid: number }, secret: string): Promise<TargetResult> {
  const redisUrl = redis.url;
  // Gateways on CPU 0, the load side (workers, this publisher) on CPU 1, when there are two.
  const pin = opts.pin && cpus().length >= 2;
  const gwCpu = pin ? '0' : undefined;
  const loadCpu = pin ? '1' : undefined;
  if (pin && hasTaskset) execSync(`taskset -p -c 1 ${process.pid}`, { stdio: 'ignore' });
  log(`${target}: starting ${opts.gateways} gateway process(es)`);
  const gateways = await Promise.all(
    Array.from({ length: opts.gateways }, () =>
      startGateway(target, {
        redisUrl,
        secret,
        cpu: gwCpu,
        cpuProfDir: opts.cpuProfDir,
        history: opts.history,
        presence: opts.presence,
      }),
    ),
  );
  const workers = Array.from({ length: opts.workers }, () => startWorker(loadCpu));
  const publisher = new IORedis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
  let step = 0;
  const ctx: Context = {
    target,
    opts,
    users: opts.connections,
    gateways,
    workers,
    publisher,
    redisPid: redis.pid,
    connected: 0,
    nextStep: () => ++step,
  };
  try {
    log(`${target}: connect ${opts.connections} clients`);
    const c = await connect(ctx, (i) => `127.0.0.${2 + i}`);
    ctx.connected = c.ok;
    log(`${target}: ${c.ok} connected, ${c.failed} failed${c.errors.length > 0 ? ` (${c.errors.join('; ')})` : ''}`);
    const quiet = await idle(ctx);
    log(`${target}: idle -> ${JSON.stringify(quiet)}`);
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
    const result: TargetResult = { target, connect: c, idle: quiet, targeted: t, broadcast: b, gatewayRssEndKiB: [] };
    if (opts.churnFraction > 0) {
      result.churn = await churn(ctx);
      log(`${target}: churn -> ${JSON.stringify(result.churn)}`);
    }
    result.gatewayRssEndKiB = gateways.map((g) => rssKiB(g.pid));
    result.disconnect = await disconnect(ctx);
    log(`${target}: disconnect -> ${JSON.stringify(result.disconnect)}`);
    return result;
  } finally {
    await Promise.all(workers.map((w) => w.ask({ cmd: 'close' }, 'closed', 30_000).catch(() => undefined)));
    publisher.disconnect();
    await Promise.all(gateways.map((g) => g.stop()));
  }
}

function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** Why the run fails: a notification that reached another user than its own. */
function failures(results: TargetResult[]): string[] {
  return results.flatMap((r) => {
    const n = [...r.targeted, ...r.broadcast].reduce((sum, s: RateStep) => sum + s.misrouted, 0) + (r.churn?.misrouted ?? 0);
    return n > 0 ? [`${r.target}: ${n} notification(s) misrouted (delivered to another user than the one named in the payload)`] : [];
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--report')) return report(argv.filter((a) => a !== '--report'));
  const opts = parseOptions(argv);
  const m = machine();
  const secret = `bench-${Math.random().toString(36).slice(2)}-secret-long-enough-for-hs256`;
  process.env['BENCH_SECRET'] = secret;
  // Redis runs the publishing script, so it sits with the load side.
  const redis = await startRedis(opts.pin && cpus().length >= 2 ? '1' : undefined);
  const results: TargetResult[] = [];
  for (const target of opts.baseline ? (['herald', 'baseline'] as const) : (['herald'] as const)) {
    results.push(await runTarget(target, opts, redis, secret));
  }
  // JSON has no Infinity: a `max` step is recorded as 'max'.
  const asRates = (r: number[]): (number | 'max')[] => r.map((x) => (Number.isFinite(x) ? x : 'max'));
  const record: RunRecord = {
    format: FORMAT,
    command: commandLine(),
    machine: m,
    options: {
      profile: opts.profile,
      connections: opts.connections,
      gateways: opts.gateways,
      workers: opts.workers,
      concurrency: opts.concurrency,
      targetedRates: asRates(opts.targetedRates),
      broadcastRates: asRates(opts.broadcastRates),
      stepSeconds: opts.stepSeconds,
      churnFraction: opts.churnFraction,
      pin: opts.pin,
      pinned: opts.pin && hasTaskset && m.cores >= 2,
      baseline: opts.baseline,
      history: opts.history,
      presence: opts.presence,
    },
    results,
    failures: failures(results),
  };
  console.log(runReport(record, `Herald bench: profile ${opts.profile}, ${opts.connections.toLocaleString('en-US')} connections`));
  const out = opts.out ?? join(ROOT, 'bench/results', `${m.date.replace(/[:.]/g, '-')}-${opts.profile}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(record, null, 2)}\n`);
  log(`results written to ${out}`);
  killAll();
  if (record.failures.length > 0) {
    log(`FAILED: ${record.failures.join('; ')}`);
    process.exitCode = 1;
  }
}

/** `--report [--data DIR] [--out FILE]`: RESULTS.md from the run records. */
function report(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: { data: { type: 'string', default: 'bench/data' }, out: { type: 'string' } },
    strict: true,
  });
  const out = resolve(ROOT, values.out ?? 'bench/RESULTS.md');
  const w = writeDocument(values.data, out);
  log(`${out} written from ${summary(w)}`);
}

main().catch((err: unknown) => {
  console.error(`bench: ${(err as Error).message}`);
  killAll();
  process.exit(1);
});

// One run's record: the machine and commit it ran on, its exact command, its options
// and every figure the reports show (percentiles, not histograms), as small JSON.
// run.ts writes it; report.ts and document.ts read it back, so RESULTS.md is built
// from the same records the runs wrote.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { relative } from 'node:path';
import type { Options } from './context.js';
import type { ChurnResult } from './scenarios/churn.js';
import type { ConnectResult } from './scenarios/connect.js';
import type { IdleResult } from './scenarios/idle.js';
import type { RateStep } from './scenarios/targeted.js';
import { ROOT } from './services.js';
import type { Upkeep } from './upkeep.js';
import type { Target } from './worker.js';

/** Bumped when the record's shape changes; the report refuses other formats. */
export const FORMAT = 2;

export interface Machine {
  cores: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  /** Short hash, with `+dirty` when the code the run used had uncommitted changes. */
  commit: string;
  dirty: boolean;
  date: string;
}

export interface TargetResult {
  target: Target;
  connect: ConnectResult;
  idle: IdleResult;
  targeted: RateStep[];
  broadcast: RateStep[];
  /** Absent when the run had no churn scenario (--churn 0). */
  churn?: ChurnResult;
  gatewayRssEndKiB: number[];
  /** Every client dropped at the end (absent in records made before it was measured). */
  disconnect?: Upkeep;
}

export type RecordedOptions = Omit<Options, 'targetedRates' | 'broadcastRates' | 'out' | 'cpuProfDir' | 'presence'> & {
  targetedRates: (number | 'max')[];
  broadcastRates: (number | 'max')[];
  /** HERALD_PRESENCE; absent in records made before `--no-presence` existed (presence was on). */
  presence?: boolean;
  /** Pinning actually applied (asked, taskset present, two cores or more). */
  pinned: boolean;
};

export interface RunRecord {
  format: typeof FORMAT;
  /** The exact command, as typed from the repository's root. */
  command: string;
  machine: Machine;
  options: RecordedOptions;
  results: TargetResult[];
  /** Why the run failed (it then exits 1): misrouted notifications. Empty when it passed. */
  failures: string[];
}

/**
 * What changes a run's figures, apart from the machine: the gateway (src/), the harness
 * (bench/ code, not its outputs and notes) and the dependencies.
 */
const CODE_PATHS = ['src', 'bench', 'package.json', 'package-lock.json', ':!bench/data', ':!bench/results', ':!bench/*.md'];

export function machine(): Machine {
  let commit = 'unknown';
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    dirty = uncommitted().length > 0;
  } catch {
    /* not a git checkout */
  }
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    commit: dirty ? `${commit}+dirty` : commit,
    dirty,
    date: new Date().toISOString(),
  };
}

/** Uncommitted changes to the code a run uses (git status lines); throws outside git. */
export function uncommitted(): string[] {
  return execFileSync('git', ['status', '--porcelain', '--', ...CODE_PATHS], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
    .toString()
    .split('\n')
    .filter((l) => l.trim() !== '');
}

const quote = (a: string): string => (/^[\w./,:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

/** This process's command line, paths relative to the repository's root. */
export function commandLine(argv: string[] = process.argv): string {
  const [, script = '', ...args] = argv;
  return ['node', relative(ROOT, script) || script, ...args].map(quote).join(' ');
}

export function readRecord(file: string): RunRecord {
  const r = JSON.parse(readFileSync(file, 'utf8')) as RunRecord;
  if (r.format !== FORMAT) throw new Error(`${file}: record format ${String(r.format)}, expected ${FORMAT}: run it again`);
  return r;
}

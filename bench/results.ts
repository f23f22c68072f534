// `npm run bench:results`: makes every run RESULTS.md shows, in order (runs.ts), each
// writing its record to bench/data/, then writes RESULTS.md from them (`run.js
// --report`). Refuses uncommitted code, so that every figure comes from one commit.
// Each run is a child process bounded in time; a failed run is reported, and the
// others still run.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { uncommitted } from './record.js';
import { commandOf, dataFile, RUNS } from './runs.js';
import { ROOT } from './services.js';

/** One run's bound: the full profile takes about ten minutes on two cores. */
const RUN_TIMEOUT_MS = 45 * 60_000;

const USAGE = `usage: node dist-bench/results.js [--only id,id] [--allow-dirty] [--list]
  runs: ${RUNS.map((r) => r.id).join(', ')}`;

function log(line: string): void {
  process.stderr.write(`[results ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** Runs `node args` from the repository's root; resolves with its exit code. */
function runNode(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: 'inherit' });
    const timer = setTimeout(() => {
      log(`no end within ${RUN_TIMEOUT_MS / 60_000} min: stopping pid ${child.pid}`);
      child.kill('SIGTERM'); // run.js stops its own processes on SIGTERM
    }, RUN_TIMEOUT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal === null ? 1 : 128));
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      'allow-dirty': { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const only = values.only?.split(',').map((s) => s.trim());
  const unknown = only?.filter((id) => !RUNS.some((r) => r.id === id)) ?? [];
  if (unknown.length > 0) throw new Error(`--only: no run ${unknown.join(', ')}\n${USAGE}`);
  const runs = RUNS.filter((r) => only === undefined || only.includes(r.id));
  if (values.list) {
    // The commands, as run from the repository's root, without running them.
    for (const run of runs) console.log(commandOf(run).join(' '));
    console.log('node dist-bench/run.js --report');
    return;
  }
  const dirty = uncommitted();
  if (dirty.length > 0 && !values['allow-dirty']) {
    throw new Error(
      `uncommitted changes to the code the runs use; commit them first (or --allow-dirty, and the report says so):\n${dirty.join('\n')}`,
    );
  }
  const failed: string[] = [];
  const started = Date.now();
  for (const [i, run] of runs.entries()) {
    const [, ...args] = commandOf(run);
    // A run that fails before writing must not leave an older record standing in for it.
    rmSync(resolve(ROOT, dataFile(run.id)), { force: true });
    log(`${i + 1}/${runs.length} ${run.id}: ${commandOf(run).join(' ')}`);
    const code = await runNode(args);
    if (code !== 0) failed.push(`${run.id} (exit ${code})`);
    log(`${run.id} done (exit ${code}), ${Math.round((Date.now() - started) / 60_000)} min so far`);
  }
  const report = await runNode(['dist-bench/run.js', '--report']);
  if (report !== 0) failed.push(`--report (exit ${report})`);
  if (failed.length > 0) {
    log(`failed: ${failed.join(', ')}; RESULTS.md shows what was recorded`);
    process.exit(1);
  }
  log('bench/RESULTS.md written; commit it with bench/data/');
}

main().catch((err: unknown) => {
  console.error(`results: ${(err as Error).message}`);
  process.exit(1);
});

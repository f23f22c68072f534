// The bench harness's smoke profile, run as a test so the harness cannot rot: a few
// hundred connections, every scenario, against Herald and the baseline, zero loss.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { spawnNode, ROOT } from '../support/gateway.js';

const RUN = fileURLToPath(new URL('../../dist-bench/run.js', import.meta.url));

interface Step { lost: number; duplicated: number; received: number }
interface TargetResult {
  target: string;
  connect: { ok: number; failed: number; upgradesPerSec: number; kibPerConnection: number[] };
  targeted: Step[];
  broadcast: Step[];
  churn: { dropped: number; reconnected: number; failed: number; lost: number };
}

t.test('the smoke bench runs every scenario on herald and the baseline with zero loss', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'smoke.json');
  const run = spawnNode(RUN, ['--profile', 'smoke', '--no-pin', '--out', out], { PATH: process.env['PATH'] ?? '' }, ROOT);
  const timer = setTimeout(() => run.proc.kill('SIGKILL'), 90_000);
  const { code } = await run.exited;
  clearTimeout(timer);
  t.equal(code, 0, `bench exits 0; stderr: ${run.stderr().slice(-1500)}`);
  t.match(run.stdout(), /### connect[\s\S]*### targeted[\s\S]*### broadcast[\s\S]*### churn/, 'prints the markdown report');

  const { machine, results } = JSON.parse(readFileSync(out, 'utf8')) as { machine: { cores: number; node: string; commit: string }; results: TargetResult[] };
  t.ok(machine.cores > 0 && machine.node.startsWith('v') && machine.commit !== '', 'records the machine');
  t.same(results.map((r) => r.target), ['herald', 'baseline']);
  for (const r of results) {
    t.equal(r.connect.failed, 0, `${r.target}: every client connects`);
    t.equal(r.connect.ok, 200, `${r.target}: 200 clients`);
    t.ok(r.connect.upgradesPerSec > 0, `${r.target}: upgrades/s measured`);
    for (const [kind, steps] of [['targeted', r.targeted], ['broadcast', r.broadcast]] as const) {
      t.ok(steps.length > 0, `${r.target} ${kind}: has steps`);
      for (const s of steps) {
        t.ok(s.received > 0, `${r.target} ${kind}: notifications arrive`);
        t.equal(s.lost, 0, `${r.target} ${kind}: nothing lost`);
        t.equal(s.duplicated, 0, `${r.target} ${kind}: nothing duplicated`);
      }
    }
    t.equal(r.churn.failed, 0, `${r.target} churn: every dropped client reconnects`);
    t.equal(r.churn.reconnected, r.churn.dropped, `${r.target} churn: reconnected = dropped`);
    t.equal(r.churn.lost, 0, `${r.target} churn: notifications flow again`);
  }
});

// The bench harness's smoke profile, run as a test so the harness cannot rot: a few
// hundred connections, every scenario, against Herald and the baseline, zero loss and
// nothing misrouted; Herald's routing counters agree with redis-server's; and the
// report writes RESULTS.md from the record the run kept.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ROOT, spawnNode } from '../support/gateway.js';

const RUN = fileURLToPath(new URL('../../dist-bench/run.js', import.meta.url));

interface Routing {
  gateways: { gateway: number; routed: number; deliveries: number; routedPerDelivery: number }[];
  checks: { what: string; herald: number; redis: number; equal: boolean }[];
  ratioOk: boolean;
}
interface Step {
  sent: number;
  lost: number;
  misrouted: number;
  duplicated: number;
  received: number;
  deliveredPerSec: number;
  deliverySeconds: number;
  routing?: Routing;
}
interface TargetResult {
  target: string;
  connect: { ok: number; failed: number; upgradesPerSec: number; kibPerConnection: number[] };
  targeted: Step[];
  broadcast: Step[];
  churn: { dropped: number; reconnected: number; failed: number; lost: number; misrouted: number };
}

t.test('the smoke bench runs every scenario on herald and the baseline with zero loss and nothing misrouted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'smoke.json');
  const run = spawnNode(RUN, ['--profile', 'smoke', '--no-pin', '--out', out], { PATH: process.env['PATH'] ?? '' }, ROOT);
  const timer = setTimeout(() => run.proc.kill('SIGKILL'), 90_000);
  const { code } = await run.exited;
  clearTimeout(timer);
  t.equal(code, 0, `bench exits 0; stderr: ${run.stderr().slice(-1500)}`);
  t.match(
    run.stdout(),
    /### connect[\s\S]*### targeted[\s\S]*### broadcast[\s\S]*### churn[\s\S]*### routing/,
    'prints the markdown report',
  );

  const record = JSON.parse(readFileSync(out, 'utf8')) as {
    command: string;
    machine: { cores: number; node: string; commit: string };
    results: TargetResult[];
    failures: string[];
  };
  const { machine, results } = record;
  t.ok(machine.cores > 0 && machine.node.startsWith('v') && machine.commit !== '', 'records the machine');
  t.equal(record.command, `node dist-bench/run.js --profile smoke --no-pin --out ${out}`, 'records its exact command');
  t.same(record.failures, [], 'no failure recorded');
  t.same(
    results.map((r) => r.target),
    ['herald', 'baseline'],
  );
  for (const r of results) {
    t.equal(r.connect.failed, 0, `${r.target}: every client connects`);
    t.equal(r.connect.ok, 200, `${r.target}: 200 clients`);
    t.ok(r.connect.upgradesPerSec > 0, `${r.target}: upgrades/s measured`);
    for (const [kind, steps] of [
      ['targeted', r.targeted],
      ['broadcast', r.broadcast],
    ] as const) {
      t.ok(steps.length > 0, `${r.target} ${kind}: has steps`);
      for (const s of steps) {
        t.ok(s.received > 0, `${r.target} ${kind}: notifications arrive`);
        t.ok(s.deliverySeconds > 0 && s.deliveredPerSec > 0, `${r.target} ${kind}: delivered/s over first send to last receipt`);
        t.equal(s.lost, 0, `${r.target} ${kind}: nothing lost`);
        t.equal(s.misrouted, 0, `${r.target} ${kind}: nothing misrouted`);
        t.equal(s.duplicated, 0, `${r.target} ${kind}: nothing duplicated`);
      }
    }
    t.equal(r.churn.failed, 0, `${r.target} churn: every dropped client reconnects`);
    t.equal(r.churn.reconnected, r.churn.dropped, `${r.target} churn: reconnected = dropped`);
    t.equal(r.churn.lost, 0, `${r.target} churn: notifications flow again`);
    t.equal(r.churn.misrouted, 0, `${r.target} churn: nothing misrouted`);
  }
  const [herald] = results as [TargetResult];
  for (const s of [...herald.targeted, ...herald.broadcast]) {
    const routing = s.routing;
    if (routing === undefined) {
      t.fail("herald steps read the gateways' counters");
      continue;
    }
    t.ok(routing.ratioOk, 'herald: each gateway receives about what it delivers');
    // The same bound and equalities, checked here from the raw counts rather than the harness's verdicts.
    const system = herald.broadcast.includes(s) ? s.sent : 0; // `system` reaches every gateway
    for (const g of routing.gateways)
      t.ok(g.routed <= 1.1 * g.deliveries + system, `herald: gateway ${g.gateway} routed ${g.routed} for ${g.deliveries} deliveries`);
    t.ok(routing.checks.length > 0, "herald: counts are checked against redis-server's");
    for (const c of routing.checks) {
      t.ok(c.equal, `herald: ${c.what} (${c.herald} vs ${c.redis})`);
      t.equal(c.herald, c.redis, `herald: ${c.what}`);
    }
  }

  // The report, from this record standing in for the quick run: the other runs have none.
  const data = join(dir, 'data');
  mkdirSync(data);
  copyFileSync(out, join(data, 'quick.json'));
  const resultsMd = join(dir, 'RESULTS.md');
  const report = spawnNode(RUN, ['--report', '--data', data, '--out', resultsMd], { PATH: process.env['PATH'] ?? '' }, ROOT);
  const reportTimer = setTimeout(() => report.proc.kill('SIGKILL'), 20_000);
  const reported = await report.exited;
  clearTimeout(reportTimer);
  t.equal(reported.code, 0, `--report exits 0; stderr: ${report.stderr().slice(-1500)}`);
  const md = readFileSync(resultsMd, 'utf8');
  t.match(
    md,
    /## Runs[\s\S]*## Against the targets[\s\S]*## Scaling with the number of gateways[\s\S]*## Reading these figures/,
    'RESULTS.md has every section and the notes',
  );
  t.ok(md.includes(`\`${record.command}\``), "RESULTS.md shows the run's exact command");
  t.match(md, /\| no notification reaches another user[^\n]*\| yes \|/, 'the misrouting verdict is computed');
  t.match(md, /No record for:\*\* scale-g1-history-on/, 'runs without a record are named');
});

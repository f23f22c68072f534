// Each target, judged from the recorded figures: what was measured, whether it is met,
// and which side limits it. Nothing here is typed in by hand: a missing run reads
// "not measured".
import type { RunRecord, TargetResult } from './record.js';
import { bestTargeted, fmt, limitedBy, times } from './report.js';
import { ROUTED_PER_DELIVERY_MAX } from './routing.js';
import { RUNS } from './runs.js';
import { type Figure, rowMeets, scalingRows, WITHIN_G1, WITHIN_G2 } from './scaling.js';
import type { RateStep } from './scenarios/targeted.js';

export interface Verdict {
  target: string;
  measured: string;
  met: 'yes' | 'no' | 'not measured';
  limits: string;
}

type Records = ReadonlyMap<string, RunRecord>;

const herald = (r: RunRecord): TargetResult | undefined => r.results.find((t) => t.target === 'herald');
const stepName = (s: RateStep): string => (typeof s.rate === 'number' ? `${fmt(s.rate)}/s` : 'max');
const met = (ok: boolean): Verdict['met'] => (ok ? 'yes' : 'no');
const none = (target: string): Verdict => ({ target, measured: 'no record', met: 'not measured', limits: '–' });

function misrouted(records: Records): Verdict {
  const target = 'no notification reaches another user (every run, every step, both targets)';
  if (records.size === 0) return none(target);
  let total = 0;
  const where: string[] = [];
  for (const [id, r] of records) {
    for (const t of r.results) {
      const n = [...t.targeted, ...t.broadcast].reduce((s, x) => s + x.misrouted, 0) + (t.churn?.misrouted ?? 0);
      total += n;
      if (n > 0) where.push(`${id} ${t.target}: ${fmt(n)}`);
    }
  }
  return {
    target,
    measured: total === 0 ? `0 misrouted in ${records.size} runs` : `${fmt(total)} misrouted (${where.join('; ')})`,
    met: met(total === 0),
    limits: '–',
  };
}

/** Every Herald step of every run that read the gateways' counters. */
function routedSteps(records: Records): { id: string; s: RateStep & { routing: NonNullable<RateStep['routing']> } }[] {
  const out: ReturnType<typeof routedSteps> = [];
  for (const [id, r] of records) {
    const h = herald(r);
    for (const s of [...(h?.targeted ?? []), ...(h?.broadcast ?? [])])
      if (s.routing !== undefined) out.push({ id, s: s as (typeof out)[number]['s'] });
  }
  return out;
}

function routingRatio(records: Records): Verdict {
  const target = `interest routing: each gateway's routed messages ≤ ${ROUTED_PER_DELIVERY_MAX} × its deliveries (+ \`system\` messages), every step`;
  const steps = routedSteps(records);
  if (steps.length === 0) return none(target);
  let worst = { ratio: -Infinity, where: '' };
  let checked = 0;
  for (const { id, s } of steps) {
    for (const g of s.routing.gateways) {
      if (!Number.isFinite(g.routedPerDelivery)) continue;
      checked++;
      if (g.routedPerDelivery > worst.ratio)
        worst = { ratio: g.routedPerDelivery, where: `${id}, step ${stepName(s)}, gateway ${g.gateway}` };
    }
  }
  const ok = steps.every(({ s }) => s.routing.ratioOk);
  const failing = steps.filter(({ s }) => !s.routing.ratioOk).map(({ id, s }) => `${id} ${stepName(s)}`);
  return {
    target,
    measured: `${checked} gateway-steps; highest ${worst.ratio.toFixed(3)} (${worst.where})${failing.length > 0 ? `; over the bound: ${failing.join(', ')}` : ''}`,
    met: met(ok),
    limits: '–',
  };
}

function counts(records: Records): Verdict {
  const target =
    "Herald's counts equal redis-server's (history off: PUBLISH replies = routed; on: announcements delivered = routed, PUBLISH replies = recorder messages)";
  const steps = routedSteps(records);
  if (steps.length === 0) return none(target);
  const checks = steps.flatMap(({ id, s }) => s.routing.checks.map((c) => ({ id, s, c })));
  const bad = checks.filter(({ c }) => !c.equal);
  return {
    target,
    measured:
      bad.length === 0
        ? `${checks.length} checks, all equal`
        : `${bad.length} of ${checks.length} differ: ${bad
            .slice(0, 5)
            .map(({ id, s, c }) => `${id} ${stepName(s)} ${c.what}: Herald ${fmt(c.herald)}, redis-server ${fmt(c.redis)}`)
            .join('; ')}`,
    met: met(bad.length === 0),
    limits: '–',
  };
}

function scaling(records: Records, figure: Figure, history: boolean, what: string): Verdict {
  const target = `${what}, history ${history ? 'on' : 'off'}: G=4 within ${WITHIN_G2}× of G=2 and at most ${WITHIN_G1}× G=1 (each fixed-rate step)`;
  const rows = scalingRows(records, history, figure).filter((r) => Number.isFinite(r.g4OverG2) && Number.isFinite(r.g4OverG1));
  if (rows.length === 0) return none(target);
  return {
    target,
    measured: `G=4 ÷ G=2: ${rows.map((r) => `${times(r.g4OverG2)} at ${fmt(r.rate)}/s`).join(', ')}; G=4 ÷ G=1: ${rows.map((r) => times(r.g4OverG1)).join(', ')}`,
    met: met(rows.every(rowMeets)),
    limits: `G=4 steps limited by: ${rows.map((r) => r.limitedBy).join(', ')}`,
  };
}

/** One gateway with history on against the baseline server, gateway CPU per delivery (quick profile). */
function againstBaseline(records: Records): Verdict {
  const bound = 1.25;
  const target = `one gateway, history on: gateway CPU per targeted delivery within ${bound}× the baseline server's (quick profile, each fixed-rate step)`;
  const r = records.get('quick');
  const h = r === undefined ? undefined : herald(r);
  const b = r?.results.find((t) => t.target === 'baseline');
  if (h === undefined || b === undefined || !r?.options.history) return none(target);
  const pairs = h.targeted
    .filter((s) => typeof s.rate === 'number')
    .map((s) => ({ s, base: b.targeted.find((x) => x.rate === s.rate) }))
    .filter((p): p is { s: RateStep; base: RateStep } => p.base !== undefined)
    .map(({ s, base }) => ({ s, ratio: s.gatewayCpuMicrosPerDelivery / base.gatewayCpuMicrosPerDelivery }));
  if (pairs.length === 0) return none(target);
  return {
    target,
    measured: pairs.map(({ s, ratio }) => `${times(ratio)} at ${stepName(s)} (${fmt(s.gatewayCpuMicrosPerDelivery)} µs)`).join(', '),
    met: met(pairs.every((p) => p.ratio <= bound)),
    limits: `Herald steps limited by: ${pairs.map(({ s }) => limitedBy(s)).join(', ')}`,
  };
}

function fullThroughput(records: Records): Verdict {
  const goal = 50_000;
  const target = `50,000 connections on 4 gateways, history on: ≥ ${fmt(goal)} targeted notifications/s with 0 lost, 0 misrouted and p99 < 50 ms`;
  const r = records.get('full');
  const h = r === undefined ? undefined : herald(r);
  if (h === undefined) return none(target);
  const best = bestTargeted(h.targeted);
  // A step paced at the goal delivers it, though delivered/s reads a little under the
  // rate: its window runs on to the last receipt.
  const reaches = (s: RateStep): boolean =>
    typeof s.rate === 'number' ? s.rate >= goal && s.sentPerSec >= 0.99 * s.rate : s.deliveredPerSec >= goal;
  const ok = h.targeted.some((s) => s.lost === 0 && s.misrouted === 0 && s.duplicated === 0 && s.p99Ms < 50 && reaches(s));
  return {
    target,
    measured:
      best === undefined
        ? 'no step met the latency bound with nothing lost'
        : `highest: ${fmt(best.deliveredPerSec)} delivered/s (step ${stepName(best)}, p99 ${fmt(best.p99Ms)} ms)`,
    met: met(ok),
    limits: `steps ${h.targeted.map(stepName).join(', ')} limited by: ${h.targeted.map(limitedBy).join(', ')}`,
  };
}

function fullConnections(records: Records): Verdict[] {
  const r = records.get('full');
  const c = r === undefined ? undefined : herald(r)?.connect;
  const held = '50,000 authenticated connections held, 0 failures (full profile)';
  const memory = '≤ 4 KB RSS per idle connection (full profile, each gateway)';
  const upgrades = '≥ 5,000 authenticated upgrades/s (full profile)';
  if (c === undefined) return [none(held), none(memory), none(upgrades)];
  const kib = Math.max(...c.kibPerConnection);
  const side = c.loadCpuMicrosPerConnection > c.gatewayCpuMicrosPerConnection ? 'load' : 'gateway';
  return [
    { target: held, measured: `${fmt(c.ok)} held, ${fmt(c.failed)} failed`, met: met(c.ok >= 50_000 && c.failed === 0), limits: '–' },
    { target: memory, measured: `${c.kibPerConnection.map(fmt).join(', ')} KiB`, met: met(kib <= 4), limits: '–' },
    {
      target: upgrades,
      measured: `${fmt(c.upgradesPerSec)}/s`,
      met: met(c.upgradesPerSec >= 5000),
      limits: `${side} (CPU per connection: gateways ${fmt(c.gatewayCpuMicrosPerConnection)} µs, load ${fmt(c.loadCpuMicrosPerConnection)} µs)`,
    },
  ];
}

export function verdicts(records: Records): Verdict[] {
  return [
    misrouted(records),
    routingRatio(records),
    counts(records),
    scaling(records, 'gatewayCpuMicrosPerDelivery', true, 'gateway CPU per targeted delivery (all gateways)'),
    scaling(records, 'gatewayCpuMicrosPerDelivery', false, 'gateway CPU per targeted delivery (all gateways)'),
    againstBaseline(records),
    scaling(records, 'redisCpuMicrosPerMessage', true, 'redis-server CPU per published message'),
    scaling(records, 'redisCpuMicrosPerMessage', false, 'redis-server CPU per published message'),
    fullThroughput(records),
    ...fullConnections(records),
  ];
}

/** The runs with no record (not made yet, or made with an older harness). */
export const missingRuns = (records: Records): string[] => RUNS.filter((r) => !records.has(r.id)).map((r) => r.id);

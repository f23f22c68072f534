// One run's markdown, from its record: printed when the run ends and embedded in
// RESULTS.md by document.ts, so both show the same figures the same way.
import type { RunRecord, TargetResult } from './record.js';
import type { StepRouting } from './routing.js';
import type { RateStep } from './scenarios/targeted.js';
import { scriptCalls, totalCommands, type Upkeep } from './upkeep.js';

/** A figure for a table; NaN (recorded as null: JSON has no NaN) reads "–". */
export const fmt = (x: number | string | null): string =>
  typeof x === 'string' ? x : x !== null && Number.isFinite(x) ? x.toLocaleString('en-US') : '–';
export const times = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');
/** A figure per connection: whole under 100 and up, else three significant digits (a
 *  script call per thousand connects reads 0.001, not 0). */
export const perConn = (x: number): string =>
  !Number.isFinite(x)
    ? '–'
    : Math.abs(x) >= 100
      ? fmt(Math.round(x))
      : x === 0
        ? '0'
        : x.toLocaleString('en-US', { maximumSignificantDigits: 3 });
const ratio = (h: number, b: number | undefined): string =>
  b === undefined || !Number.isFinite(b) || b === 0 || !Number.isFinite(h) ? '' : ` (${times(h / b)})`;

/** A markdown table: header, separator, rows. */
export function table(headers: string[], rows: string[][]): string[] {
  return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

/**
 * The side spending more CPU per delivery, the likelier bottleneck on two cores: the
 * gateways (all of them, on CPU 0 when pinned) or the load side (workers, the runner,
 * and redis-server, which runs the publishing script and shares their core).
 */
export function limitedBy(s: RateStep): 'gateway' | 'load' {
  return s.loadCpuMicrosPerDelivery + s.redisCpuMicrosPerDelivery > s.gatewayCpuMicrosPerDelivery ? 'load' : 'gateway';
}

/** The side spending more CPU per connection in a connect or disconnect window (as limitedBy). */
export function upkeepLimitedBy(u: Upkeep): 'gateway' | 'load' {
  return u.loadCpuMicros + u.redisCpuMicros > u.gatewayCpuMicros ? 'load' : 'gateway';
}

/** An upkeep window's figures per connection, by name. */
export function upkeepPerConn(u: Upkeep): { gateway: number; load: number; redis: number; commands: number; scripts: number } {
  const n = Math.max(1, u.connections);
  return {
    gateway: u.gatewayCpuMicros / n,
    load: u.loadCpuMicros / n,
    redis: u.redisCpuMicros / n,
    commands: totalCommands(u) / n,
    scripts: scriptCalls(u) / n,
  };
}

/** The step that meets the latency target with nothing lost or misrouted, at the highest delivered rate. */
export function bestTargeted(steps: RateStep[]): RateStep | undefined {
  return steps
    .filter((s) => s.lost === 0 && s.misrouted === 0 && s.duplicated === 0 && s.p99Ms < 50)
    .sort((x, y) => y.deliveredPerSec - x.deliveredPerSec)[0];
}

const rateLabel = (s: RateStep): string => fmt(s.rate);

export function describeRun(r: RunRecord): string[] {
  const m = r.machine;
  const o = r.options;
  return [
    `Command: \`${r.command}\``,
    '',
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, commit ${m.commit}, ${m.date}.`,
    `Gateways: ${o.gateways} process(es); client workers: ${o.workers}; pinning: ${o.pinned ? 'gateways CPU 0, load and redis-server CPU 1' : 'off'}; ` +
      `step ${o.stepSeconds} s; Herald history ${o.history ? 'on' : 'off'}${o.presence === undefined ? '' : `; presence ${o.presence ? 'on' : 'off'}`}.`,
  ];
}

/** The run's markdown, its headings at `level` (## for a section of RESULTS.md). */
export function runReport(r: RunRecord, title: string, level = 2): string {
  const h = '#'.repeat(level);
  const [herald, base] = r.results as [TargetResult, TargetResult | undefined];
  const lines: string[] = [`${h} ${title}`, '', ...describeRun(r)];
  if (base !== undefined) lines.push('Ratios in parentheses are Herald ÷ baseline (a minimal uWS server, same harness and frames).');
  if (r.failures.length > 0) lines.push('', `**FAILED:** ${r.failures.join('; ')}.`);
  lines.push('', `${h}# connect`);
  lines.push(
    ...table(
      [
        'target',
        'ok',
        'failed',
        'upgrades/s',
        'connect p50 ms',
        'p99 ms',
        'KiB/conn per gateway',
        'gateway CPU µs/conn',
        'load CPU µs/conn',
      ],
      r.results.map((t) => {
        const c = t.connect;
        const bc = t === herald ? base?.connect : undefined;
        return [
          t.target,
          fmt(c.ok),
          fmt(c.failed),
          fmt(c.upgradesPerSec) + ratio(c.upgradesPerSec, bc?.upgradesPerSec),
          fmt(c.connectP50Ms),
          fmt(c.connectP99Ms) + ratio(c.connectP99Ms, bc?.connectP99Ms),
          c.kibPerConnection.map(fmt).join(', '),
          fmt(c.gatewayCpuMicrosPerConnection) + ratio(c.gatewayCpuMicrosPerConnection, bc?.gatewayCpuMicrosPerConnection),
          fmt(c.loadCpuMicrosPerConnection),
        ];
      }),
    ),
  );
  lines.push('', `${h}# idle (connected, nothing published)`);
  lines.push(
    ...table(
      ['target', 'seconds', 'gateway CPU ms/s (all gateways)', 'redis CPU ms/s'],
      r.results.map((t) => [t.target, fmt(t.idle.seconds), fmt(t.idle.gatewayCpuMsPerSec), fmt(t.idle.redisCpuMsPerSec)]),
    ),
  );
  for (const kind of ['targeted', 'broadcast'] as const) {
    if (herald[kind].length === 0) continue;
    lines.push(
      '',
      `${h}# ${kind}${kind === 'targeted' ? ' (notifications:user:<i>, one recipient each)' : ' (notifications:system, every client)'}`,
    );
    lines.push(
      ...table(
        [
          'target',
          'rate/s',
          'sent/s',
          'delivered/s',
          'first send → last receipt s',
          'lost',
          'misrouted',
          'dup',
          'out of order',
          'p50 ms',
          'p95 ms',
          'p99 ms',
          'max ms',
          'gateway CPU µs/delivery',
          'load CPU µs/delivery',
          'redis CPU µs/delivery',
          'redis CPU µs/message',
          'limited by',
        ],
        r.results.flatMap((t) =>
          t[kind].map((s, i) => {
            const bs = t === herald ? base?.[kind][i] : undefined;
            return [
              t.target,
              rateLabel(s),
              fmt(s.sentPerSec),
              fmt(s.deliveredPerSec) + ratio(s.deliveredPerSec, bs?.deliveredPerSec),
              fmt(s.deliverySeconds),
              fmt(s.lost),
              fmt(s.misrouted),
              fmt(s.duplicated),
              fmt(s.reordered),
              fmt(s.p50Ms),
              fmt(s.p95Ms),
              fmt(s.p99Ms) + ratio(s.p99Ms, bs?.p99Ms),
              fmt(s.maxMs),
              fmt(s.gatewayCpuMicrosPerDelivery) + ratio(s.gatewayCpuMicrosPerDelivery, bs?.gatewayCpuMicrosPerDelivery),
              fmt(s.loadCpuMicrosPerDelivery),
              fmt(s.redisCpuMicrosPerDelivery),
              fmt(s.redisCpuMicrosPerMessage),
              limitedBy(s),
            ];
          }),
        ),
      ),
    );
  }
  const churned = r.results.filter((t) => t.churn !== undefined);
  if (churned.length > 0) {
    lines.push('', `${h}# churn`);
    lines.push(
      ...table(
        ['target', 'dropped', 'reconnected', 'failed', 'reconnect s', 'back and flowing s', 'lost', 'misrouted'],
        churned.map(({ target, churn: c }) => {
          const x = c as NonNullable<typeof c>;
          return [
            target,
            fmt(x.dropped),
            fmt(x.reconnected),
            fmt(x.failed),
            fmt(x.reconnectSeconds),
            fmt(x.backAndFlowingSeconds),
            fmt(x.lost),
            fmt(x.misrouted),
          ];
        }),
      ),
    );
  }
  lines.push(...upkeepReport(r.results, h));
  lines.push(...routingReport(herald, h));
  // A run without targeted steps (--rates none) has no such rate to report.
  if (herald.targeted.length === 0) return lines.join('\n');
  const best = bestTargeted(herald.targeted);
  lines.push(
    '',
    `Highest targeted rate with nothing lost or misrouted and p99 < 50 ms (Herald): ${best === undefined ? 'none' : `${fmt(best.deliveredPerSec)} delivered/s (step ${rateLabel(best)})`}.`,
  );
  return lines.join('\n');
}

/** Connect and disconnect windows, until the gateways' batched writes settled (upkeep.ts). */
function upkeepReport(results: TargetResult[], h: string): string[] {
  const rows: string[][] = [];
  for (const t of results) {
    for (const [phase, u] of [
      ['connect', t.connect.upkeep],
      ['disconnect', t.disconnect],
    ] as const) {
      if (u === undefined) continue;
      const p = upkeepPerConn(u);
      rows.push([
        phase,
        t.target,
        fmt(u.connections),
        fmt(u.seconds),
        perConn(p.gateway),
        perConn(p.load),
        perConn(p.redis),
        perConn(p.commands),
        perConn(p.scripts),
        upkeepLimitedBy(u),
      ]);
    }
  }
  if (rows.length === 0) return [];
  return [
    '',
    `${h}# connect and disconnect, until the gateways' batched writes settled`,
    ...table(
      [
        'phase',
        'target',
        'connections',
        'window s',
        'gateway CPU µs/conn',
        'load CPU µs/conn',
        'redis CPU µs/conn',
        'Redis commands/conn (inside scripts too)',
        'script calls/conn',
        'limited by',
      ],
      rows,
    ),
  ];
}

/** Herald's per-gateway routing and its counts against redis-server's, per step. */
function routingReport(herald: TargetResult, h: string): string[] {
  const steps: [string, RateStep & { routing: StepRouting }][] = [];
  for (const kind of ['targeted', 'broadcast'] as const) {
    for (const s of herald[kind]) if (s.routing !== undefined) steps.push([kind, { ...s, routing: s.routing }]);
  }
  if (steps.length === 0) return [];
  const lines = ['', `${h}# routing (Herald): what Redis sent each gateway against what it delivered`];
  lines.push(
    ...table(
      [
        'step',
        'gateway',
        'recorder',
        'channels held',
        'routed (topic)',
        'deliveries',
        'routed ÷ deliveries',
        'recorder msgs (pattern)',
        'recorded',
        'found',
        'dropped',
        'announcements delivered',
      ],
      steps.flatMap(([kind, s]) =>
        s.routing.gateways.map((g) => [
          `${kind} ${rateLabel(s)}`,
          String(g.gateway),
          g.recorder ? 'yes' : 'no',
          fmt(g.subscriptions),
          fmt(g.routed),
          fmt(g.deliveries),
          Number.isFinite(g.routedPerDelivery) ? g.routedPerDelivery.toFixed(3) : '–',
          fmt(g.pattern),
          fmt(g.recorded),
          fmt(g.found),
          fmt(g.dropped),
          fmt(g.announcementsDelivered),
        ]),
      ),
    ),
  );
  lines.push('', `${h}# Herald's counts against redis-server's`);
  lines.push(
    ...table(
      ['step', 'check', 'Herald', 'redis-server', 'equal'],
      steps.flatMap(([kind, s]) =>
        s.routing.checks.map((c) => [`${kind} ${rateLabel(s)}`, c.what, fmt(c.herald), fmt(c.redis), c.equal ? 'yes' : '**MISMATCH**']),
      ),
    ),
  );
  return lines;
}

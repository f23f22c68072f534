// The presence-on and presence-off runs side by side: what presence upkeep
// (HERALD_PRESENCE) costs per connect and per disconnect, in gateway CPU, Redis
// commands and redis-server CPU. Commands are counted as redis-server runs them, those
// inside a script included, with the script calls apart: one EVALSHA per batch is few
// commands sent, not free work. The runs come in pairs (runs.ts): each figure is the
// median over the pairs with its range, and on − off is taken within each pair.
import type { RunRecord, TargetResult } from './record.js';
import { fmt, perConn, table, upkeepLimitedBy, upkeepPerConn } from './report.js';
import { PRESENCE_PAIRS, presenceId } from './runs.js';
import type { Upkeep } from './upkeep.js';

type Phase = 'connect' | 'disconnect';
const PHASES: readonly Phase[] = ['connect', 'disconnect'];
type PerConn = ReturnType<typeof upkeepPerConn>;

const herald = (r: RunRecord): TargetResult | undefined => r.results.find((t) => t.target === 'herald');
const windowOf = (r: RunRecord, phase: Phase): Upkeep | undefined =>
  phase === 'connect' ? herald(r)?.connect.upkeep : herald(r)?.disconnect;

export function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const signed = (x: number): string => (Number.isFinite(x) && x > 0 ? `+${perConn(x)}` : perConn(x));

/** The median, and the range when there is more than one value: `408 (348 to 480)`. */
function spread(xs: readonly number[], show: (x: number) => string = perConn): string {
  const s = xs.filter(Number.isFinite);
  if (s.length === 0) return '–';
  const lo = Math.min(...s);
  const hi = Math.max(...s);
  // Values that read the same once rounded need no range.
  if (show(lo) === show(hi)) return show(median(s));
  return `${show(median(s))} (${show(lo)} to ${show(hi)})`;
}

interface Pair {
  on: RunRecord;
  off: RunRecord;
}

export function presenceSection(records: ReadonlyMap<string, RunRecord>): string[] {
  const lines: string[] = [];
  const pairs: Pair[] = [];
  const missing: string[] = [];
  for (const pair of PRESENCE_PAIRS) {
    const on = records.get(presenceId(true, pair));
    const off = records.get(presenceId(false, pair));
    if (on === undefined) missing.push(presenceId(true, pair));
    if (off === undefined) missing.push(presenceId(false, pair));
    if (on === undefined || off === undefined) continue;
    // A record made with the other setting would swap the columns' meaning.
    for (const [r, want, id] of [
      [on, true, presenceId(true, pair)],
      [off, false, presenceId(false, pair)],
    ] as const) {
      if ((r.options.presence ?? true) !== want)
        lines.push(`**${id} was made with presence ${want ? 'off' : 'on'}:** its pair is left out.`);
    }
    if ((on.options.presence ?? true) && off.options.presence === false) pairs.push({ on, off });
  }
  if (missing.length > 0)
    lines.push(`No record for ${missing.join(', ')}${pairs.length > 0 ? ': the pairs below are the complete ones' : ''}.`);
  const first = pairs[0];
  if (first === undefined) return lines.length > 0 ? lines : ['No presence runs recorded.'];
  if (lines.length > 0) lines.push('');
  const o = first.on.options;
  lines.push(
    `${fmt(o.connections)} connections on ${fmt(o.gateways)} gateway process(es), history ${o.history ? 'on' : 'off'}, ` +
      'connection events on (the default: their XADDs are in both columns). Per connection, over the window from just before ' +
      "the burst of connects (or of disconnects: every client dropped at the end) until the gateways' batched writes settled. " +
      `Each cell is the median over ${fmt(pairs.length)} pair(s) of runs, the range in parentheses where they differ; on − off is taken within each pair, ` +
      'then its median and range: it is what presence upkeep adds, where the range does not straddle zero.',
    '',
  );
  const windows = (phase: Phase, side: 'on' | 'off'): (Upkeep | undefined)[] => pairs.map((p) => windowOf(p[side], phase));
  const values = (phase: Phase, side: 'on' | 'off', f: (p: PerConn) => number): number[] =>
    windows(phase, side).map((u) => (u === undefined ? NaN : f(upkeepPerConn(u))));
  const figure = (name: string, f: (p: PerConn) => number): string[] => [
    name,
    ...PHASES.flatMap((phase) => {
      const on = values(phase, 'on', f);
      const off = values(phase, 'off', f);
      return [
        spread(on),
        spread(off),
        spread(
          on.map((x, i) => x - (off[i] ?? NaN)),
          signed,
        ),
      ];
    }),
  ];
  const sides = (phase: Phase, show: (u: Upkeep | undefined) => string): string[] => [
    windows(phase, 'on').map(show).join(', '),
    windows(phase, 'off').map(show).join(', '),
    '–',
  ];
  lines.push(
    ...table(
      ['per connection', 'connect: presence on', 'presence off', 'on − off', 'disconnect: presence on', 'presence off', 'on − off'],
      [
        figure('gateway CPU µs', (p) => p.gateway),
        figure('Redis commands (every command redis-server ran, those inside scripts included)', (p) => p.commands),
        figure('of which script calls (EVALSHA and the like: one command sent, many run)', (p) => p.scripts),
        figure('redis-server CPU µs', (p) => p.redis),
        figure('load CPU µs (client workers)', (p) => p.load),
        [
          'limited by, each pair (gateway CPU against load + redis-server CPU)',
          ...PHASES.flatMap((phase) => sides(phase, (u) => (u === undefined ? '–' : upkeepLimitedBy(u)))),
        ],
        // The gateway's CPU per connect falls as the rate rises (bigger batches, fewer
        // wakeups), and the load side sets the rate.
        [
          'upgrades/s reached, each pair (the load side sets it; gateway CPU per connect moves with it)',
          ...(['on', 'off'] as const).map((side) => pairs.map((p) => fmt(herald(p[side])?.connect.upgradesPerSec ?? NaN)).join(', ')),
          '–',
          '–',
          '–',
          '–',
        ],
        ['connections, each pair', ...PHASES.flatMap((phase) => sides(phase, (u) => fmt(u?.connections ?? NaN)))],
        ['window s, each pair', ...PHASES.flatMap((phase) => sides(phase, (u) => fmt(u?.seconds ?? NaN)))],
      ],
    ),
  );
  // Which commands, per connection: what the script calls run inside.
  const names = [
    ...new Set(
      PHASES.flatMap((phase) =>
        [...windows(phase, 'on'), ...windows(phase, 'off')].flatMap((u) => (u === undefined ? [] : Object.keys(u.redisCommands))),
      ),
    ),
  ].sort();
  const per = (phase: Phase, side: 'on' | 'off', name: string): string =>
    spread(windows(phase, side).map((u) => (u === undefined ? NaN : (u.redisCommands[name] ?? 0) / Math.max(1, u.connections))));
  lines.push(
    '',
    'The commands, per connection (median over the pairs, range in parentheses where they differ):',
    '',
    ...table(
      ['command', 'connect: presence on', 'presence off', 'disconnect: presence on', 'presence off'],
      names.map((name) => [`\`${name}\``, ...PHASES.flatMap((phase) => [per(phase, 'on', name), per(phase, 'off', name)])]),
    ),
  );
  return lines;
}

// The presence-on and presence-off runs side by side: what presence upkeep (HERALD_PRESENCE)
// costs per connect and per disconnect, in gateway CPU, Redis commands and
// redis-server CPU. Commands are counted as redis-server runs them, those inside a
// script included, with the script calls apart: one EVALSHA per batch is few round
// trips, not free work.
import type { RunRecord, TargetResult } from './record.js';
import { fmt, perConn, table, upkeepLimitedBy, upkeepPerConn } from './report.js';
import { presenceId } from './runs.js';
import type { Upkeep } from './upkeep.js';

type Phase = 'connect' | 'disconnect';
const PHASES: readonly Phase[] = ['connect', 'disconnect'];

const herald = (r: RunRecord | undefined): TargetResult | undefined => r?.results.find((t) => t.target === 'herald');
const windowOf = (t: TargetResult | undefined, phase: Phase): Upkeep | undefined =>
  phase === 'connect' ? t?.connect.upkeep : t?.disconnect;
const signed = (x: number): string => (Number.isFinite(x) && x > 0 ? `+${perConn(x)}` : perConn(x));

export function presenceSection(records: ReadonlyMap<string, RunRecord>): string[] {
  const on = records.get(presenceId(true));
  const off = records.get(presenceId(false));
  const missing = [presenceId(true), presenceId(false)].filter((id) => !records.has(id));
  if (missing.length > 0) return [`No record for ${missing.join(', ')}.`];
  const [ron, roff] = [on, off] as [RunRecord, RunRecord];
  const lines: string[] = [];
  // A record made with the other setting would swap the columns' meaning.
  for (const [id, r, want] of [
    [presenceId(true), ron, true],
    [presenceId(false), roff, false],
  ] as const) {
    if ((r.options.presence ?? true) !== want)
      lines.push(`**${id} was made with presence ${want ? 'off' : 'on'}:** the columns are wrong.`);
  }
  const o = ron.options;
  lines.push(
    `${fmt(o.connections)} connections on ${fmt(o.gateways)} gateway process(es), history ${o.history ? 'on' : 'off'}, ` +
      'connection events on (the default: their XADDs are in both columns). Per connection, over the window from just before ' +
      "the burst of connects (or of disconnects: every client dropped at the end) until the gateways' batched writes settled; " +
      'the difference is what presence upkeep adds.',
    '',
  );
  const w = PHASES.map((phase) => [windowOf(herald(ron), phase), windowOf(herald(roff), phase)] as const);
  const cell = (u: Upkeep | undefined, f: (p: ReturnType<typeof upkeepPerConn>) => number): number =>
    u === undefined ? NaN : f(upkeepPerConn(u));
  const figure = (name: string, f: (p: ReturnType<typeof upkeepPerConn>) => number): string[] => [
    name,
    ...w.flatMap(([a, b]) => {
      const x = cell(a, f);
      const y = cell(b, f);
      return [perConn(x), perConn(y), signed(x - y)];
    }),
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
          'limited by (gateway CPU against load + redis-server CPU)',
          ...w.flatMap(([a, b]) => [a === undefined ? '–' : upkeepLimitedBy(a), b === undefined ? '–' : upkeepLimitedBy(b), '–']),
        ],
        // The gateway's CPU per connect falls as the rate rises (bigger batches, fewer
        // wakeups), and the load side sets the rate: compare like with like.
        [
          'upgrades/s reached (the load side sets it; gateway CPU per connect moves with it)',
          ...[ron, roff].map((r) => fmt(herald(r)?.connect.upgradesPerSec ?? NaN)),
          '–',
          '–',
          '–',
          '–',
        ],
        [
          'connections; window s',
          ...w.flatMap(([a, b]) => [a, b].map((u) => (u === undefined ? '–' : `${fmt(u.connections)}; ${fmt(u.seconds)}`)).concat('–')),
        ],
      ],
    ),
  );
  // Which commands, per connection: what the script calls run inside.
  const names = [...new Set(w.flatMap(([a, b]) => [a, b].flatMap((u) => (u === undefined ? [] : Object.keys(u.redisCommands)))))].sort();
  const per = (u: Upkeep | undefined, name: string): string =>
    u === undefined ? '–' : perConn((u.redisCommands[name] ?? 0) / Math.max(1, u.connections));
  lines.push(
    '',
    'The commands, per connection:',
    '',
    ...table(
      ['command', 'connect: presence on', 'presence off', 'disconnect: presence on', 'presence off'],
      names.map((name) => [`\`${name}\``, ...w.flatMap(([a, b]) => [per(a, name), per(b, name)])]),
    ),
  );
  return lines;
}

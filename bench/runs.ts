// The runs RESULTS.md shows, in the order results.ts makes them: each one's exact
// arguments and where its record is kept (bench/data/, committed).

export interface Run {
  id: string;
  title: string;
  args: string[];
}

export const SCALE_GATEWAYS = [1, 2, 4] as const;

export const scaleId = (gateways: number, history: boolean): string => `scale-g${gateways}-history-${history ? 'on' : 'off'}`;

/** The presence runs come in pairs, on then off, repeated: on a shared machine the CPU
 *  figures move between runs by more than presence moves them, and the spread shows it. */
export const PRESENCE_PAIRS = [1, 2, 3] as const;

export const presenceId = (presence: boolean, pair: number): string => `presence-${presence ? 'on' : 'off'}-${pair}`;

export const RUNS: readonly Run[] = [
  {
    id: 'quick',
    title: 'Quick profile: 5,000 connections, one gateway, history on, with the baseline',
    args: ['--profile', 'quick'],
  },
  ...SCALE_GATEWAYS.flatMap((g) =>
    [true, false].map(
      (history): Run => ({
        id: scaleId(g, history),
        title: `Scale profile: 8,000 connections on ${g} gateway${g === 1 ? '' : 's'}, history ${history ? 'on' : 'off'}`,
        args: ['--profile', 'scale', '--gateways', String(g), ...(history ? [] : ['--no-history'])],
      }),
    ),
  ),
  {
    id: 'full',
    title: 'Full profile: 50,000 connections on 4 gateways, history on, with the baseline',
    args: ['--profile', 'full'],
  },
  // What presence upkeep costs per connect and per disconnect: the same run with it on
  // and off, in pairs, the order alternating so that neither side is always the run
  // after another. No targeted or broadcast steps, to keep each run short; history
  // off, so the recorder's lease renewals are not among the commands counted.
  ...PRESENCE_PAIRS.flatMap((pair) =>
    (pair % 2 === 1 ? [true, false] : [false, true]).map(
      (presence): Run => ({
        id: presenceId(presence, pair),
        title: `Presence ${presence ? 'on' : 'off'}, pair ${pair}: 8,000 connections on one gateway, history off: connect, idle, churn, disconnect`,
        args: [
          '--profile',
          'scale',
          '--gateways',
          '1',
          '--rates',
          'none',
          '--churn',
          '0.1',
          '--no-history',
          ...(presence ? [] : ['--no-presence']),
        ],
      }),
    ),
  ),
];

/** Where a run's record is kept, from the repository's root. */
export const dataFile = (id: string, dir = 'bench/data'): string => `${dir}/${id}.json`;

/** The run's command line, as results.ts runs it from the repository's root. */
export const commandOf = (run: Run): string[] => ['node', 'dist-bench/run.js', ...run.args, '--out', dataFile(run.id)];

// The scale runs side by side: a per-step figure (gateway CPU per delivery, redis-server
// CPU per message) for G = 1, 2 and 4 gateways at the same targeted rate, and the
// ratios the targets name. Steps are matched by their rate; `max` steps are left out,
// since each run reaches a different rate there.
import type { RunRecord } from './record.js';
import { fmt, limitedBy, table, times } from './report.js';
import { SCALE_GATEWAYS, scaleId } from './runs.js';
import type { RateStep } from './scenarios/targeted.js';

export interface ScalingRow {
  rate: number;
  /** The figure for G = 1, 2, 4 (NaN where that run or step is missing). */
  byGateways: number[];
  g4OverG2: number;
  g4OverG1: number;
  /** Which side limited the G = 4 step. */
  limitedBy: string;
}

/** G = 4 within this factor of G = 2 ... */
export const WITHIN_G2 = 1.25;
/** ... and at most this factor of G = 1. */
export const WITHIN_G1 = 1.5;

export type Figure = 'gatewayCpuMicrosPerDelivery' | 'redisCpuMicrosPerMessage';

const heraldTargeted = (r: RunRecord | undefined): RateStep[] => r?.results.find((t) => t.target === 'herald')?.targeted ?? [];

export function scalingRows(records: ReadonlyMap<string, RunRecord>, history: boolean, figure: Figure): ScalingRow[] {
  const runs = SCALE_GATEWAYS.map((g) => heraldTargeted(records.get(scaleId(g, history))));
  const rates = [...new Set(runs.flatMap((steps) => steps.map((s) => s.rate)))].filter((r): r is number => typeof r === 'number');
  return rates.map((rate) => {
    const steps = runs.map((steps) => steps.find((s) => s.rate === rate));
    const byGateways = steps.map((s) => s?.[figure] ?? NaN);
    const [g1 = NaN, g2 = NaN, g4 = NaN] = byGateways;
    const s4 = steps[2];
    return { rate, byGateways, g4OverG2: g4 / g2, g4OverG1: g4 / g1, limitedBy: s4 === undefined ? '–' : limitedBy(s4) };
  });
}

export const rowMeets = (r: ScalingRow): boolean => r.g4OverG2 <= WITHIN_G2 && r.g4OverG1 <= WITHIN_G1;

export function scalingTable(records: ReadonlyMap<string, RunRecord>, figure: Figure, unit: string): string[] {
  const rows = [true, false].flatMap((history) =>
    scalingRows(records, history, figure).map((r) => [
      history ? 'on' : 'off',
      fmt(r.rate),
      ...r.byGateways.map(fmt),
      times(r.g4OverG2),
      times(r.g4OverG1),
      Number.isFinite(r.g4OverG2) && Number.isFinite(r.g4OverG1) ? (rowMeets(r) ? 'yes' : 'no') : '–',
      r.limitedBy,
    ]),
  );
  if (rows.length === 0) rows.push(['–', 'no scale run recorded', ...SCALE_GATEWAYS.map(() => '–'), '–', '–', '–', '–']);
  return table(
    [
      'history',
      'rate/s',
      ...SCALE_GATEWAYS.map((g) => `G=${g} ${unit}`),
      'G=4 ÷ G=2',
      'G=4 ÷ G=1',
      `within ${WITHIN_G2}× / ${WITHIN_G1}×`,
      'G=4 step limited by',
    ],
    rows,
  );
}

/** The gateways' CPU while idle, by G: the fixed cost behind the low-rate steps' figures. */
export function idleTable(records: ReadonlyMap<string, RunRecord>): string[] {
  return table(
    ['history', ...SCALE_GATEWAYS.map((g) => `G=${g} gateway CPU ms/s`), ...SCALE_GATEWAYS.map((g) => `G=${g} redis CPU ms/s`)],
    [true, false].map((history) => {
      const idle = SCALE_GATEWAYS.map((g) => records.get(scaleId(g, history))?.results.find((t) => t.target === 'herald')?.idle);
      return [
        history ? 'on' : 'off',
        ...idle.map((i) => fmt(i?.gatewayCpuMsPerSec ?? NaN)),
        ...idle.map((i) => fmt(i?.redisCpuMsPerSec ?? NaN)),
      ];
    }),
  );
}

// RESULTS.md, written whole from the run records in bench/data/ (`run.js --report`):
// which runs, on which machine and commit, with which command; the verdicts against
// each target; the scale runs side by side; every run's tables; and the committed
// notes, verbatim. No figure in it is typed by hand.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { presenceSection } from './presence-upkeep.js';
import { type RunRecord, readRecord } from './record.js';
import { fmt, runReport, table } from './report.js';
import { commandOf, dataFile, RUNS } from './runs.js';
import { idleTable, scalingTable } from './scaling.js';
import { ROOT } from './services.js';
import { missingRuns, verdicts } from './verdicts.js';

export const NOTES = 'bench/results-notes.md';

/**
 * The notes carry prose only: a digit outside a `code span` is a figure typed by hand,
 * which belongs in a record instead.
 */
export function checkNotes(text: string): void {
  text.split('\n').forEach((line, i) => {
    if (/\d/.test(line.replace(/`[^`]*`/g, '')))
      throw new Error(`${NOTES}:${i + 1}: figures belong in the run records, not in the notes: ${line.trim()}`);
  });
}

export function loadRecords(dataDir: string): Map<string, RunRecord> {
  const records = new Map<string, RunRecord>();
  for (const run of RUNS) {
    const file = resolve(ROOT, dataFile(run.id, dataDir));
    if (existsSync(file)) records.set(run.id, readRecord(file));
  }
  return records;
}

function provenance(records: ReadonlyMap<string, RunRecord>): string[] {
  const lines = table(
    ['run', 'command', 'commit', 'machine', 'date', 'outcome'],
    RUNS.map((run) => {
      const r = records.get(run.id);
      if (r === undefined) return [run.id, '–', '–', '–', '–', 'no record'];
      const m = r.machine;
      // A record made by hand with other arguments is not the run this row describes.
      const asScripted = r.command === commandOf(run).join(' ');
      return [
        run.id,
        `\`${r.command}\`${asScripted ? '' : ` (**not the script's command:** \`${commandOf(run).join(' ')}\`)`}`,
        m.commit,
        `${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}`,
        m.date,
        r.failures.length === 0 ? 'passed' : `**failed**: ${r.failures.join('; ')}`,
      ];
    }),
  );
  const commits = [...new Set([...records.values()].map((r) => r.machine.commit))];
  const missing = missingRuns(records);
  const offScript = RUNS.filter((run) => {
    const r = records.get(run.id);
    return r !== undefined && r.command !== commandOf(run).join(' ');
  });
  lines.push('');
  if (commits.length === 1 && !(commits[0] ?? '').endsWith('+dirty') && missing.length === 0 && offScript.length === 0) {
    lines.push(`Every run at commit ${commits[0] ?? ''}, from committed code.`);
  } else {
    if (commits.length > 1)
      lines.push(`- **The runs span ${commits.length} commits** (${commits.join(', ')}): the figures are not from one build.`);
    if (commits.some((c) => c.endsWith('+dirty'))) lines.push('- **Some runs used uncommitted code** (commit marked +dirty).');
    if (offScript.length > 0) lines.push(`- **Not made by the script's command:** ${offScript.map((r) => r.id).join(', ')}.`);
    if (missing.length > 0) lines.push(`- **No record for:** ${missing.join(', ')} (their verdicts read "not measured").`);
  }
  return lines;
}

export function document(records: ReadonlyMap<string, RunRecord>, notes: string): string {
  const out: string[] = [
    '# Herald bench results',
    '',
    '<!-- Written by `node dist-bench/run.js --report` from bench/data/*.json; edit bench/results-notes.md or the harness, not this file. -->',
    '',
    `Written by \`node dist-bench/run.js --report\` from the run records in bench/data/. \`npm run bench:results\` makes every run below, in this order, then writes this file. What each figure means is in [README.md](README.md); the notes at the end come verbatim from ${NOTES}.`,
    '',
    '## Runs',
    '',
    ...provenance(records),
    '',
    '## Against the targets',
    '',
    ...table(
      ['target', 'measured', 'met?', 'what limits it'],
      verdicts(records).map((v) => [v.target, v.measured, v.met, v.limits]),
    ),
    '',
    '## Scaling with the number of gateways (scale runs, Herald, targeted)',
    '',
    'Gateway CPU per delivery, all gateways added together:',
    '',
    ...scalingTable(records, 'gatewayCpuMicrosPerDelivery', 'µs/delivery'),
    '',
    'redis-server CPU per published message:',
    '',
    ...scalingTable(records, 'redisCpuMicrosPerMessage', 'µs/message'),
    '',
    'While idle (every client connected, nothing published), CPU per second of wall time:',
    '',
    ...idleTable(records),
    '',
    '## Presence upkeep (per connect and per disconnect, presence on and off)',
    '',
    ...presenceSection(records),
  ];
  for (const run of RUNS) {
    const r = records.get(run.id);
    out.push('', r === undefined ? `## ${run.title}\n\nNo record (${dataFile(run.id)}).` : runReport(r, run.title, 2));
  }
  out.push('', notes.trimEnd(), '');
  return out.join('\n');
}

/** Reads every record and the notes, writes RESULTS.md; returns the verdict counts for the log. */
export function writeDocument(dataDir: string, outFile: string): { runs: number; missing: string[] } {
  const notes = readFileSync(join(ROOT, NOTES), 'utf8');
  checkNotes(notes);
  const records = loadRecords(dataDir);
  writeFileSync(outFile, document(records, notes));
  return { runs: records.size, missing: missingRuns(records) };
}

export const summary = (w: { runs: number; missing: string[] }): string =>
  `${fmt(w.runs)} run record(s)${w.missing.length > 0 ? `; no record for ${w.missing.join(', ')}` : ''}`;

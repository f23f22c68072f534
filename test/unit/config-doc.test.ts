// docs/CONFIGURATION.md against config.ts's settings table: the same variables both
// ways and in the same order, the same defaults, the same ranges, and each Meaning
// cell beginning with the row's doc line. And no HERALD_* variable in src/ that the
// table does not hold.
import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { CLI_SETTINGS, read, SETTINGS, type Setting, type SettingName, WORKER_ID } from '../../dist/config.js';

const DOC = readFileSync(new URL('../../docs/CONFIGURATION.md', import.meta.url), 'utf8');
const SRC = new URL('../../src/', import.meta.url);

interface DocRow {
  name: string;
  default: string;
  range: string;
  meaning: string;
}

/** Every `| \`HERALD_X\` | default | range | meaning |` row of the document's tables, in order. */
function docRows(markdown: string): DocRow[] {
  const rows: DocRow[] = [];
  for (const line of markdown.split('\n')) {
    const m = /^\| `(HERALD_[A-Z0-9_]+)` \| (.*?) \| (.*?) \| (.*) \|$/.exec(line);
    if (m !== null) rows.push({ name: m[1] ?? '', default: m[2] ?? '', range: m[3] ?? '', meaning: m[4] ?? '' });
  }
  return rows;
}

/** The Default column a setting's row must show. */
function defaultCell(s: Setting<unknown>): string {
  if (s.defaultDoc !== undefined) return s.defaultDoc;
  if (s.default === undefined) return 'unset';
  const dev = s.dev === undefined ? '' : ` (\`${s.dev}\` under \`--dev\`, i.e. \`make run\`)`;
  const note = s.defaultNote === undefined ? '' : ` ${s.defaultNote}`;
  return `\`${s.default}\`${dev}${note}`;
}

const table: Array<[string, Setting<unknown>]> = [...Object.entries(SETTINGS), ...Object.entries(CLI_SETTINGS)];
const rows = docRows(DOC);

t.test('the row parser reads a table row and skips everything else', async (t) => {
  const sample = [
    '| Variable | Default | Unit / range | Meaning |',
    '|---|---|---|---|',
    '| `HERALD_X` | `1` | 0-9 | It does `a | b`. |',
    'Text naming `HERALD_Y` in prose.',
    '| `herald_lower` | `1` | 0-9 | not a variable |',
  ].join('\n');
  t.strictSame(docRows(sample), [{ name: 'HERALD_X', default: '`1`', range: '0-9', meaning: 'It does `a | b`.' }]);
});

t.test("docs/CONFIGURATION.md's tables list exactly the code's settings, in the code's order", async (t) => {
  const documented = rows.map((r) => r.name);
  const code = table.map(([name]) => name);
  t.ok(documented.length >= 40, `the tables parse (${documented.length} rows)`);
  t.strictSame(
    code.filter((n) => !documented.includes(n)),
    [],
    'every setting in config.ts has a row',
  );
  t.strictSame(
    documented.filter((n) => !code.includes(n)),
    [],
    'every row is a setting in config.ts',
  );
  t.strictSame(documented, code, 'the same order');
});

t.test('each row shows the default, the range and the doc line of its setting', async (t) => {
  const byName = new Map(rows.map((r) => [r.name, r]));
  for (const [name, s] of table) {
    const row = byName.get(name);
    if (row === undefined) continue; // reported by the test above
    t.equal(row.default, defaultCell(s), `${name}: Default column`);
    t.equal(row.range, s.range, `${name}: Unit / range column`);
    t.ok(row.meaning.startsWith(s.doc), `${name}: Meaning begins with ${JSON.stringify(s.doc)}`);
  }
});

t.test('every written default is a valid value of its setting, and is what unset yields', async (t) => {
  for (const [name, s] of table) {
    if (s.default === undefined) continue;
    const parsed = s.parse(s.default);
    t.strictSame(read({}, name as SettingName), parsed, `${name}: unset reads as ${JSON.stringify(s.default)}`);
    t.strictSame(read({ [name]: '  ' }, name as SettingName), parsed, `${name}: blank reads as unset`);
    if (s.dev !== undefined) t.doesNotThrow(() => s.parse(s.dev as string), `${name}: the dev default parses`);
  }
});

t.test('every HERALD_* variable src/ mentions is in the table (or is the worker id the supervisor sets)', async (t) => {
  const known = new Set<string>([...table.map(([name]) => name), WORKER_ID]);
  const mentioned = new Set<string>();
  for (const file of readdirSync(SRC).filter((f) => f.endsWith('.ts'))) {
    for (const m of readFileSync(new URL(file, SRC), 'utf8').matchAll(/\bHERALD_[A-Z0-9_]+\b/g)) mentioned.add(m[0]);
  }
  t.ok(mentioned.has('HERALD_PORT'), `src/ is read (${mentioned.size} names)`);
  t.strictSame(
    [...mentioned].filter((n) => !known.has(n)),
    [],
    'no variable outside the table',
  );
});

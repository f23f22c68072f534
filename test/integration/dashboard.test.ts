// The Grafana dashboard (docs/grafana-dashboard.json) imports as is, and every metric
// its queries name is one a real gateway exports and docs/OPERATIONS.md documents: a renamed
// metric breaks this test, not an operator's dashboard.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import t from 'tap';
import { baseEnv, ROOT, startGateway } from '../support/gateway.js';

const GRID_COLUMNS = 24;
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's own ${...} variable syntax, not a template
const DATASOURCE_UID = '${datasource}';

interface GridPos {
  x: number;
  y: number;
  w: number;
  h: number;
}
interface DataSourceRef {
  type?: string;
  uid?: string;
}
interface Target {
  expr?: string;
  refId?: string;
  datasource?: DataSourceRef;
}
interface Panel {
  id?: unknown;
  type?: string;
  title?: string;
  gridPos?: Partial<GridPos>;
  datasource?: DataSourceRef;
  targets?: Target[];
  panels?: Panel[];
  fieldConfig?: { defaults?: { unit?: string } };
}
interface Variable {
  name?: string;
  type?: string;
  query?: string | { query?: string };
  datasource?: DataSourceRef;
  current?: { value?: unknown };
}
interface Dashboard {
  __inputs?: { name?: string; type?: string; pluginId?: string }[];
  id?: unknown;
  uid?: unknown;
  title?: unknown;
  schemaVersion?: unknown;
  panels?: Panel[];
  templating?: { list?: Variable[] };
}

const DASHBOARD_FILE = join(ROOT, 'docs', 'grafana-dashboard.json');
const dashboardText = readFileSync(DASHBOARD_FILE, 'utf8');
const dashboard = JSON.parse(dashboardText) as Dashboard;

/** Every panel, with the panels nested in collapsed rows. */
function allPanels(d: Dashboard): Panel[] {
  return (d.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
}

const panels = allPanels(dashboard);
const graphs = panels.filter((p) => p.type !== 'row');

function variableQuery(v: Variable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
}

/** Every PromQL expression in the dashboard, named by where it sits. */
function expressions(d: Dashboard): { where: string; expr: string }[] {
  const fromPanels = allPanels(d).flatMap((p) =>
    (p.targets ?? []).map((tg) => ({ where: `panel "${p.title ?? '?'}" ${tg.refId ?? '?'}`, expr: tg.expr ?? '' })),
  );
  const fromVariables = (d.templating?.list ?? [])
    .filter((v) => v.type === 'query')
    .map((v) => ({ where: `variable ${v.name ?? '?'}`, expr: variableQuery(v) }));
  return [...fromPanels, ...fromVariables];
}

function metricTokens(expr: string): string[] {
  return [...expr.matchAll(/herald_[a-z0-9_]+/g)].map((m) => m[0]);
}

/** Metric family name -> type, from the `# TYPE` lines of a Prometheus text exposition. */
function families(exposition: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) found.set(m[1] as string, m[2] as string);
  return found;
}

/** The family a series name belongs to: `x_bucket` of histogram `x` is `x`; unknown names map to themselves. */
function familyOf(name: string, known: ReadonlyMap<string, string>): string {
  if (known.has(name)) return name;
  const m = /^(.+)_(bucket|sum|count)$/.exec(name);
  if (m === null) return name;
  const base = m[1] as string;
  const type = known.get(base);
  if (type === 'histogram') return base;
  if (type === 'summary' && m[2] !== 'bucket') return base;
  return name;
}

/** The names in `names` that are not series of an exported family. */
function unexported(names: Iterable<string>, known: ReadonlyMap<string, string>): string[] {
  return [...new Set(names)].filter((n) => !known.has(familyOf(n, known))).sort();
}

/** Metric names with a row in docs/OPERATIONS.md's metrics table (`| \`herald_x{labels}\` | ...`). */
function documented(readme: string): Set<string> {
  return new Set([...readme.matchAll(/^\| `(herald_[a-z0-9_]+)/gm)].map((m) => m[1] as string));
}

/** prom-client's default metrics under Herald's prefix: documented by reference, not by row. */
async function defaultMetricNames(): Promise<Set<string>> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'herald_' });
  const names = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
  registry.clear();
  return names;
}

const referenced = [...new Set(expressions(dashboard).flatMap((e) => metricTokens(e.expr)))].sort();

t.test('the dashboard asks for a Prometheus data source on import and has a title and uid', async (t) => {
  const input = (dashboard.__inputs ?? []).find((i) => i.name === 'DS_PROMETHEUS');
  t.same(input && { type: input.type, pluginId: input.pluginId }, { type: 'datasource', pluginId: 'prometheus' }, 'DS_PROMETHEUS input');
  // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's own ${...} variable syntax, not a template
  t.ok(dashboardText.includes('${DS_PROMETHEUS}'), 'the input is used, so the chosen data source is applied');
  t.equal(dashboard.title, 'Herald');
  t.type(dashboard.uid, 'string');
  t.ok(typeof dashboard.uid === 'string' && dashboard.uid.length > 0 && dashboard.uid.length <= 40, 'uid of 1-40 characters');
  t.equal(dashboard.id, null, 'no instance-specific id');
  t.ok(typeof dashboard.schemaVersion === 'number' && dashboard.schemaVersion >= 36, 'a Grafana 10+ schema version');
});

t.test('the dashboard has a data source variable defaulting to the imported one, and job and instance variables', async (t) => {
  const vars = new Map((dashboard.templating?.list ?? []).map((v) => [v.name, v]));
  const ds = vars.get('datasource');
  t.same(ds && { type: ds.type, query: ds.query, value: ds.current?.value }, {
    type: 'datasource',
    query: 'prometheus',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's own ${...} variable syntax, not a template
    value: '${DS_PROMETHEUS}',
  });
  for (const name of ['job', 'instance']) {
    const v = vars.get(name);
    t.equal(v?.type, 'query', `${name} is a query variable`);
    t.equal(v?.datasource?.uid, DATASOURCE_UID, `${name} queries the chosen data source`);
    t.match(
      v && variableQuery(v),
      new RegExp(`^label_values\\(herald_connections.*, ${name}\\)$`),
      `${name} lists values of herald_connections`,
    );
  }
});

t.test('every panel has a unique id and a place on the 24-column grid, overlapping no other', async (t) => {
  t.ok(graphs.length > 0, 'there are panels');
  const ids = panels.map((p) => p.id);
  for (const id of ids) t.ok(Number.isInteger(id) && (id as number) > 0, `id ${String(id)} is a positive integer`);
  t.equal(new Set(ids).size, ids.length, 'ids are unique');

  const placed: { title: string; g: GridPos }[] = [];
  for (const p of panels) {
    const g = p.gridPos ?? {};
    const ok =
      [g.x, g.y, g.w, g.h].every((n) => Number.isInteger(n) && (n as number) >= 0) &&
      (g.w as number) >= 1 &&
      (g.h as number) >= 1 &&
      (g.x as number) + (g.w as number) <= GRID_COLUMNS;
    t.ok(ok, `panel "${p.title ?? '?'}" has a gridPos inside the grid: ${JSON.stringify(p.gridPos)}`);
    if (ok) placed.push({ title: p.title ?? '?', g: g as GridPos });
  }
  for (const [i, a] of placed.entries()) {
    for (const b of placed.slice(i + 1)) {
      const overlap = a.g.x < b.g.x + b.g.w && b.g.x < a.g.x + a.g.w && a.g.y < b.g.y + b.g.h && b.g.y < a.g.y + a.g.h;
      if (overlap) t.fail(`panels "${a.title}" and "${b.title}" overlap`);
    }
  }
});

t.test('every graph panel queries the chosen data source, sets a unit and filters each metric by job and instance', async (t) => {
  for (const p of graphs) {
    const name = `panel "${p.title ?? '?'}"`;
    t.ok(p.type === 'timeseries' || p.type === 'stat', `${name} is a timeseries or stat (got ${String(p.type)})`);
    t.equal(p.datasource?.uid, DATASOURCE_UID, `${name} uses the data source variable`);
    t.ok((p.fieldConfig?.defaults?.unit ?? '') !== '', `${name} sets a unit`);
    const targets = p.targets ?? [];
    t.ok(targets.length > 0, `${name} has a query`);
    t.equal(new Set(targets.map((tg) => tg.refId)).size, targets.length, `${name} has unique refIds`);
    for (const tg of targets) {
      t.equal(tg.datasource?.uid, DATASOURCE_UID, `${name} ${tg.refId ?? '?'} uses the data source variable`);
      const selectors = [...(tg.expr ?? '').matchAll(/herald_[a-z0-9_]+(\{[^}]*\})?/g)];
      t.ok(selectors.length > 0, `${name} ${tg.refId ?? '?'} queries a Herald metric`);
      for (const s of selectors) {
        const labels = s[1] ?? '';
        t.ok(
          labels.includes('job=~"$job"') && labels.includes('instance=~"$instance"'),
          `${name}: ${s[0]} is filtered by $job and $instance`,
        );
      }
    }
  }
});

t.test('metrics on a running gateway', async (t) => {
  const gw = await startGateway(baseEnv());
  t.teardown(() => gw.stop());
  const res = await fetch(`${gw.http}/metrics`, { signal: AbortSignal.timeout(5000) });
  t.equal(res.status, 200, '/metrics answers');
  const known = families(await res.text());
  t.ok(known.has('herald_connections'), 'the exposition lists Herald metrics');

  t.test('every metric the dashboard queries is exported by the gateway', async (t) => {
    t.same(unexported(referenced, known), [], 'metrics queried but not exported');
  });

  t.test('the export check reports series of no exported family', async (t) => {
    t.same(
      unexported(
        [
          'herald_delivery_latency_seconds_bucket',
          'herald_auth_duration_seconds_count',
          'herald_connections',
          'herald_connections_bucket',
          'herald_no_such_metric_total',
        ],
        known,
      ),
      ['herald_connections_bucket', 'herald_no_such_metric_total'],
    );
  });

  t.test('every Herald metric the dashboard queries has a row in the metrics table of docs/OPERATIONS.md', async (t) => {
    const rows = documented(readFileSync(join(ROOT, 'docs/OPERATIONS.md'), 'utf8'));
    t.ok(rows.has('herald_connections'), 'the metrics table is found');
    const defaults = await defaultMetricNames();
    t.ok(defaults.has('herald_process_cpu_seconds_total'), 'default metric names are known');
    const undocumented = referenced.map((n) => familyOf(n, known)).filter((n) => !defaults.has(n) && !rows.has(n));
    t.same([...new Set(undocumented)], [], 'metrics queried but not in the metrics table');
  });
});

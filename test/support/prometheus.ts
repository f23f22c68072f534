// Reads a gateway's /metrics (Prometheus text format) into samples, so tests can
// assert that a counter moved by exactly the amount a script caused.

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

const SAMPLE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE_RE.exec(line);
    if (m === null) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL_RE))
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

export interface Metrics {
  readonly samples: readonly Sample[];
  /** The value of the one sample with this name whose labels include `labels`; throws when absent or ambiguous. */
  value(name: string, labels?: Labels): number;
  /** The sum over samples with this name whose labels include `labels`; 0 when there are none. */
  sum(name: string, labels?: Labels): number;
}

export function metricsFrom(text: string): Metrics {
  const samples = parsePrometheus(text);
  return {
    samples,
    value(name, labels = {}) {
      const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      if (found.length !== 1) {
        throw new Error(`expected one sample ${name}${JSON.stringify(labels)}, found ${found.length}`);
      }
      return (found[0] as Sample).value;
    },
    sum(name, labels = {}) {
      return samples
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((acc, s) => acc + s.value, 0);
    },
  };
}

/** GET <base>/metrics and parse it. */
export async function scrape(httpBase: string): Promise<Metrics> {
  const res = await fetch(`${httpBase}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return metricsFrom(await res.text());
}

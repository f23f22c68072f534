// docs/PROTOCOL.md's code tables against the code table (client/src/codes.ts): every
// documented code is in the table with the same status or close code, body, headers,
// retry advice and sentence, and every code of the table is documented. The docs are
// written by hand; this test is what keeps them from drifting.
import { readFileSync } from 'node:fs';
import t from 'tap';
import {
  ErrorFrame,
  type ErrorFrameCode,
  type HttpRefusal,
  NotReady,
  RETRY_DOC,
  Refusal,
  type Retry,
  refusalBody,
  ServerClose,
  type ServerCloseCode,
} from '../../client/dist/codes.js';
import { AUTH_FAILURES } from '../../dist/auth.js';
import { ErrorCode } from '../../dist/protocol.js';
import { TOKEN_REFUSALS } from '../../dist/upgrade.js';

const DOC = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');

/** The text under a heading, up to the next heading of the same or a higher level
 *  (a `# comment` line inside a fenced code block is not a heading). */
function section(md: string, heading: string): string {
  const lines = md.split('\n');
  const start = lines.indexOf(heading);
  if (start === -1) throw new Error(`PROTOCOL.md has no heading ${JSON.stringify(heading)}`);
  const level = heading.indexOf(' ');
  let end = start + 1;
  let fenced = false;
  while (end < lines.length) {
    const line = lines[end] as string;
    if (line.startsWith('```')) fenced = !fenced;
    const m = fenced ? null : /^(#+) /.exec(line);
    if (m !== null && (m[1] as string).length <= level) break;
    end++;
  }
  return lines.slice(start + 1, end).join('\n');
}

interface Table {
  header: string[];
  rows: Array<Record<string, string>>;
}

/** The Markdown tables in `text`, each row keyed by its column's header. */
function tables(text: string): Table[] {
  const out: Table[] = [];
  const cells = (line: string): string[] =>
    line
      .slice(1, -1)
      .split('|')
      .map((c) => c.trim());
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!(lines[i] as string).startsWith('|') || !(lines[i + 1] ?? '').startsWith('|---')) continue;
    const header = cells(lines[i] as string);
    const rows: Array<Record<string, string>> = [];
    for (i += 2; i < lines.length && (lines[i] as string).startsWith('|'); i++) {
      const row = cells(lines[i] as string);
      if (row.length !== header.length) throw new Error(`a row with ${row.length} cells under ${header.join(' | ')}: ${lines[i]}`);
      rows.push(Object.fromEntries(header.map((h, k) => [h, row[k] as string])));
    }
    out.push({ header, rows });
  }
  return out;
}

/** The one table whose header is `header`. */
function table(text: string, header: string[]): Table {
  const found = tables(text).filter((x) => x.header.join('|') === header.join('|'));
  if (found.length !== 1) throw new Error(`expected one table ${header.join(' | ')}, found ${found.length}`);
  return found[0] as Table;
}

/** The text inside backticks of a cell: `code` spans. */
const spans = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
/** The first backticked span, without the backticks (a reason, a code). */
const code = (cell: string): string => spans(cell)[0] ?? cell;

const REFUSALS: Array<[string, HttpRefusal]> = Object.entries(Refusal);
const TOKEN_HEADER = Refusal.MissingToken.headers;
const retryWord = (r: Retry): string => RETRY_DOC[r];

/** Where each entry of a table was documented: the row texts, for the sentence check. */
function seen<T>(): Map<T, string[]> {
  return new Map();
}
function note<T>(m: Map<T, string[]>, key: T, text: string): void {
  m.set(key, [...(m.get(key) ?? []), text]);
}

/** Two header sets are the same (names and values). */
function sameHeaders(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => b[k] === a[k]);
}

t.test('the HTTP tables (upgrades, token reasons, /publish, /presence, /control/*, others) say what the code table says', async (t) => {
  const documented = seen<HttpRefusal>();
  const upgrades = section(DOC, '### Refused upgrades');
  const httpTables: Array<[name: string, tbl: Table]> = [
    ['refused upgrades', table(upgrades, ['Status', 'Body', 'When', 'Retry'])],
    ['POST /publish', table(section(DOC, '## POST /publish'), ['Status', 'Body', 'When', 'Retry'])],
    ['GET /presence', table(section(DOC, '### GET /presence'), ['Status', 'Body', 'When', 'Retry'])],
    ['POST /control/*', table(section(DOC, '### POST /control/*'), ['Status', 'Body', 'When', 'Retry'])],
    ['other endpoints', table(section(DOC, '## Other HTTP endpoints'), ['Request', 'Status', 'Body'])],
  ];
  for (const [name, tbl] of httpTables) {
    for (const row of tbl.rows) {
      const [bodyText, ...rest] = spans(row['Body'] as string);
      if (bodyText === undefined || !bodyText.startsWith('{"error"')) continue; // 2xx answers, uWS's own
      const body = JSON.parse(bodyText) as Record<string, unknown>;
      const status = Number(row['Status']);
      const where = `${name}: ${status} ${bodyText}`;
      const headers = Object.fromEntries(
        rest
          .map((s) => /^([A-Za-z-]+): (.+)$/.exec(s))
          .filter((m): m is RegExpExecArray => m !== null && m[1] !== 'Connection' && m[1] !== 'Content-Type')
          .map((m) => [m[1] as string, m[2] as string]),
      );
      // `<reason>` stands for every token refusal with that status. Two refusals may share
      // a body and differ by a header (the 405s' `Allow`): the row's headers pick one.
      const sameBody = REFUSALS.filter(([, r]) => r.error === body['error'] && r.reason === body['reason']).map(([, r]) => r);
      const entries =
        body['reason'] === '<reason>'
          ? REFUSALS.filter(([, r]) => r.headers === TOKEN_HEADER).map(([, r]) => r)
          : sameBody.length > 1
            ? sameBody.filter((r) => sameHeaders(r.headers ?? {}, headers))
            : sameBody;
      t.ok(entries.length > 0, `${where}: in the code table`);
      const text = Object.values(row).join(' | ');
      const closes = text.includes('`Connection: close`') || text.includes('closed after the reply');
      for (const entry of entries) {
        t.equal(status, entry.status, `${where}: status`);
        if (body['reason'] !== '<reason>') {
          const { error, reason } = body;
          t.strictSame({ error, ...(reason !== undefined ? { reason } : {}) }, refusalBody(entry), `${where}: body`);
        }
        t.strictSame(headers, entry.headers ?? {}, `${where}: headers`);
        t.equal(closes, entry.closeConnection === true, `${where}: the connection is closed after the reply, or not`);
        if (row['Retry'] !== undefined && row['Retry'] !== 'per reason, below') {
          t.equal(row['Retry'], retryWord(entry.retry), `${where}: retry`);
        }
        note(documented, entry, text);
      }
    }
  }

  // The token reasons: also the `reason` of auth_failed frames and a metric label.
  const reasons = table(upgrades, ['Reason', 'Status', 'When', 'Retry']);
  const tokenRefusals = new Set(REFUSALS.filter(([, r]) => r.headers === TOKEN_HEADER || r === Refusal.KeyUnavailable).map(([, r]) => r));
  for (const row of reasons.rows) {
    const reason = code(row['Reason'] as string);
    const entry = [...tokenRefusals].find((r) => r.reason === reason);
    if (entry === undefined) {
      t.fail(`token reason ${reason}: documented but not in the code table`);
      continue;
    }
    t.equal(Number(row['Status']), entry.status, `token reason ${reason}: status`);
    t.equal(row['Retry'], retryWord(entry.retry), `token reason ${reason}: retry`);
    note(documented, entry, Object.values(row).join(' | '));
  }
  t.strictSame(
    reasons.rows.map((r) => code(r['Reason'] as string)).sort(),
    [...tokenRefusals].map((r) => r.reason).sort(),
    'every token reason, once',
  );

  for (const [name, entry] of REFUSALS) {
    const rows = documented.get(entry);
    t.ok(rows !== undefined, `Refusal.${name} is documented`);
    t.ok(
      rows?.some((text) => text.includes(entry.doc)),
      `Refusal.${name}: a row says ${JSON.stringify(entry.doc)}`,
    );
  }
});

t.test('the `error` frame table says what the code table says', async (t) => {
  const tbl = table(section(DOC, '### `error`'), ['Code', 'Meaning', 'Connection', 'Retry']);
  const entries: Array<[string, ErrorFrameCode]> = Object.entries(ErrorFrame);
  for (const row of tbl.rows) {
    const c = code(row['Code'] as string);
    const entry = entries.find(([, e]) => e.code === c)?.[1];
    if (entry === undefined) {
      t.fail(`error code ${c}: documented but not in the code table`);
      continue;
    }
    t.equal(row['Retry'], retryWord(entry.retry), `${c}: retry`);
    t.ok((row['Meaning'] as string).includes(entry.doc), `${c}: the row says ${JSON.stringify(entry.doc)}`);
    t.match(row['Connection'], /^stays open/, `${c}: no error closes the connection by itself`);
  }
  t.strictSame(tbl.rows.map((r) => code(r['Code'] as string)).sort(), entries.map(([, e]) => e.code).sort(), 'every error code, once');
  t.strictSame(Object.values(ErrorCode).sort(), entries.map(([, e]) => e.code).sort(), "the gateway's ErrorCode is the table's");
});

t.test('the close code table says what the code table says', async (t) => {
  const tbl = table(section(DOC, '### Close codes'), ['Code', 'Reason text', 'Sent by', 'When', 'Retry']);
  const entries: Array<[string, ServerCloseCode]> = Object.entries(ServerClose);
  const herald = tbl.rows.filter((r) => r['Sent by'] === 'Herald');
  for (const row of herald) {
    const closeCode = Number(row['Code']);
    const reason = code(row['Reason text'] as string);
    const entry = entries.find(([, c]) => c.reason === reason)?.[1];
    if (entry === undefined) {
      t.fail(`close ${closeCode} ${reason}: documented but not in the code table`);
      continue;
    }
    t.equal(closeCode, entry.code, `${reason}: close code`);
    t.equal(row['Retry'], retryWord(entry.retry), `${reason}: retry`);
    t.ok((row['When'] as string).includes(entry.doc), `${reason}: the row says ${JSON.stringify(entry.doc)}`);
  }
  for (const row of tbl.rows.filter((r) => r['Sent by'] !== 'Herald')) {
    t.ok(Object.values(RETRY_DOC).includes(row['Retry'] as string), `close ${row['Code']} (not Herald's): a retry word`);
  }
  t.strictSame(herald.map((r) => code(r['Reason text'] as string)).sort(), entries.map(([, c]) => c.reason).sort(), 'every close, once');
});

t.test("/readyz's 503 row names every not-ready reason, with the words the table gives it", async (t) => {
  const rows = table(section(DOC, '## Other HTTP endpoints'), ['Request', 'Status', 'Body']).rows.filter(
    (r) => r['Request'] === '`GET /readyz`' && r['Status'] === '503',
  );
  t.equal(rows.length, 1, 'one 503 row');
  const body = rows[0]?.['Body'] ?? '';
  const documented = [...body.matchAll(/"reason":"([a-z_]+)"|`"([a-z_]+)"`/g)].map((m) => m[1] ?? m[2]);
  t.strictSame(
    documented,
    Object.values(NotReady).map((r) => r.reason),
    'the reasons, in the order the gateway checks them',
  );
  for (const r of Object.values(NotReady)) {
    // `{"status":"unavailable","reason":"starting"}` (starting up), `"draining"` (shutting down), …
    const said = [`"${r.reason}"}\` (${r.doc}`, `"${r.reason}"\` (${r.doc}`].some((form) => body.includes(form));
    t.ok(said, `${r.reason}: followed by (${r.doc}`);
  }
});

t.test('the code table is consistent in itself', async (t) => {
  // A body (error, reason) names one entry, or several told apart by their headers (the 405s' `Allow`).
  const answers = REFUSALS.map(([, r]) => `${r.error}/${r.reason ?? ''}/${JSON.stringify(r.headers ?? {})}`);
  t.equal(new Set(answers).size, answers.length, 'each refusal answer (error, reason, headers) is one entry');
  const bodies = new Map<string, HttpRefusal[]>();
  for (const [, r] of REFUSALS) {
    const key = `${r.error}/${r.reason ?? ''}`;
    bodies.set(key, [...(bodies.get(key) ?? []), r]);
  }
  const shared = [...bodies].filter(([, entries]) => entries.length > 1);
  for (const [body, entries] of shared)
    t.ok(
      entries.every((r) => r.reason === undefined),
      `${body}: only generic answers share a body`,
    );
  const closes = Object.values(ServerClose).map((c) => c.reason);
  t.equal(new Set(closes).size, closes.length, 'each close reason is one entry');
  for (const c of closes) t.ok(new TextEncoder().encode(c).length <= 123, `${c} fits a close frame`);
  for (const f of AUTH_FAILURES) t.equal(TOKEN_REFUSALS.get(f)?.reason, f, `the gateway answers token failure ${f} with its own refusal`);
  t.equal(TOKEN_REFUSALS.size, AUTH_FAILURES.length, 'and with nothing else');
});

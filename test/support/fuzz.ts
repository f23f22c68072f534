// Shared pieces of the fuzz tests (test/integration/fuzz-*.test.ts): a fixed,
// overridable seed, hostile strings, JSON texts with raw tokens (number literals JSON
// allows but JSON.stringify never writes, duplicate keys, deep nesting), text and byte
// mutations, a raw HTTP exchange over net.Socket, and the gateway's memory.
// The oracles live with their tests; everything here only generates or measures.
import { isUtf8 } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import type { Test } from 'tap';
import { TestClient } from './client.js';
import type { GatewayProcess } from './gateway.js';
import { INSPECTOR_STDERR, type Memory, memoryAfterGc } from './inspector.js';
import { scrape } from './prometheus.js';
import { token } from './tokens.js';

/**
 * The seed of a fuzz file: HERALD_FUZZ_SEED when set (to replay a failure, or to
 * explore with another), else the file's fixed default, so every run is reproducible.
 */
export function fuzzSeed(fallback: number): number {
  const raw = process.env['HERALD_FUZZ_SEED']?.trim() ?? '';
  if (raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`HERALD_FUZZ_SEED: expected an integer, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * The lanes of one phase share a gate: the first lane to fail owns it, and from then
 * on the other lanes' runs pass without doing anything, so that only that failure is
 * shrunk (on real connections, shrinking is what takes time) and reported.
 */
export interface FailureGate {
  owner: string | undefined;
}

/**
 * Runs `run` on `numRuns` values of `arb` from `seed` (shrinking a failure) and
 * returns undefined, or a short report: the error, the shrunk counterexample as `show`
 * prints it, and the seed and path that replay it (fc.assert's `seed` and `path`).
 * fast-check's own report prints every byte of every frame of a batch: unreadable.
 */
export async function fuzzCheck<T>(
  gate: FailureGate,
  name: string,
  arb: fc.Arbitrary<T>,
  run: (v: T) => Promise<void>,
  seed: number,
  numRuns: number,
  show: (v: T) => string,
): Promise<string | undefined> {
  const property = fc.asyncProperty(arb, async (v) => {
    if (gate.owner !== undefined && gate.owner !== name) return;
    try {
      await run(v);
    } catch (err) {
      gate.owner ??= name;
      if (gate.owner === name) throw err;
    }
  });
  const d = await fc.check(property, {
    seed,
    numRuns,
    // Runs and shrinking are on real connections: bounded, so a gateway that died cannot
    // keep a file running for minutes (tap's limit is 120 s a file), yet loose enough for
    // a loaded CI machine (a lane of closers takes about 25 s there). Hitting it fails.
    interruptAfterTimeLimit: 60_000,
    markInterruptAsFailure: true,
  });
  if (!d.failed) return undefined;
  const err = d.errorInstance instanceof Error ? d.errorInstance.message : String(d.errorInstance);
  const example = d.counterexample === null ? '(none)' : show(d.counterexample[0]);
  return (
    `${name} failed after ${d.numRuns} runs and ${d.numShrinks} shrinks${d.interrupted ? ' (interrupted)' : ''}; ` +
    `replay with { seed: ${d.seed}, path: "${d.counterexamplePath ?? ''}" }\n` +
    `  error: ${err.slice(0, 3000)}\n  counterexample: ${example.slice(0, 3000)}`
  );
}

/** How the gateway ended, when it did: its exit, stderr and last log lines. */
export function deathOf(gw: GatewayProcess): string | undefined {
  if (gw.proc.exitCode === null && gw.proc.signalCode === null) return undefined;
  const tail = gw.logs
    .slice(-5)
    .map((l) => JSON.stringify(l).slice(0, 500))
    .join('\n');
  return `the gateway exited (code ${gw.proc.exitCode}, signal ${gw.proc.signalCode}); stderr: ${gw.stderr().slice(-3000)}\nlast log lines:\n${tail}`;
}

/** Runs `lane(i)` for i in 0..n-1 concurrently (fc.assert runs one property at a time). */
export async function lanes(n: number, lane: (i: number) => Promise<void>): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => lane(i)));
}

/** `arb` with probability `p`, else undefined (fc.option only makes undefined the rarer one). */
export function maybe<T>(arb: fc.Arbitrary<T>, p: number): fc.Arbitrary<T | undefined> {
  const weight = Math.round(p * 1000);
  return fc.oneof({ weight, arbitrary: arb }, { weight: 1000 - weight, arbitrary: fc.constant(undefined) });
}

// ---------------------------------------------------------------------------------
// Hostile strings

/**
 * Characters that break naive code: C0 controls, DEL, NBSP, the JS line separators,
 * BOM, U+FFFD, lone and paired surrogates, a combining mark, JSON's structural
 * characters, HTML and URL metacharacters.
 */
const HOSTILE_CHARS: readonly string[] = [
  '\u0000',
  '\u0001',
  '\u0008',
  '\u001b',
  '\u001f',
  '\u007f',
  '\u0080',
  '\u00a0',
  '\u00ff',
  '\u2028',
  '\u2029',
  '\ufeff',
  '\ufffd',
  '\uffff',
  '\ud800',
  '\udbff',
  '\udc00',
  '\udfff',
  '\ud83d\ude00',
  '\u{10ffff}',
  '\u0301',
  '"',
  '\\',
  '/',
  '{',
  '}',
  '[',
  ']',
  ':',
  ',',
  '<',
  '>',
  '&',
  "'",
  '%',
  '+',
  '=',
  ';',
  '\n',
  '\r',
  '\t',
  ' ',
  '*',
  '.',
  '@',
  '-',
  '_',
];

/** One "character": hostile, any code point (a lone surrogate included), or printable ASCII. */
const hostileUnit: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_CHARS) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x10ffff }).map((cp) => String.fromCodePoint(cp)) },
  { weight: 2, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
);

/**
 * A string of hostile units; `minLength`/`maxLength` count units (1 or 2 UTF-16 code
 * units each). Short strings unless `long`, which spreads lengths up to `maxLength`.
 */
export function hostileString(c: { minLength?: number; maxLength: number; long?: boolean }): fc.Arbitrary<string> {
  return fc.string({
    unit: hostileUnit,
    minLength: c.minLength ?? 0,
    maxLength: c.maxLength,
    ...(c.long === true ? { size: 'max' as const } : {}),
  });
}

/** Length in code points, as JSON Schema (ajv) counts `minLength`/`maxLength`. */
export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// ---------------------------------------------------------------------------------
// JSON texts with raw tokens

/** A token written as is: a number literal such as `1.0`, `-0` or `1e400`, or any text. */
export class Raw {
  constructor(readonly text: string) {}
}

/** An object as its list of entries, so a key may repeat (JSON.parse keeps the last). */
export class Obj {
  constructor(readonly entries: ReadonlyArray<readonly [string, J]>) {}
}

export type J = Raw | Obj | null | boolean | number | string | J[];

/** JSON text of `v`, with `pad` (JSON whitespace) around every structural character. */
export function render(v: J, pad = ''): string {
  if (v instanceof Raw) return v.text;
  if (v instanceof Obj) {
    return `{${pad}${v.entries.map(([k, x]) => `${JSON.stringify(k)}${pad}:${pad}${render(x, pad)}`).join(`${pad},${pad}`)}${pad}}`;
  }
  if (Array.isArray(v)) return `[${pad}${v.map((x) => render(x, pad)).join(`${pad},${pad}`)}${pad}]`;
  return JSON.stringify(v);
}

export const jsonPad: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constant('') },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r'), minLength: 1, maxLength: 3 }) },
);

/**
 * Number literals JSON allows, chosen to hit edges: -0, 2^53 ± 1, the largest and
 * smallest doubles, overflow to Infinity (1e309) and underflow to 0, huge integers,
 * exponent forms. JSON.parse decides what each becomes; the oracles use its result.
 */
export const numberLiteral: fc.Arbitrary<Raw> = fc
  .oneof(
    fc.constantFrom(
      '0',
      '-0',
      '0.0',
      '-0.0',
      '1.0',
      '1e2',
      '1E+2',
      '1e-2',
      '0.1e1',
      '-1',
      '1.5',
      '64',
      '65',
      '9007199254740991',
      '9007199254740992',
      '9007199254740993',
      '-9007199254740993',
      '1e308',
      '-1e308',
      '1e309',
      '-1e309',
      '1.7976931348623157e308',
      '1.7976931348623159e308',
      '5e-324',
      '1e-400',
      '-1e-400',
      '2.2250738585072014e-308',
      '123456789012345678901234567890',
      `1${'0'.repeat(400)}`,
      `0.${'0'.repeat(400)}1`,
    ),
    fc.integer().map(String),
    fc.maxSafeNat().map(String),
    fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => String(n)),
  )
  .map((t) => new Raw(t));

/** `depth` nested arrays (or objects) around `inner`, as text: never built as a value. */
export function nested(depth: number, kind: 'array' | 'object' | 'mixed', inner = '1'): string {
  switch (kind) {
    case 'array':
      return `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;
    case 'object':
      return `${'{"a":'.repeat(depth)}${inner}${'}'.repeat(depth)}`;
    case 'mixed':
      return `${'[{"a":'.repeat(depth)}${inner}${'}]'.repeat(depth)}`;
  }
}

// ---------------------------------------------------------------------------------
// Mutations

export type TextMutation =
  | { op: 'insert'; at: number; s: string }
  | { op: 'delete'; at: number; n: number }
  | { op: 'replace'; at: number; s: string }
  | { op: 'truncate'; at: number }
  | { op: 'duplicate'; at: number; n: number };

export const textMutation: fc.Arbitrary<TextMutation> = fc.oneof(
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    s: fc.oneof(hostileUnit, fc.constantFrom('{', '}', '"', ',', ':', 'null', '[]', '\\u', '\\x', '"type"', '\u0000')),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ op: fc.constant('replace' as const), at: fc.nat(), s: hostileUnit }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 12 }) }),
);

/** Applies mutations to text (positions taken modulo the length, so any nat is valid). */
export function mutateText(text: string, muts: readonly TextMutation[]): string {
  let s = text;
  for (const m of muts) {
    const at = m.at % (s.length + 1);
    switch (m.op) {
      case 'insert':
        s = s.slice(0, at) + m.s + s.slice(at);
        break;
      case 'delete':
        s = s.slice(0, at) + s.slice(at + m.n);
        break;
      case 'replace':
        s = s.slice(0, at) + m.s + s.slice(at + 1);
        break;
      case 'truncate':
        s = s.slice(0, at);
        break;
      case 'duplicate':
        s = s.slice(0, at + m.n) + s.slice(at, at + m.n) + s.slice(at + m.n);
        break;
    }
  }
  return s;
}

/**
 * Byte sequences that are not UTF-8: lone continuation bytes, overlong forms, UTF-16
 * surrogates encoded as UTF-8, code points past U+10FFFF, bytes never used, and
 * sequences cut short.
 */
export const INVALID_UTF8: readonly (readonly number[])[] = [
  [0x80],
  [0xbf],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xfe],
  [0xff],
  [0xc3],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
  [0xc3, 0x28],
  [0xe2, 0x28, 0xa1],
];

/** Inserts raw bytes into `buf` (positions modulo its length). */
export function mutateBytes(buf: Buffer, muts: ReadonlyArray<{ at: number; bytes: readonly number[] }>): Buffer {
  let b = buf;
  for (const m of muts) {
    const at = m.at % (b.length + 1);
    b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
  }
  return b;
}

export function isValidUtf8(b: Buffer): boolean {
  return isUtf8(b);
}

// ---------------------------------------------------------------------------------
// Raw HTTP over a socket: every byte is ours to choose (Node's http client refuses
// control characters and rewrites some headers).

export interface RawResponse {
  status: number;
  /** Lower-cased names; a repeated header keeps its first value. */
  headers: Record<string, string>;
  /** The body (Content-Length bytes), or whatever followed a 101's header block. */
  body: Buffer;
}

export interface RawExchange {
  /** The parsed response, if a complete one arrived. */
  response: RawResponse | undefined;
  /** Bytes received in all, response included. */
  received: number;
  /** How the socket ended: closed by the server, our own deadline, or an error code. */
  end: 'closed' | 'deadline' | 'kept' | string;
  /** The socket, still open when `keep` asked for it and the response was a 101. */
  socket: Socket | undefined;
}

export interface RawOptions {
  port: number;
  localAddress?: string;
  /** Written first. */
  head: Buffer;
  /** Written after the head, unless `waitBeforeBody` sees a response first. */
  body?: readonly Buffer[];
  /** Wait this long for a response before writing the body (a server may answer from the headers alone). */
  waitBeforeBody?: number;
  /** Give up after this many ms. */
  deadlineMs: number;
  /** After a complete non-101 response: whether to wait (up to the deadline) for the server to close. */
  awaitClose?: boolean | ((res: RawResponse) => boolean);
  /** After a 101 (and its first WebSocket frame): keep the socket open and hand it back, instead of destroying it. */
  keep?: boolean;
}

/** The length of the complete WebSocket frame (unmasked, as servers send) at the start of `b`, or undefined. */
function wsFrameLength(b: Buffer): number | undefined {
  if (b.length < 2) return undefined;
  const len = (b[1] as number) & 0x7f;
  const total =
    len < 126
      ? 2 + len
      : len === 126
        ? b.length < 4
          ? undefined
          : 4 + b.readUInt16BE(2)
        : b.length < 10
          ? undefined
          : 10 + Number(b.readBigUInt64BE(2));
  return total !== undefined && b.length >= total ? total : undefined;
}

/** The text of the first WebSocket frame in `b` (after a 101). */
export function wsFrameText(b: Buffer): string {
  const len = (b[1] as number) & 0x7f;
  const start = len < 126 ? 2 : len === 126 ? 4 : 10;
  return b.subarray(start, wsFrameLength(b)).toString();
}

/** A masked close frame with status 1000, as a client sends it. */
export const WS_CLOSE_FRAME = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);

/** Parses one response from `buf`: undefined while incomplete (a 101 waits for its first WebSocket frame). */
function parseResponse(buf: Buffer): RawResponse | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (m === null) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify((lines[0] ?? '').slice(0, 100))}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed response header line ${JSON.stringify(line.slice(0, 100))}`);
    const name = line.slice(0, colon).toLowerCase();
    headers[name] ??= line.slice(colon + 1).trim();
  }
  const status = Number(m[1]);
  const rest = buf.subarray(end + 4);
  if (status === 101) return wsFrameLength(rest) !== undefined ? { status, headers, body: rest } : undefined;
  const length = Number(headers['content-length'] ?? '0');
  if (rest.length < length) return undefined;
  if (rest.length > length) throw new Error(`${rest.length - length} bytes after a ${status} response`);
  return { status, headers, body: rest };
}

export function rawExchange(o: RawOptions): Promise<RawExchange> {
  return new Promise((resolve) => {
    const socket = connect({ port: o.port, host: '127.0.0.1', ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}) });
    let buf = Buffer.alloc(0);
    let response: RawResponse | undefined;
    let error: string | undefined;
    let done = false;
    let bodySent = o.body === undefined || o.body.length === 0;
    const finish = (end: RawExchange['end']): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      if (bodyTimer !== undefined) clearTimeout(bodyTimer);
      const keep = end === 'kept';
      if (!keep) socket.destroy();
      resolve({ response, received: buf.length, end, socket: keep ? socket : undefined });
    };
    const deadline = setTimeout(() => finish('deadline'), o.deadlineMs);
    const sendBody = (): void => {
      // Held back until `waitBeforeBody` passes: a server that answered from the headers alone gets no body.
      if (bodySent || done || response !== undefined) return;
      bodySent = true;
      for (const chunk of o.body ?? []) socket.write(chunk);
    };
    const bodyTimer = o.waitBeforeBody === undefined ? undefined : setTimeout(sendBody, o.waitBeforeBody);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (response !== undefined) return;
      try {
        response = parseResponse(buf);
      } catch (err) {
        response = { status: -1, headers: {}, body: Buffer.from((err as Error).message) };
      }
      if (response === undefined) return;
      if (response.status === 101) {
        if (o.keep === true) {
          socket.removeAllListeners('data');
          finish('kept');
        } else {
          finish('closed');
        }
      } else if (!(typeof o.awaitClose === 'function' ? o.awaitClose(response) : o.awaitClose === true)) {
        finish('closed');
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => finish(error ?? 'closed'));
    socket.write(o.head);
    if (o.waitBeforeBody === undefined) sendBody();
  });
}

// ---------------------------------------------------------------------------------
// Memory

export const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MB`;

// ---------------------------------------------------------------------------------
// After a run

/**
 * The gateway survived: its process runs, /healthz answers, a new client connects and
 * gets a pong, and it logged no error (a crash caught by a handler logs one).
 */
export async function checkAlive(t: Test, gw: GatewayProcess): Promise<void> {
  t.equal(gw.proc.exitCode, null, 'the gateway process has not exited');
  t.equal(gw.proc.signalCode, null, 'and was not killed by a signal');
  const res = await fetch(`${gw.http}/healthz`, { signal: AbortSignal.timeout(5000) });
  t.equal(res.status, 200, '/healthz answers 200');
  t.same(await res.json(), { status: 'ok' });
  const c = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token({ sub: 'after-the-fuzz' })}` } });
  t.same((await c.request({ type: 'ping', id: 'alive' })).type, 'pong', 'a new client connects and gets a pong');
  await c.close();
  const bad = gw.logs.filter((l) => l.level === 'error' || l.level === 'fatal' || l.level === 'raw');
  t.same(bad.slice(0, 5), [], 'no error, fatal or non-JSON log line');
  t.equal(gw.stderr().replace(INSPECTOR_STDERR, ''), '', "nothing on stderr but the inspector's own lines");
}

/**
 * Asserts that a run leaked nothing: the gateway's memory after a forced full GC,
 * measured once, against the same measurement before the run. The heap after a full
 * GC holds only what is still referenced, so it is the leak signal; RSS also counts
 * uWS's C++ buffers, which a GC does not touch.
 */
export async function checkNoLeak(t: Test, gw: GatewayProcess, before: Memory): Promise<void> {
  const after = await memoryAfterGc(gw);
  const pct = (a: number, b: number): string => `${(((a - b) / b) * 100).toFixed(1)}%`;
  t.comment(
    `after a forced GC: heap used ${mb(before.heapUsed)} -> ${mb(after.heapUsed)} (${pct(after.heapUsed, before.heapUsed)}), ` +
      `RSS ${mb(before.rss)} -> ${mb(after.rss)} (${pct(after.rss, before.rss)}), external ${mb(before.external)} -> ${mb(after.external)}`,
  );
  // 10% plus 2 MB: code compiled by the run (V8 keeps it) is not a leak, a retained frame per request is.
  t.ok(
    after.heapUsed <= before.heapUsed * 1.1 + 2 * 1048576,
    `heap used after (${mb(after.heapUsed)}) <= 1.1 × before (${mb(before.heapUsed)}) + 2 MB`,
  );
  t.ok(after.rss <= before.rss * 1.1, `RSS after (${mb(after.rss)}) <= 1.1 × before (${mb(before.rss)})`);
}

/** RSS and the V8 heap as /metrics reports them, for the test log (where memory went). */
export async function memoryReport(gw: GatewayProcess): Promise<string> {
  const m = await scrape(gw.http);
  const v = (name: string): string => mb(m.sum(name));
  return `rss ${v('herald_process_resident_memory_bytes')}, heap used ${v('herald_nodejs_heap_size_used_bytes')} of ${v('herald_nodejs_heap_size_total_bytes')}, external ${v('herald_nodejs_external_memory_bytes')}`;
}

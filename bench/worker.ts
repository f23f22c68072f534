// A load-generating child process: holds a slice of the bench's WebSocket clients
// (well under the per-process open-files limit), bound to its own loopback source
// address, and measures what arrives. Driven by the runner over IPC.
// Every delivery is checked against its recipient: a targeted payload names its user
// ("u"), and one that reaches another user's connection is counted as misrouted.
import { performance } from 'node:perf_hooks';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { type Histogram, newHistogram, record } from './stats.js';

export type Target = 'herald' | 'baseline';

export type WorkerCommand =
  | { cmd: 'connect'; from: number; to: number; urls: string[]; target: Target; secret: string; concurrency: number; localAddress: string }
  | { cmd: 'step'; step: number }
  /** `sent` messages of `kind`: targeted message n went to user n mod `users`; listed ones one each to the churned users. */
  | { cmd: 'report'; step: number; sent: number; kind: 'targeted' | 'broadcast' | 'listed'; users: number }
  | { cmd: 'churn'; fraction: number; concurrency: number }
  /** Drop every connection (the disconnect scenario); the process stays for `close`. */
  | { cmd: 'drop' }
  | { cmd: 'close' };

export interface StepReport {
  /** Deliveries to their intended connection, duplicates and misrouted ones not counted. */
  received: number;
  expected: number;
  /** Per recipient: the sum over connections of max(0, expected − received). */
  lost: number;
  /** The same notification (step and sequence number) again on one connection. */
  duplicates: number;
  /** Received after a later one of the same step on that connection (counted as received too). */
  reordered: number;
  /** Notifications whose payload names another user than the connection's. */
  misrouted: number;
  /** Wall-clock ms of the step's last receipt (0 = none): delivered/s ends there. */
  lastReceiptAt: number;
  latency: Histogram;
  cpuMicros: number;
}

export type WorkerEvent =
  | { ev: 'connected'; ok: number; failed: number; elapsedMs: number; connectMs: Histogram; cpuMicros: number; errors: string[] }
  | { ev: 'report'; step: number; report: StepReport }
  | { ev: 'churned'; users: number[]; ok: number; failed: number; elapsedMs: number }
  | { ev: 'dropped'; dropped: number; cpuMicros: number }
  | { ev: 'closed' };

const now = (): number => performance.timeOrigin + performance.now();
const send = (e: WorkerEvent): void => {
  process.send?.(e);
};

interface Conn {
  user: number;
  ws: WebSocket | undefined;
  /** Highest sequence number of the current step received, -1 = none yet. */
  lastN: number;
  /** Sequence numbers of the current step received: a repeat is a duplicate, an
   *  earlier one after a later one only out of order. Bounded by the step's messages
   *  for this connection; cleared by `step`. */
  seen: Set<number>;
  /** Deliveries in the current step (reset by `step`). */
  got: number;
}

let conns: Conn[] = [];
let config: Extract<WorkerCommand, { cmd: 'connect' }> | undefined;
let step = -1;
const steps = new Map<number, StepReport>();
let cpuAtStep = process.cpuUsage();
/** Users this worker dropped and reconnected in the last churn. */
let churned = new Set<number>();

function stepReport(s: number): StepReport {
  let r = steps.get(s);
  if (r === undefined) {
    r = {
      received: 0,
      expected: 0,
      lost: 0,
      duplicates: 0,
      reordered: 0,
      misrouted: 0,
      lastReceiptAt: 0,
      latency: newHistogram(),
      cpuMicros: 0,
    };
    steps.set(s, r);
  }
  return r;
}

const NOTIFICATION = Buffer.from('{"type":"notification"');
// "u" (the intended user) is in targeted payloads only; broadcasts reach everyone.
const STAMP = /"s":(\d+),"n":(\d+),"t":([\d.]+)(?:,"u":(\d+))?/;

function onMessage(conn: Conn, raw: WebSocket.RawData): void {
  // Only the stamp at the end of the frame is read: a full JSON.parse per frame would
  // make this process, not the gateway, the bench's limit.
  const data = raw as Buffer;
  if (data.compare(NOTIFICATION, 0, NOTIFICATION.length, 0, NOTIFICATION.length) !== 0) return;
  const at = data.lastIndexOf('"s":');
  const m = at === -1 ? null : STAMP.exec(data.toString('latin1', at));
  if (m === null) return;
  const s = Number(m[1]);
  const n = Number(m[2]);
  const t = Number(m[3]);
  const r = stepReport(s);
  const arrived = now();
  r.lastReceiptAt = arrived;
  if (m[4] !== undefined && Number(m[4]) !== conn.user) {
    r.misrouted++;
    return;
  }
  if (s === step) {
    if (conn.seen.has(n)) {
      r.duplicates++;
      return;
    }
    conn.seen.add(n);
    if (n < conn.lastN) r.reordered++;
    else conn.lastN = n;
    conn.got++;
  }
  r.received++;
  record(r.latency, arrived - t);
}

async function tokenFor(user: number, secret: Uint8Array): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(String(user))
    .setExpirationTime(Math.floor(Date.now() / 1000) + 24 * 3600)
    .sign(secret);
}

/** Opens one connection; resolves with the time to the `connected` frame, or an error text. */
function open(conn: Conn, c: NonNullable<typeof config>, token: string | undefined): Promise<number | string> {
  return new Promise((resolve) => {
    const started = now();
    const url = c.urls[conn.user % c.urls.length] as string;
    const ws = new WebSocket(c.target === 'baseline' ? `${url}?user=${conn.user}` : url, {
      perMessageDeflate: false,
      handshakeTimeout: 30_000,
      localAddress: c.localAddress,
      ...(token !== undefined ? { headers: { authorization: `Bearer ${token}` } } : {}),
    });
    let settled = false;
    const done = (v: number | string): void => {
      if (!settled) {
        settled = true;
        resolve(v);
      }
    };
    ws.once('message', () => {
      conn.ws = ws;
      ws.on('message', (d) => onMessage(conn, d));
      done(now() - started);
    });
    let upgraded = false;
    ws.once('open', () => {
      upgraded = true;
    });
    ws.once('error', (err) => {
      if (!upgraded) done(err.message);
    });
    ws.once('unexpected-response', (_req, res) => done(`HTTP ${res.statusCode}`));
    ws.once('close', (code) => {
      if (conn.ws === ws) conn.ws = undefined;
      done(upgraded && code === 1006 ? DROPPED : 'closed before connected');
    });
  });
}

/**
 * This uWS build sometimes closes a socket it has just upgraded after an await, before
 * `connected` (uNetworking/uWebSockets#1928): a client reconnects, and so does the
 * bench, twice at most; the count is reported among the connect errors.
 */
const DROPPED = 'dropped right after the upgrade (uWebSockets#1928), reconnected';

/** Opens connections for `list` with at most `concurrency` in flight. */
async function openMany(list: Conn[], c: NonNullable<typeof config>, concurrency: number) {
  const secret = new TextEncoder().encode(c.secret);
  const tokens = c.target === 'herald' ? await Promise.all(list.map((x) => tokenFor(x.user, secret))) : [];
  const connectMs = newHistogram();
  const errors = new Map<string, number>();
  let ok = 0;
  let next = 0;
  const started = now();
  async function lane(): Promise<void> {
    while (next < list.length) {
      const i = next++;
      let r = await open(list[i] as Conn, c, tokens[i]);
      for (let retry = 0; r === DROPPED && retry < 2; retry++) {
        errors.set(r, (errors.get(r) ?? 0) + 1);
        r = await open(list[i] as Conn, c, tokens[i]);
      }
      if (typeof r === 'number') {
        ok++;
        record(connectMs, r);
      } else {
        errors.set(r, (errors.get(r) ?? 0) + 1);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, lane));
  return {
    ok,
    failed: list.length - ok,
    elapsedMs: now() - started,
    connectMs,
    errors: [...errors].map(([e, n]) => `${n}× ${e}`),
  };
}

/** What one connected client should have received of the step's messages. */
function expectedFor(c: Conn, m: Extract<WorkerCommand, { cmd: 'report' }>): number {
  if (m.kind === 'broadcast') return m.sent;
  if (m.kind === 'listed') return churned.has(c.user) ? 1 : 0;
  return c.user < m.sent ? Math.floor((m.sent - 1 - c.user) / m.users) + 1 : 0;
}

/**
 * What this worker's connected clients should have received, and what they miss,
 * counted per recipient: one client's surplus (there is none without duplicates or
 * misrouting, both counted apart) cannot hide another's loss.
 */
function tally(m: Extract<WorkerCommand, { cmd: 'report' }>): { expected: number; lost: number } {
  let expected = 0;
  let lost = 0;
  for (const c of conns) {
    if (c.ws === undefined) continue;
    const e = expectedFor(c, m);
    expected += e;
    lost += Math.max(0, e - (m.step === step ? c.got : 0));
  }
  return { expected, lost };
}

process.on('message', (m: WorkerCommand) => {
  void handle(m);
});

async function handle(m: WorkerCommand): Promise<void> {
  switch (m.cmd) {
    case 'connect': {
      config = m;
      conns = [];
      for (let u = m.from; u < m.to; u++) conns.push({ user: u, ws: undefined, lastN: -1, seen: new Set(), got: 0 });
      const cpu = process.cpuUsage();
      const r = await openMany(conns, m, m.concurrency);
      const used = process.cpuUsage(cpu);
      send({ ev: 'connected', ...r, cpuMicros: used.user + used.system });
      return;
    }
    case 'step':
      step = m.step;
      for (const c of conns) {
        c.lastN = -1;
        c.seen.clear();
        c.got = 0;
      }
      cpuAtStep = process.cpuUsage();
      return;
    case 'report': {
      const r = stepReport(m.step);
      const used = process.cpuUsage(cpuAtStep);
      send({ ev: 'report', step: m.step, report: { ...r, ...tally(m), cpuMicros: used.user + used.system } });
      return;
    }
    case 'churn': {
      if (config === undefined) return;
      const every = Math.max(1, Math.round(1 / m.fraction));
      const victims = conns.filter((_, i) => i % every === 0);
      for (const v of victims) {
        const ws = v.ws;
        v.ws = undefined;
        ws?.terminate(); // abrupt, as a phone losing its network
      }
      churned = new Set(victims.map((v) => v.user));
      const r = await openMany(victims, config, m.concurrency);
      send({ ev: 'churned', users: victims.map((v) => v.user), ok: r.ok, failed: r.failed, elapsedMs: r.elapsedMs });
      return;
    }
    case 'drop': {
      const cpu = process.cpuUsage();
      let dropped = 0;
      for (const c of conns) {
        const ws = c.ws;
        if (ws === undefined) continue;
        c.ws = undefined;
        ws.terminate(); // abrupt, as in churn
        dropped++;
      }
      const used = process.cpuUsage(cpu);
      send({ ev: 'dropped', dropped, cpuMicros: used.user + used.system });
      return;
    }
    case 'close':
      for (const c of conns) c.ws?.terminate();
      send({ ev: 'closed' });
      setTimeout(() => process.exit(0), 50);
      return;
  }
}

process.on('disconnect', () => process.exit(0));

// The chaos run (docs/DELIVERY.md): N SDK clients on three gateway workers sharing
// one port, one redis-server with appendonly on, and a publisher at R notifications/s
// for S seconds to user, role and system topics, half plain PUBLISH and half
// FCALL herald_publish. Meanwhile: the worker holding a recorder slot is SIGKILLed
// mid-stream (the other recorder keeps recording, its slot is taken over, its clients
// reconnect to the others and resume), 10% of clients lose their sockets abruptly and
// reconnect after 2 s, one worker's Redis subscriber is cut for 3 s, and redis-server
// restarts (appendonly: no data is lost). Afterwards every client's notifications are
// compared with what was published to it: lost, duplicated (seen twice by the app after
// the SDK's de-duplication) and unrecovered (topics signalled recovered:false). A
// notification counts as lost unless a recovered:false for its topic reached that
// client after it was published (the signal covers what came before it, nothing
// after). Prints a report and a last line `CHAOS <json>`; exits 1 on any loss or
// duplicate.
//
//   node dist-bench/chaos.js [--clients 300] [--rate 500] [--seconds 60]
//
// Used by test/integration/chaos.test.ts (the defaults) and by `npm run bench:chaos`
// at a larger scale. Bounded: every phase has a deadline, and every process it starts
// is killed when it exits.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { HeraldClient } from '../client/dist/index.js';
import { freePort, ROOT } from './services.js';

const SECRET = 'chaos-secret-that-is-long-enough-for-hs256!!';
const ROLES = 10;

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '300' },
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '60' },
  },
});
const CLIENTS = Number(values.clients);
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
if (![CLIENTS, RATE, SECONDS].every((n) => Number.isInteger(n) && n > 0) || CLIENTS > 15_000 || SECONDS > 3600) {
  throw new Error('--clients 1-15000, --rate and --seconds (1-3600) must be positive integers');
}

const owned: ChildProcess[] = [];
process.on('exit', () => {
  for (const p of owned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (msg: string): void => {
  process.stderr.write(`[chaos ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
};
const started = Date.now();

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// --- redis-server with appendonly, restartable on the same port and directory ----------

const redisPort = await freePort();
const redisDir = mkdtempSync(join(tmpdir(), 'herald-chaos-redis-'));
let redisProc: ChildProcess | undefined;
async function startRedisServer(): Promise<void> {
  const p = spawn(
    'redis-server',
    [
      '--port',
      String(redisPort),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--dir',
      redisDir,
      '--client-output-buffer-limit',
      'pubsub 256mb 256mb 60',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  owned.push(p);
  redisProc = p;
  let out = '';
  p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  await until('redis-server', () => out.includes('Ready to accept connections'), 15_000);
}
async function stopRedisServer(): Promise<void> {
  const p = redisProc;
  if (p === undefined || p.exitCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM'); // a clean shutdown: the AOF is flushed
  await exited;
}
await startRedisServer();
const redisUrl = `redis://127.0.0.1:${redisPort}`;

// --- the gateway: three workers on one port ---------------------------------------------

const port = await freePort();
const http = `http://127.0.0.1:${port}`;
const gateway = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
  env: {
    PATH: process.env['PATH'] ?? '',
    HERALD_HOST: '127.0.0.1',
    HERALD_PORT: String(port),
    HERALD_WORKERS: '3',
    HERALD_REDIS_URL: redisUrl,
    HERALD_JWT_SECRET: SECRET,
    HERALD_LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
owned.push(gateway);
let gatewayOut = '';
gateway.stdout?.on('data', (d: Buffer) => (gatewayOut = (gatewayOut + d.toString()).slice(-20_000)));
gateway.stderr?.on('data', (d: Buffer) => (gatewayOut = (gatewayOut + d.toString()).slice(-20_000)));

interface Stats {
  workers: Array<{ pid: number; redis: string; recorderSlot?: number }>;
}
async function stats(): Promise<Stats | undefined> {
  try {
    const r = await fetch(`${http}/stats`);
    return r.ok ? ((await r.json()) as Stats) : undefined;
  } catch {
    return undefined;
  }
}
await until(
  'three workers up with Redis',
  async () => {
    const s = await stats();
    return s !== undefined && s.workers.length === 3 && s.workers.every((w) => w.redis === 'up');
  },
  30_000,
  200,
);
log(`gateway on ${port}: 3 workers; redis on ${redisPort} (appendonly)`);

// --- clients ------------------------------------------------------------------------------

function mint(sub: string, roles: string[]): string {
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, roles, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

interface ClientState {
  index: number;
  sub: string;
  role: string;
  herald: HeraldClient;
  sockets: Set<WebSocket>;
  /** Refuse to connect (a dead network) until this time. */
  blockedUntil: number;
  counts: Map<string, number>;
  /** Topic -> when the last recovered:false for it arrived (ms). */
  unrecovered: Map<string, number>;
  open: boolean;
}

// Source addresses spread over 127.0.0.x: one address has about 28k ephemeral ports.
const sourceAddress = (i: number): string => `127.0.0.${2 + (i % 8)}`;

const clients: ClientState[] = [];
for (let i = 0; i < CLIENTS; i++) {
  const state: ClientState = {
    index: i,
    sub: `c${i}`,
    role: `r${i % ROLES}`,
    herald: undefined as unknown as HeraldClient,
    sockets: new Set(),
    blockedUntil: 0,
    counts: new Map(),
    unrecovered: new Map(),
    open: false,
  };
  // A WebSocket class per client: it keeps the live sockets (to cut them) and can
  // play a dead network (connection refused) while blocked.
  class ClientSocket extends WebSocket {
    constructor(url: string, protocols: string[]) {
      const target = Date.now() < state.blockedUntil ? url.replace(`:${port}/`, ':9/') : url;
      super(target, protocols, { localAddress: sourceAddress(i) });
      state.sockets.add(this);
      this.once('close', () => state.sockets.delete(this));
    }
  }
  state.herald = new HeraldClient({
    url: `ws://127.0.0.1:${port}/ws`,
    token: () => mint(state.sub, [state.role]),
    WebSocket: ClientSocket as never,
    backoffInitialMs: 200,
    backoffMaxMs: 2000,
    dedupWindow: 20_000,
  });
  state.herald.on('notification', (n: { id: string }) => state.counts.set(n.id, (state.counts.get(n.id) ?? 0) + 1));
  state.herald.on('recovery', (r: { topic: string; recovered: boolean }) => {
    if (!r.recovered) state.unrecovered.set(r.topic, Date.now());
  });
  state.herald.on('state', (s: { state: string }) => {
    state.open = s.state === 'open';
  });
  clients.push(state);
}
await until(`${CLIENTS} clients open`, () => clients.every((c) => c.open), 60_000, 100);
log(`${CLIENTS} clients open`);

// --- publisher ------------------------------------------------------------------------------

interface Sent {
  id: string;
  topic: string;
  via: 'publish' | 'fcall';
  at: number;
}
/** Published and confirmed: a PUBLISH that reached at least one gateway, or an FCALL that returned. */
const confirmed: Sent[] = [];
let failed = 0;
let unheard = 0;
const pub = new Redis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 100 });
pub.on('error', () => undefined);

function pickTopic(): string {
  const r = Math.random();
  if (r < 0.02) return 'system';
  if (r < 0.32) return `role:r${Math.floor(Math.random() * ROLES)}`;
  return `user:c${Math.floor(Math.random() * CLIENTS)}`;
}

let seq = 0;
async function publishFor(ms: number): Promise<void> {
  const end = Date.now() + ms;
  const tickMs = 20;
  const perTick = (RATE * tickMs) / 1000;
  let owed = 0;
  while (Date.now() < end) {
    const tickStart = Date.now();
    owed += perTick;
    const batch: Sent[] = [];
    for (; owed >= 1; owed--) {
      const n = seq++;
      batch.push({ id: `m-${n}`, topic: pickTopic(), via: n % 2 === 0 ? 'publish' : 'fcall', at: Date.now() });
    }
    await Promise.all(
      batch.map(async (m) => {
        const payload = JSON.stringify({ id: m.id, at: m.at });
        try {
          if (m.via === 'publish') {
            // PUBLISH answers how many subscribers got it: 0 = no gateway heard (or recorded) it.
            const heard = await pub.publish(`notifications:${m.topic}`, payload);
            if (heard === 0) unheard++;
            else confirmed.push(m);
          } else {
            await pub.call('FCALL', 'herald_publish', '1', m.topic, payload); // the default namespace's
            confirmed.push(m);
          }
        } catch {
          failed++;
        }
      }),
    );
    await sleep(Math.max(0, tickMs - (Date.now() - tickStart)));
  }
}

// --- chaos ------------------------------------------------------------------------------------

const events: string[] = [];
async function chaos(): Promise<void> {
  const waitUntil = async (t: number): Promise<void> => sleep(Math.max(0, t - Date.now()));
  const base = Date.now();
  const when = (f: number): number => base + f * SECONDS * 1000;

  await waitUntil(when(0.15));
  // A recorder: its messages in flight are recorded by the other one.
  const victim = (await stats())?.workers.find((w) => w.recorderSlot !== undefined)?.pid;
  if (victim !== undefined) {
    process.kill(victim, 'SIGKILL');
    events.push(`SIGKILL worker ${victim} (a recorder)`);
    log(`SIGKILL worker ${victim} (a recorder)`);
  }

  await waitUntil(when(0.3));
  const cut = clients.filter((c) => c.index % 10 === 3);
  for (const c of cut) {
    c.blockedUntil = Date.now() + 2000;
    for (const s of c.sockets) s.terminate();
  }
  events.push(`cut ${cut.length} clients' sockets for 2 s`);
  log(`cut ${cut.length} clients' sockets for 2 s`);

  await waitUntil(when(0.45));
  const target = (await stats())?.workers.find((w) => w.pid !== victim)?.pid;
  const admin = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  admin.on('error', () => undefined);
  let kills = 0;
  const cutEnd = Date.now() + 3000;
  while (Date.now() < cutEnd) {
    try {
      const list = String(await admin.client('LIST'));
      const id = new RegExp(`id=(\\d+) [^\\n]*name=herald-subscriber-${target}\\b`).exec(list)?.[1];
      if (id !== undefined) {
        await admin.client('KILL', 'ID', id);
        kills++;
      }
    } catch {
      /* the subscriber may be between connections */
    }
    await sleep(50);
  }
  admin.disconnect();
  events.push(`cut worker ${target}'s Redis subscriber for 3 s (${kills} kills)`);
  log(`cut worker ${target}'s Redis subscriber for 3 s (${kills} kills)`);

  await waitUntil(when(0.65));
  await stopRedisServer();
  await startRedisServer();
  events.push('restarted redis-server (appendonly)');
  log('restarted redis-server');
}

const publishing = publishFor(SECONDS * 1000);
await Promise.all([publishing, chaos()]);
log(`published ${seq}: ${confirmed.length} confirmed, ${failed} failed, ${unheard} heard by no gateway`);

// --- settle and check ---------------------------------------------------------------------------

const membersOf = (topic: string): ClientState[] => {
  if (topic === 'system') return clients;
  if (topic.startsWith('role:')) return clients.filter((c) => `role:${c.role}` === topic);
  const c = clients[Number(topic.slice('user:c'.length))];
  return c === undefined ? [] : [c];
};
const expected = new Map<ClientState, Sent[]>();
for (const m of confirmed) {
  for (const c of membersOf(m.topic)) {
    const list = expected.get(c);
    if (list === undefined) expected.set(c, [m]);
    else list.push(m);
  }
}
/** Whether a recovered:false for the topic reached the client after the notification was published. */
const signalled = (c: ClientState, m: Sent): boolean => (c.unrecovered.get(m.topic) ?? -Infinity) >= m.at;
const missing = (): number => {
  let n = 0;
  for (const [c, list] of expected) for (const m of list) if (!c.counts.has(m.id) && !signalled(c, m)) n++;
  return n;
};
try {
  await until('every client open and caught up', () => clients.every((c) => c.open) && missing() === 0, 30_000, 250);
} catch {
  log('not everything arrived within 30 s of the end');
}

let lost = 0;
let duplicated = 0;
let excused = 0;
const lostSamples: string[] = [];
for (const c of clients) {
  for (const m of expected.get(c) ?? []) {
    if (c.counts.has(m.id)) continue;
    if (signalled(c, m)) excused++;
    else {
      lost++;
      if (lostSamples.length < 10) lostSamples.push(`${c.sub} ${m.topic} ${m.id} (${m.via})`);
    }
  }
  for (const n of c.counts.values()) if (n > 1) duplicated += n - 1;
}
const unrecovered = clients.reduce((sum, c) => sum + c.unrecovered.size, 0);
const deliveriesExpected = [...expected.values()].reduce((s, l) => s + l.length, 0);
const summary = {
  clients: CLIENTS,
  rate: RATE,
  seconds: SECONDS,
  published: seq,
  confirmed: confirmed.length,
  failed,
  unheard,
  deliveriesExpected,
  lost,
  duplicated,
  unrecoveredTopics: unrecovered,
  lostButSignalled: excused,
  open: clients.filter((c) => c.open).length,
  events,
  lostSamples,
  cores: cpus().length,
};
log(`lost ${lost}, duplicated ${duplicated}, unrecovered topics ${unrecovered} (excusing ${excused} deliveries)`);
if (lostSamples.length > 0) log(`lost, e.g.: ${lostSamples.join('; ')}`);

for (const c of clients) c.herald.close();
pub.disconnect();
gateway.kill('SIGTERM');
await Promise.race([new Promise((r) => gateway.once('exit', r)), sleep(10_000)]);
await stopRedisServer();
rmSync(redisDir, { recursive: true, force: true });
if (lost > 0) process.stderr.write(`gateway output (last lines):\n${gatewayOut.slice(-3000)}\n`);
process.stdout.write(`CHAOS ${JSON.stringify(summary)}\n`);
process.exit(lost > 0 || duplicated > 0 ? 1 : 0);

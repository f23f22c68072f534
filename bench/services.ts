// The processes a bench run starts and owns: a private redis-server, gateway
// processes (Herald or the baseline), and client workers. Every one is stopped
// when the run ends, whatever happens.
import { type ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Target, WorkerCommand, WorkerEvent } from './worker.js';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
const HERALD_MAIN = join(ROOT, 'dist/main.js');
const BASELINE = fileURLToPath(new URL('./baseline/server.js', import.meta.url));
const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

const owned: ChildProcess[] = [];
export function killAll(): void {
  for (const p of owned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}
process.on('exit', killAll);
// A signal ends the process without 'exit' handlers: stop what it started first.
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    killAll();
    process.exit(128 + (sig === 'SIGTERM' ? 15 : 2));
  });
}

export const hasTaskset = spawnSync('taskset', ['--version']).error === undefined;

/** `taskset -c <cpu>` prefix when pinning is on and available. */
function pinned(cpu: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpu !== undefined && hasTaskset ? ['taskset', ['-c', cpu, cmd, ...args]] : [cmd, args];
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

function waitForOutput(p: ChildProcess, needle: string, timeoutMs: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`${what}: no "${needle}" within ${timeoutMs} ms; output: ${out.slice(-500)}`)),
      timeoutMs,
    );
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes(needle)) {
        clearTimeout(timer);
        resolve(out);
      }
    };
    p.stdout?.on('data', onData);
    p.stderr?.on('data', onData);
    p.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before "${needle}"; output: ${out.slice(-500)}`));
    });
  });
}

export interface Redis {
  url: string;
  pid: number;
}

export async function startRedis(cpu: string | undefined): Promise<Redis> {
  if (spawnSync('redis-server', ['--version']).error !== undefined) {
    throw new Error('redis-server is not installed: `make test` installs it as root, or: sudo apt-get install redis-server');
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'herald-bench-redis-'));
  const [cmd, args] = pinned(cpu, 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--maxclients',
    '1000',
    '--client-output-buffer-limit',
    'pubsub 256mb 256mb 60',
  ]);
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  owned.push(p);
  await waitForOutput(p, 'Ready to accept connections', 10_000, 'redis-server');
  return { url: `redis://127.0.0.1:${port}`, pid: p.pid as number };
}

export interface GatewayProc {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

export async function startGateway(
  target: Target,
  opts: {
    redisUrl: string;
    secret: string;
    cpu: string | undefined;
    cpuProfDir: string | undefined;
    history: boolean;
    presence: boolean;
  },
): Promise<GatewayProc> {
  const port = await freePort();
  const env: Record<string, string> =
    target === 'herald'
      ? {
          PATH: process.env['PATH'] ?? '',
          HERALD_HOST: '127.0.0.1',
          HERALD_PORT: String(port),
          HERALD_REDIS_URL: opts.redisUrl,
          HERALD_JWT_SECRET: opts.secret,
          HERALD_LOG_LEVEL: 'info',
          HERALD_IDLE_TIMEOUT_S: '120',
          ...(opts.history ? {} : { HERALD_HISTORY_SIZE: '0' }),
          ...(opts.presence ? {} : { HERALD_PRESENCE: 'false' }),
        }
      : { PATH: process.env['PATH'] ?? '', PORT: String(port), REDIS_URL: opts.redisUrl };
  const profile = opts.cpuProfDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`] : [];
  const [cmd, args] = pinned(opts.cpu, process.execPath, [...profile, target === 'herald' ? HERALD_MAIN : BASELINE]);
  const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  owned.push(p);
  await waitForOutput(p, 'redis subscription active', 15_000, target);
  // The process to measure is node itself, not a taskset wrapper (taskset execs, so pids match).
  return {
    pid: p.pid as number,
    port,
    stop: () =>
      new Promise((resolve) => {
        if (p.exitCode !== null || p.signalCode !== null) return resolve();
        const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
        p.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        p.kill('SIGTERM');
      }),
  };
}

export interface Worker {
  pid: number;
  ask<E extends WorkerEvent['ev']>(cmd: WorkerCommand, ev: E, timeoutMs: number): Promise<Extract<WorkerEvent, { ev: E }>>;
  tell(cmd: WorkerCommand): void;
}

export function startWorker(cpu: string | undefined): Worker {
  const p =
    hasTaskset && cpu !== undefined
      ? fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execPath: 'taskset', execArgv: ['-c', cpu, process.execPath] })
      : fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  owned.push(p);
  return {
    pid: p.pid as number,
    tell: (cmd) => {
      p.send(cmd);
    },
    ask(cmd, ev, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          p.off('message', onMessage);
          reject(new Error(`worker ${p.pid}: no "${ev}" within ${timeoutMs} ms`));
        }, timeoutMs);
        const onMessage = (m: WorkerEvent): void => {
          if (m.ev !== ev) return;
          clearTimeout(timer);
          p.off('message', onMessage);
          resolve(m as Extract<WorkerEvent, { ev: typeof ev }>);
        };
        p.on('message', onMessage);
        p.send(cmd);
      });
    },
  };
}

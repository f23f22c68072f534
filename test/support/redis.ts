// A private redis-server per test file: a free port on 127.0.0.1, no persistence,
// started and stopped by the test (never the shared one on 6379).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.js';

const INSTALL_HINT =
  'redis-server is not installed: `make test` installs it as root (apt-get install redis-server); ' +
  'otherwise install it yourself (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)';

/** How long redis-server may take to say it is ready, ms. */
const START_TIMEOUT_MS = 10_000;

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Start again on the same port (after stop or kill). */
  start(): Promise<void>;
  /** SHUTDOWN NOSAVE, waiting for the process to exit. */
  stop(): Promise<void>;
  /** SIGKILL: a crash, not a shutdown. */
  kill(): Promise<void>;
  /** A client for the test's own commands; closed by close(). */
  client(): Redis;
  close(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  if (spawnSync('redis-server', ['--version']).error !== undefined) throw new Error(INSTALL_HINT);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'herald-redis-'));
  const clients: Redis[] = [];
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  /** Resolves once redis-server says it is ready; rejects at once when it exits first
   *  (a port taken, a bad option), or after START_TIMEOUT_MS, with what it printed. */
  function start(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc = child;
    exited = new Promise((resolve) => child.once('exit', () => resolve()));
    return new Promise((resolve, reject) => {
      let out = '';
      const fail = (why: string): void => {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        reject(new Error(`redis-server on port ${port} ${why}; its output:\n${out.slice(-2000) || '(none)'}`));
      };
      const onData = (d: Buffer): void => {
        out += d.toString();
        if (!out.includes('Ready to accept connections')) return;
        clearTimeout(timer);
        child.off('exit', onExit);
        child.stdout?.off('data', onData);
        resolve();
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
        fail(`exited (${signal ?? `code ${code}`}) before it was ready`);
      const timer = setTimeout(() => {
        fail(`was not ready within ${START_TIMEOUT_MS} ms`);
        child.kill('SIGKILL');
      }, START_TIMEOUT_MS);
      child.stdout?.on('data', onData);
      child.stderr?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.once('exit', onExit);
      child.once('error', (err) => fail(`could not be started (${err.message})`));
    });
  }

  async function halt(signal: NodeJS.Signals): Promise<void> {
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(signal);
    await exited;
  }

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop: () => halt('SIGTERM'),
    kill: () => halt('SIGKILL'),
    client() {
      const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.disconnect();
      await halt('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

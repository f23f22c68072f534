// HERALD_WORKERS > 1: this process starts N gateway workers on the same port (uWS
// listens with SO_REUSEPORT, the kernel spreads connections), restarts one that
// crashes, relays /stats and /metrics gathering between them, and on SIGTERM or
// SIGINT drains them all. Why several: one process is bounded by its open-files
// limit (here 20,000 sockets) and by one core.
import { type ChildProcess, fork } from 'node:child_process';
import { type Config, WORKER_ID } from './config.js';
import type { Logger } from './log.js';
import { GATHER_TIMEOUT_MS, type IpcMessage } from './siblings.js';

const MAX_RESTART_DELAY_MS = 30_000;

interface Worker {
  id: number;
  proc: ChildProcess | undefined;
  /** Consecutive quick crashes, for the restart backoff. */
  crashes: number;
  startedAt: number;
}

export function runSupervisor(config: Config, log: Logger, entry: string, args: string[]): void {
  const slog = log.child({ component: 'supervisor' });
  const workers: Worker[] = Array.from({ length: config.workers }, (_, id) => ({ id, proc: undefined, crashes: 0, startedAt: 0 }));
  let stopping = false;
  let nextReq = 0;

  function start(w: Worker): void {
    const proc = fork(entry, args, {
      // main.ts reads it back with config.ts's workerId(), which checks it is 0..workers-1.
      env: { ...process.env, [WORKER_ID]: String(w.id) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    w.proc = proc;
    w.startedAt = Date.now();
    slog.info({ workerId: w.id, workerPid: proc.pid }, 'worker started');
    proc.on('message', (m: IpcMessage) => {
      if (m.type === 'gather') void gather(m, proc);
    });
    proc.once('exit', (code, signal) => {
      w.proc = undefined;
      if (stopping) {
        slog.info({ workerId: w.id, code, signal }, 'worker stopped');
        if (workers.every((x) => x.proc === undefined)) process.exit(0);
        return;
      }
      // A worker that ran a minute or more starts a fresh backoff.
      w.crashes = Date.now() - w.startedAt > 60_000 ? 1 : w.crashes + 1;
      const delay = Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** (w.crashes - 1));
      slog.error({ workerId: w.id, code, signal, restartInMs: delay }, 'worker exited; restarting');
      setTimeout(() => {
        if (!stopping) start(w);
      }, delay);
    });
  }

  /** Asks every live worker, answers the one that asked; bounded by GATHER_TIMEOUT_MS. */
  async function gather(m: Extract<IpcMessage, { type: 'gather' }>, asker: ChildProcess): Promise<void> {
    const live = workers.flatMap((w) => (w.proc?.connected === true ? [w.proc] : []));
    const answers = await Promise.all(
      live.map(
        (p) =>
          new Promise<unknown>((resolve) => {
            const reqId = nextReq++;
            const timer = setTimeout(() => {
              p.off('message', onMessage);
              resolve(null);
            }, GATHER_TIMEOUT_MS);
            const onMessage = (r: IpcMessage): void => {
              if (r.type !== 'collected' || r.reqId !== reqId) return;
              clearTimeout(timer);
              p.off('message', onMessage);
              resolve(r.data);
            };
            p.on('message', onMessage);
            p.send({ type: 'collect', what: m.what, reqId } satisfies IpcMessage);
          }),
      ),
    );
    if (asker.connected) asker.send({ type: 'gathered', reqId: m.reqId, data: answers } satisfies IpcMessage);
  }

  function stop(signal: NodeJS.Signals): void {
    if (stopping) return;
    stopping = true;
    slog.info({ signal }, 'draining workers');
    for (const w of workers) w.proc?.kill('SIGTERM');
    if (workers.every((w) => w.proc === undefined)) process.exit(0);
    // Workers bound their own drain by HERALD_SHUTDOWN_TIMEOUT_S; this is the backstop.
    setTimeout(() => {
      slog.warn('workers did not stop in time; killing them');
      for (const w of workers) w.proc?.kill('SIGKILL');
      process.exit(1);
    }, config.shutdownTimeoutMs + 5000).unref();
  }

  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  slog.info({ workers: config.workers, port: config.port }, 'supervisor starting workers');
  for (const w of workers) start(w);
}

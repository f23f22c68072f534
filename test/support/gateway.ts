// Runs the real gateway (`node dist/main.js`) as a child process on a free port,
// and collects its JSON log lines.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { read } from '../../dist/config.js';
import { waitFor } from './ports.js';
import { TEST_SECRET } from './tokens.js';

export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface LogLine {
  level: string;
  msg: string;
  [key: string]: unknown;
}

export interface GatewayProcess {
  readonly port: number;
  readonly http: string;
  readonly ws: string;
  readonly logs: LogLine[];
  readonly stderr: () => string;
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line (seen or future) matching `pred`. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM (or `signal`) and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Minimal env for the gateway: a test secret, loopback, any free port. */
export function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HERALD_HOST: '127.0.0.1',
    HERALD_PORT: '0',
    HERALD_JWT_SECRET: TEST_SECRET,
    HERALD_LOG_LEVEL: 'debug',
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface SpawnResult {
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: () => string;
  stderr: () => string;
}

export function spawnNode(script: string, args: string[], env: Record<string, string>, cwd = ROOT): SpawnResult {
  const proc = spawn(process.execPath, [script, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { proc, exited, stdout: () => out, stderr: () => err };
}

/** Spawns `node dist/main.js` with `args`, killed at `t`'s teardown if it is still running. */
export function spawnMain(
  t: { teardown(fn: () => Promise<void>): void },
  args: string[],
  env: Record<string, string>,
  cwd?: string,
): SpawnResult {
  const child = spawnNode(MAIN, args, env, cwd);
  t.teardown(async () => {
    if (child.proc.exitCode === null && child.proc.signalCode === null) {
      child.proc.kill('SIGKILL');
      await child.exited;
    }
  });
  return child;
}

export async function startGateway(env: Record<string, string> = baseEnv(), args: string[] = []): Promise<GatewayProcess> {
  const child = spawnNode(MAIN, args, env);
  const logs: LogLine[] = [];
  let buffered = '';
  child.proc.stdout?.on('data', (d: Buffer) => {
    buffered += d.toString();
    for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: 'raw', msg: line });
      }
    }
  });
  let done = false;
  void child.exited.then(() => {
    done = true;
  });

  async function waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine> {
    let found: LogLine | undefined;
    await waitFor(
      'a matching gateway log line',
      () => {
        found = logs.find(pred);
        if (found === undefined && done) throw new Error(`gateway exited before the log line; stderr: ${child.stderr()}`);
        return found !== undefined;
      },
      timeoutMs,
      10,
    );
    return found as LogLine;
  }

  let listening: LogLine;
  try {
    listening = await waitForLog((l) => l.msg === 'herald listening', 10_000);
  } catch (err) {
    if (!done) child.proc.kill('SIGKILL'); // never leave a half-started gateway behind
    throw err;
  }
  const port = listening['port'] as number;
  return {
    port,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}${read(env, 'HERALD_WS_PATH')}`,
    logs,
    stderr: child.stderr,
    proc: child.proc,
    exited: child.exited,
    waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!done) child.proc.kill(signal);
      return child.exited;
    },
  };
}

// Readiness, and the shutdown sequence: readiness off, stop accepting, close
// clients with 1001, leave Redis, exit; all within HERALD_SHUTDOWN_TIMEOUT_S.
import { NotReady } from '@herald/client/codes';
import type { Logger } from './log.js';

export type Readiness = { ready: true } | { ready: false; why: NotReady };

export interface Lifecycle {
  readiness(): Readiness;
  serving(): void;
  /** Runs `steps` once, in order; resolves true if all finished before the deadline. */
  shutdown(steps: readonly ShutdownStep[]): Promise<boolean>;
}

export interface ShutdownStep {
  name: string;
  run(): void | Promise<void>;
}

export function createLifecycle(deps: { log: Logger; timeoutMs: number; redisUp?: () => boolean }): Lifecycle {
  const { log, timeoutMs, redisUp } = deps;
  let state: 'starting' | 'serving' | 'draining' = 'starting';
  let shuttingDown: Promise<boolean> | undefined;

  return {
    readiness() {
      if (state === 'starting') return { ready: false, why: NotReady.Starting };
      if (state === 'draining') return { ready: false, why: NotReady.Draining };
      if (redisUp !== undefined && !redisUp()) return { ready: false, why: NotReady.RedisUnavailable };
      return { ready: true };
    },
    serving() {
      if (state === 'starting') state = 'serving';
    },
    shutdown(steps) {
      if (shuttingDown !== undefined) return shuttingDown;
      state = 'draining';
      const run = async (): Promise<boolean> => {
        for (const step of steps) {
          try {
            await step.run();
          } catch (err) {
            log.error({ step: step.name, err }, 'shutdown step failed');
          }
        }
        return true;
      };
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
        timer.unref();
      });
      shuttingDown = Promise.race([run(), deadline]).finally(() => clearTimeout(timer));
      return shuttingDown;
    },
  };
}

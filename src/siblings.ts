// A worker's line to its siblings through the supervisor (HERALD_WORKERS > 1):
// /stats and /metrics answer for every worker on the host, whichever one the
// kernel handed the request to. Outside the supervisor, there is just this process.

import { WORKER_ID } from './config.js';
export type Gatherable = 'stats' | 'metrics';

/** Supervisor <-> worker messages over the IPC channel. */
export type IpcMessage =
  | { type: 'gather'; what: Gatherable; reqId: number }
  | { type: 'collect'; what: Gatherable; reqId: number }
  | { type: 'collected'; reqId: number; data: unknown }
  | { type: 'gathered'; reqId: number; data: unknown[] };

export interface Siblings {
  /** Every worker's answer (this one's included); just this one's outside the supervisor. */
  gather(what: Gatherable): Promise<unknown[]>;
}

/** Bounded: a worker that does not answer in time is left out rather than waited for. */
export const GATHER_TIMEOUT_MS = 1000;

export function createSiblings(collect: Record<Gatherable, () => Promise<unknown>>): Siblings {
  const send = process.send?.bind(process);
  if (send === undefined || process.env[WORKER_ID] === undefined) {
    return { gather: async (what) => [await collect[what]()] };
  }
  let nextId = 0;
  const pending = new Map<number, (data: unknown[]) => void>();
  process.on('message', (m: IpcMessage) => {
    if (m.type === 'collect') {
      const answer = (data: unknown): void => {
        if (process.connected) send({ type: 'collected', reqId: m.reqId, data } satisfies IpcMessage, () => undefined);
      };
      collect[m.what]().then(answer, () => answer(null));
    } else if (m.type === 'gathered') {
      pending.get(m.reqId)?.(m.data);
      pending.delete(m.reqId);
    }
  });
  return {
    gather(what) {
      // No supervisor to ask (it died, the worker is draining): report ourselves.
      const alone = async (): Promise<unknown[]> => [await collect[what]()];
      if (!process.connected) return alone();
      const reqId = nextId++;
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(reqId);
          resolve(alone());
        }, GATHER_TIMEOUT_MS * 2);
        pending.set(reqId, (data) => {
          clearTimeout(timer);
          resolve(data.filter((d) => d !== null));
        });
        send({ type: 'gather', what, reqId } satisfies IpcMessage, (err: Error | null) => {
          if (err === null) return;
          clearTimeout(timer);
          pending.delete(reqId);
          resolve(alone());
        });
      });
    },
  };
}

// Measuring a gateway's memory after a forced garbage collection, through the V8
// inspector (no test hook in src/): the gateway runs with NODE_OPTIONS
// --inspect=127.0.0.1:0, and the test asks it over the DevTools protocol to collect
// all garbage, then reads process.memoryUsage(). One measurement, taken once: a
// leak shows, and no re-sampling waits for V8 to get round to collecting.
import WebSocket from 'ws';
import type { GatewayProcess } from './gateway.js';

/** Env for a gateway whose memory is measured: its inspector on a free loopback port. */
export const INSPECTOR_ENV = { NODE_OPTIONS: '--inspect=127.0.0.1:0' } as const;

/** Lines Node writes on stderr for the inspector: not errors. */
export const INSPECTOR_STDERR =
  /^(?:Debugger listening on ws:\/\/\S+|For help, see: https:\/\/nodejs\.org\/\S+|Debugger attached\.|Debugger ending on ws:\/\/\S+)\n?/gm;

export interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

/** Runs one DevTools method per call on a fresh session and resolves with its result. */
async function session<T>(
  url: string,
  calls: Array<{ method: string; params?: Record<string, unknown> }>,
  timeoutMs: number,
): Promise<T[]> {
  const ws = new WebSocket(url);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const results: T[] = [];
    for (const [i, call] of calls.entries()) {
      const reply = new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to ${call.method} within ${timeoutMs} ms`)), timeoutMs);
        const onMessage = (data: WebSocket.RawData): void => {
          const msg = JSON.parse(data.toString()) as { id?: number; result?: T; error?: { message: string } };
          if (msg.id !== i + 1) return;
          clearTimeout(timer);
          ws.off('message', onMessage);
          if (msg.error !== undefined) reject(new Error(`${call.method}: ${msg.error.message}`));
          else resolve(msg.result as T);
        };
        ws.on('message', onMessage);
      });
      ws.send(JSON.stringify({ id: i + 1, method: call.method, params: call.params ?? {} }));
      results.push(await reply);
    }
    return results;
  } finally {
    ws.close();
  }
}

/** The gateway's memory right after a full garbage collection. */
export async function memoryAfterGc(gw: GatewayProcess, timeoutMs = 30_000): Promise<Memory> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(gw.stderr())?.[1];
  if (url === undefined)
    throw new Error(`the gateway has no inspector (start it with INSPECTOR_ENV); stderr: ${gw.stderr().slice(0, 300)}`);
  const [, evaluated] = await session<{ result?: { value?: string } }>(
    url,
    [
      { method: 'HeapProfiler.collectGarbage' },
      { method: 'Runtime.evaluate', params: { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true } },
    ],
    timeoutMs,
  );
  const value = evaluated?.result?.value;
  if (typeof value !== 'string') throw new Error(`process.memoryUsage() gave ${JSON.stringify(evaluated)}`);
  return JSON.parse(value) as Memory;
}

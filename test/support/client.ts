// A real `ws` client with an inbox: `next(type)` waits (with a deadline) for the next
// frame of that type, so tests read as conversations and never sleep.
import WebSocket from 'ws';

export interface Frame {
  type: string;
  [key: string]: unknown;
}

export interface ConnectOptions {
  headers?: Record<string, string>;
  protocols?: string[];
  /** ws's localAddress: spread clients over 127.0.0.x. */
  localAddress?: string;
}

export class TestClient {
  readonly inbox: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<{ type: string; resolve: (f: Frame) => void }> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const frame = isBinary ? { type: '<binary>' } : (JSON.parse(data.toString()) as Frame);
      const i = this.waiters.findIndex((w) => w.type === frame.type || w.type === '*');
      if (i !== -1) {
        const [w] = this.waiters.splice(i, 1);
        w?.resolve(frame);
      } else {
        this.inbox.push(frame);
      }
    });
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /**
   * Opens a connection and waits for the `connected` frame (kept in `welcome`).
   *
   * This uWS build sometimes closes a socket it has just upgraded after an await
   * (uNetworking/uWebSockets#1928, fixed upstream by #1929): the client sees the 101,
   * maybe `connected`, then a 1006 within a millisecond. Such a drop is retried (twice
   * at most, said on stderr); any other close before `connected` fails at once.
   */
  static async connect(url: string, opts: ConnectOptions = {}): Promise<TestClient & { welcome: Frame }> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await TestClient.attempt(url, opts);
      if (!('dropped' in outcome)) return outcome;
      if (attempt === 3) throw new Error(outcome.dropped);
      process.stderr.write(`# ${outcome.dropped}: a fresh socket dropped by uWS (uWebSockets#1928), retrying\n`);
    }
  }

  private static async attempt(url: string, opts: ConnectOptions): Promise<(TestClient & { welcome: Frame }) | { dropped: string }> {
    const ws = new WebSocket(url, opts.protocols ?? [], {
      ...(opts.headers !== undefined ? { headers: opts.headers } : {}),
      ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
    });
    const client = new TestClient(ws);
    // An error after the upgrade (a frame ws could not parse, a reset) surfaces as a
    // 1006 close: keep it so the failure says which.
    let lastError = '';
    ws.on('error', (err) => {
      lastError = err.message;
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
    });
    const opened = Date.now();
    const closedWith = ({ code, reason }: { code: number; reason: string }): string =>
      `closed before connected: ${code} ${JSON.stringify(reason)}${lastError === '' ? '' : ` (${lastError})`}`;
    // A socket closed before its `connected` frame fails at once, with the close code.
    const first = await Promise.race([
      client.next('connected').then((frame) => ({ frame, closed: undefined })),
      client.closed.then((closed) => ({ frame: undefined, closed })),
    ]);
    if (first.frame === undefined) {
      if (first.closed.code === 1006) return { dropped: closedWith(first.closed) };
      throw new Error(closedWith(first.closed));
    }
    // The drop follows the upgrade at once: a socket still open a moment later is past it.
    const early = await Promise.race([client.closed, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10))]);
    if (early?.code === 1006 && Date.now() - opened < 1000) return { dropped: `closed right after connected: 1006` };
    return Object.assign(client, { welcome: first.frame });
  }

  /** The next frame of `type` ('*' for any), from the inbox or the wire. */
  // Deadlines are generous (10 s): they cost time only when a test fails anyway, and
  // a loaded CI machine can take seconds to schedule a gateway.
  next(type: string, { timeoutMs = 10_000 } = {}): Promise<Frame> {
    const i = this.inbox.findIndex((f) => type === '*' || f.type === type);
    if (i !== -1) return Promise.resolve(this.inbox.splice(i, 1)[0] as Frame);
    return new Promise((resolve, reject) => {
      const waiter = {
        type,
        resolve: (f: Frame) => {
          clearTimeout(timer);
          resolve(f);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no "${type}" frame within ${timeoutMs} ms; inbox: ${JSON.stringify(this.inbox).slice(0, 500)}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Sends a request and waits for the reply carrying its id; other frames stay in the inbox, in order. */
  async request(frame: Record<string, unknown> & { id: string | number }, { timeoutMs = 10_000 } = {}): Promise<Frame> {
    this.send(frame);
    const skipped: Frame[] = [];
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) {
        const f = await this.next('*', { timeoutMs: Math.max(1, deadline - Date.now()) });
        if (f['id'] === frame.id) return f;
        skipped.push(f);
      }
    } finally {
      this.inbox.unshift(...skipped);
    }
  }

  close(code = 1000): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
    return this.closed;
  }
}

/** Attempts an upgrade expected to be refused; resolves with the HTTP status and JSON body. */
export function refusedUpgrade(
  url: string,
  opts: ConnectOptions = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? [], {
      ...(opts.headers !== undefined ? { headers: opts.headers } : {}),
      ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
    });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('upgrade unexpectedly succeeded'));
    });
    ws.once('error', (err) => reject(err));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString();
      });
      res.on('end', () => {
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          body = { raw: text };
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
        ws.terminate();
      });
    });
  });
}

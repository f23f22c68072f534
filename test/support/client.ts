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

  /** Opens a connection and waits for the `connected` frame (kept in `welcome`). */
  static async connect(url: string, opts: ConnectOptions = {}): Promise<TestClient & { welcome: Frame }> {
    const ws = new WebSocket(url, opts.protocols ?? [], {
      ...(opts.headers !== undefined ? { headers: opts.headers } : {}),
      ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
    });
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
    });
    // A socket closed before its `connected` frame fails at once, with the close code.
    const welcome = await Promise.race([
      client.next('connected'),
      client.closed.then(({ code, reason }) => {
        throw new Error(`closed before connected: ${code} ${JSON.stringify(reason)}`);
      }),
    ]);
    return Object.assign(client, { welcome });
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
export function refusedUpgrade(url: string, opts: ConnectOptions = {}): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, unknown> }> {
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

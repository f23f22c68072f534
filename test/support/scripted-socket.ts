// A WebSocket for the SDK's unit tests (test/unit/client-*.test.ts): it opens, speaks
// and closes only when the test says so, and records every frame the client sends.

type Listener = (ev: unknown) => void;

/** A socket the test drives: it opens, speaks and closes only when told to. */
export class ScriptedSocket {
  static all: ScriptedSocket[] = [];
  /** Answer pings at once (on a microtask), as a healthy server would; tests of liveness turn it off. */
  static autoPong = true;
  readyState = 0;
  readonly sent: Array<Record<string, unknown>> = [];
  closedWith: { code: number | undefined; reason: string | undefined } | undefined;
  readonly #listeners = new Map<string, Listener[]>();

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {
    ScriptedSocket.all.push(this);
  }

  addEventListener(type: string, fn: Listener): void {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), fn]);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    const frame = JSON.parse(data) as Record<string, unknown>;
    this.sent.push(frame);
    if (frame['type'] === 'ping' && ScriptedSocket.autoPong) {
      frame['answered'] = true;
      queueMicrotask(() => this.receive({ type: 'pong', id: frame['id'], ts: 0 }));
    }
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  #fire(type: string, ev: unknown): void {
    for (const fn of this.#listeners.get(type) ?? []) fn(ev);
  }

  /** The server accepts and sends `connected`. */
  accept(
    session: Partial<{
      connectionId: string;
      userId: string;
      topics: string[];
      heartbeatMs: number;
      serverTime: number;
      epoch: string;
    }> = {},
  ): void {
    this.readyState = 1;
    this.#fire('open', {});
    this.receive({
      type: 'connected',
      connectionId: `c${ScriptedSocket.all.indexOf(this)}`,
      userId: 'alice',
      topics: ['user:alice', 'system'],
      heartbeatMs: 0,
      serverTime: 0,
      ...session,
    });
  }

  receive(frame: unknown): void {
    this.#fire('message', { data: JSON.stringify(frame) });
  }

  /** The server (or the network) closes the socket. */
  drop(code: number, reason = ''): void {
    this.readyState = 3;
    this.#fire('error', {});
    this.#fire('close', { code, reason });
  }

  /** Frames sent of one type. */
  of(type: string): Array<Record<string, unknown>> {
    return this.sent.filter((f) => f['type'] === type);
  }

  /** Answers every request of `type` not answered yet with `reply(frame)`. */
  answer(type: string, reply: (f: Record<string, unknown>) => unknown): void {
    for (const f of this.of(type)) {
      if (f['answered'] === true) continue;
      f['answered'] = true;
      this.receive(reply(f));
    }
  }
}

// HTTP plumbing for uWS: abort tracking, corked JSON replies, bounded body reads.
// uWS rules: register onAborted before the first await; after any await, write only
// inside res.cork() and only if the request was not aborted. Every reply goes
// through `reply` so those rules live in one place, and every refusal through `refuse`,
// which takes its status, body and headers from the code table.
import { type HttpRefusal, refusalBody } from '@herald/client/codes';
import type { HttpResponse } from './uws.js';

const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: '200 OK',
  202: '202 Accepted',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  413: '413 Payload Too Large',
  414: '414 URI Too Long',
  429: '429 Too Many Requests',
  426: '426 Upgrade Required',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

export interface Exchange {
  readonly res: HttpResponse;
  /** The client went away, or the answer (a reply or the upgrade) went out: `res` may
   *  no longer be touched. */
  finished: boolean;
  /** Called once if the client goes away; set by whoever is waiting on the client. */
  onAbort: (() => void) | undefined;
}

/** Must be called synchronously in the route handler, before any await. */
export function track(res: HttpResponse): Exchange {
  const ex: Exchange = { res, finished: false, onAbort: undefined };
  res.onAborted(() => {
    ex.finished = true;
    ex.onAbort?.();
  });
  return ex;
}

export interface ReplyOptions {
  headers?: Readonly<Record<string, string>>;
  contentType?: string;
  /** Close the TCP connection after the reply (used when the rest of a body is unread). */
  close?: boolean;
}

export function reply(ex: Exchange, status: number, body: unknown, opts: ReplyOptions = {}): void {
  if (ex.finished) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  ex.finished = true; // a response is final: later replies are no-ops
  ex.res.cork(() => {
    ex.res.writeStatus(STATUS_TEXT[status] ?? String(status));
    ex.res.writeHeader('Content-Type', opts.contentType ?? 'application/json');
    ex.res.writeHeader('Cache-Control', 'no-store');
    if (opts.headers !== undefined) for (const [k, v] of Object.entries(opts.headers)) ex.res.writeHeader(k, v);
    ex.res.end(text, opts.close ?? false);
  });
}

/** A refusal from the code table (codes.ts, Refusal); `extra` adds to the body (a 400's `message`, a 413's `limit`). */
export function refuse(ex: Exchange, refusal: HttpRefusal, extra?: Readonly<Record<string, unknown>>): void {
  reply(ex, refusal.status, refusalBody(refusal, extra), {
    ...(refusal.headers !== undefined ? { headers: refusal.headers } : {}),
    ...(refusal.closeConnection === true ? { close: true } : {}),
  });
}

export class BodyTooLarge extends Error {
  override name = 'BodyTooLarge';
}
export class ClientAborted extends Error {
  override name = 'ClientAborted';
}

/**
 * Reads the whole body, at most `limit` bytes. Chunks are copied: uWS neuters each
 * ArrayBuffer when its callback returns. Rejects with BodyTooLarge as soon as the
 * limit is passed (without buffering the rest) and with ClientAborted on abort.
 */
export function readBody(ex: Exchange, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    ex.onAbort = () => {
      if (!done) {
        done = true;
        reject(new ClientAborted());
      }
    };
    ex.res.onData((chunk, isLast) => {
      if (done) return;
      size += chunk.byteLength;
      if (size > limit) {
        done = true;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (isLast) {
        done = true;
        resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
      }
    });
  });
}

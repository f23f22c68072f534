// The control API and presence from a backend's side (issue 17): GET /presence and
// POST /control/<action> over fetch, and what Redis holds for presence, read with a
// plain client, so tests can say which gateway wrote what.
import type { Redis } from 'ioredis';
import type { TestClient } from './client.js';
import type { GatewayProcess } from './gateway.js';

export const CONTROL_KEY = 'control-key-0123456789abcdef';
export const PUBLISH_KEY = 'publish-key-0123456789abcdef';

export interface HttpReply {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

async function answer(res: Response): Promise<HttpReply> {
  const text = await res.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { raw: text };
  }
  return { status: res.status, body, headers: res.headers };
}

/** POST /control/<action>; `body` a string is sent as is; `key` null sends no Authorization. */
export async function control(base: string, action: string, body: unknown, key: string | null = CONTROL_KEY): Promise<HttpReply> {
  const res = await fetch(`${base}/control/${action}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key !== null ? { authorization: `Bearer ${key}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return answer(res);
}

/** GET /presence?<query> as it is given. */
export async function presenceQuery(base: string, query: string, key: string | null = CONTROL_KEY): Promise<HttpReply> {
  const res = await fetch(`${base}/presence?${query}`, {
    headers: key !== null ? { authorization: `Bearer ${key}` } : {},
    signal: AbortSignal.timeout(5000),
  });
  return answer(res);
}

export interface PresenceAnswer {
  users: Record<string, { online: boolean; connections: number }>;
  topics: Record<string, { connections: number }>;
}

/** GET /presence for these users and topics; throws unless 200. */
export async function presence(base: string, users: readonly string[], topics: readonly string[] = []): Promise<PresenceAnswer> {
  const q = new URLSearchParams([
    ...users.map((u): [string, string] => ['user', u]),
    ...topics.map((tp): [string, string] => ['topic', tp]),
  ]);
  const r = await presenceQuery(base, q.toString());
  if (r.status !== 200) throw new Error(`/presence answered ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as unknown as PresenceAnswer;
}

/** A user's connection count across live gateways, as /presence says. */
export async function userCount(base: string, user: string): Promise<number> {
  return (await presence(base, [user])).users[user]?.connections ?? Number.NaN;
}

/** The gateway's id in Redis (`<host>-<pid>-<hex>`), from the heartbeat set; undefined before its first beat. */
export async function gatewayIdOf(redis: Redis, gw: GatewayProcess, ns = 'herald'): Promise<string | undefined> {
  const ids = await redis.zrange(`${ns}:gateways`, 0, -1);
  return ids.find((id) => id.includes(`-${gw.proc.pid}-`));
}

/** Every key of a kind, by SCAN (never KEYS on a shared server; this one is the test's own). */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out.sort();
}

/** How the server closed `c`, within a deadline (a close that never comes fails, not hangs). */
export function closeOf(c: TestClient, timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the connection was not closed within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([c.closed, late]).finally(() => clearTimeout(timer));
}

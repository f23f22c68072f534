// Redis memory that Herald's notification history costs per topic (docs/DELIVERY.md,
// § Sizing). Starts a private redis-server (free port, no persistence), loads the
// `herald` function library exactly as a gateway does (functionLibrary from dist/,
// FUNCTION LOAD REPLACE), records K notifications on each of N topics with
// FCALL herald_publish, and reports per topic: MEMORY USAGE of the history stream,
// and the INFO used_memory delta with the herald:seen keys (they live 60 s after each
// message) and after they are gone. Every process it starts, it stops.
//
//   node_modules/.bin/tsc -p tsconfig.json && node_modules/.bin/tsc -p tsconfig.bench.json
//   node dist-bench/history-memory.js [--topics 1000] [--size 100]
import { randomUUID } from 'node:crypto';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { Redis as IORedis } from 'ioredis';
import { read } from '../dist/config.js';
import { functionLibrary, librarySettings } from '../dist/library.js';
import { killAll, startRedis } from './services.js';

const { values } = parseArgs({
  options: { topics: { type: 'string', default: '1000' }, size: { type: 'string', default: '100' } },
  strict: true,
});
const TOPICS = Number(values.topics);
const SIZE = Number(values.size);
if (!Number.isSafeInteger(TOPICS) || TOPICS < 1 || TOPICS > 100_000) throw new Error('--topics: expected 1-100000');
if (!Number.isSafeInteger(SIZE) || SIZE < 1 || SIZE > 100_000) throw new Error('--size: expected 1-100000 (HERALD_HISTORY_SIZE)');

// The gateway defaults: HERALD_HISTORY_TTL_S 300, the fixed 60 s seen window.
const LIBRARY = functionLibrary(
  librarySettings(read({}, 'HERALD_NAMESPACE'), read({}, 'HERALD_CHANNEL_PREFIX'), { size: SIZE, ttlMs: 300_000, recoveryMax: 300 }, 2),
);

/** [payload bytes, notifications per topic]; more than SIZE means trimmed: the steady state of a busy topic. */
const CASES: ReadonlyArray<[number, number]> = [
  [200, 10],
  [200, SIZE],
  [200, 3 * SIZE],
  [1000, 10],
  [1000, SIZE],
  [1000, 3 * SIZE],
];

/** A typical notification of exactly `bytes` bytes, with its own id (a UUID) so that every payload differs. */
function payload(bytes: number): string {
  const head = `{"id":"${randomUUID()}","type":"comment.created","title":"New comment on your post","body":"`;
  const tail = '"}';
  return head + 'x'.repeat(Math.max(0, bytes - head.length - tail.length)) + tail;
}

const topic = (i: number): string => `user:bench-${String(i).padStart(6, '0')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function usedMemory(redis: IORedis): Promise<number> {
  // Let serverCron resize and rehash the keyspace dicts after bulk changes.
  await sleep(1500);
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1]);
}

async function pipelined(redis: IORedis, commands: Iterable<string[]>): Promise<void> {
  let p = redis.pipeline();
  let n = 0;
  const flush = async (): Promise<void> => {
    const results = await p.exec();
    const failed = results?.find(([err]) => err !== null);
    if (failed !== undefined) throw failed[0];
    p = redis.pipeline();
    n = 0;
  };
  for (const args of commands) {
    p.call(...(args as [string, ...string[]]));
    if (++n === 1000) await flush();
  }
  if (n > 0) await flush();
}

async function seenKeys(redis: IORedis): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', 'herald:seen:*', 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

interface Row {
  bytes: number;
  published: number;
  kept: number;
  streamBytes: number;
  seenKeyBytes: number;
  withSeen: number;
  withoutSeen: number;
}

async function measure(redis: IORedis, bytes: number, perTopic: number): Promise<Row> {
  await redis.call('FLUSHALL', 'SYNC');
  await redis.call('FCALL', 'herald_epoch', '0'); // the one herald:epoch key, outside the deltas
  const before = await usedMemory(redis);
  function* publishes(): Generator<string[]> {
    for (let k = 0; k < perTopic; k++) for (let i = 0; i < TOPICS; i++) yield ['FCALL', 'herald_publish', '1', topic(i), payload(bytes)];
  }
  await pipelined(redis, publishes());
  const withSeen = await usedMemory(redis);

  let streamBytes = 0;
  for (let i = 0; i < TOPICS; i++)
    streamBytes += Number(await redis.call('MEMORY', 'USAGE', `herald:history:{${topic(i)}}`, 'SAMPLES', '0'));
  const kept = Number(await redis.xlen(`herald:history:{${topic(0)}}`));
  const seen = await seenKeys(redis);
  let seenKeyBytes = 0;
  const sample = seen.slice(0, 1000);
  for (const key of sample) seenKeyBytes += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));

  // What the seen keys' expiry (60 s on) leaves: the streams alone.
  function* deletes(): Generator<string[]> {
    for (let i = 0; i < seen.length; i += 500) yield ['DEL', ...seen.slice(i, i + 500)];
  }
  await pipelined(redis, deletes());
  const withoutSeen = await usedMemory(redis);
  return {
    bytes,
    published: perTopic,
    kept,
    streamBytes: streamBytes / TOPICS,
    seenKeyBytes: seenKeyBytes / Math.max(1, sample.length),
    withSeen: (withSeen - before) / TOPICS,
    withoutSeen: (withoutSeen - before) / TOPICS,
  };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const server = await startRedis(undefined);
  const redis = new IORedis(server.url, { maxRetriesPerRequest: 1 });
  try {
    await redis.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY);
    const version = /^redis_version:(\S+)/m.exec(await redis.info('server'))?.[1] ?? '?';
    const config = (await redis.config('GET', 'stream-node-max-*')) as string[];
    const rows: Row[] = [];
    for (const [bytes, perTopic] of CASES) {
      rows.push(await measure(redis, bytes, perTopic));
      process.stderr.write(`measured ${bytes} B × ${perTopic}\n`);
    }
    const lines = [
      `Machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, Redis ${version} (${config.join(' ')}).`,
      `${fmt(TOPICS)} topics; HERALD_HISTORY_SIZE ${SIZE}, HERALD_HISTORY_TTL_S 300; payloads with a UUID \`id\`. Bytes per topic:`,
      '',
      '| payload B | published per topic | entries kept | MEMORY USAGE stream | used_memory Δ, seen keys alive | used_memory Δ, seen keys gone | per entry kept | per seen key (MEMORY USAGE) |',
      '|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.bytes} | ${r.published} | ${r.kept} | ${fmt(r.streamBytes)} | ${fmt(r.withSeen)} | ${fmt(r.withoutSeen)} | ${fmt(r.withoutSeen / r.kept)} | ${fmt(r.seenKeyBytes)} |`,
      ),
    ];
    console.log(lines.join('\n'));
  } finally {
    redis.disconnect();
    killAll();
  }
}

main().catch((err: unknown) => {
  console.error(`history-memory: ${(err as Error).message}`);
  killAll();
  process.exit(1);
});

#!/usr/bin/env node
// `herald token` mints a JWT with the configured secret; `herald publish` sends a
// notification through Redis (HERALD_REDIS_URL set) or POST /publish.
import { parseArgs } from 'node:util';
import { ConfigError, channelPrefix, read, SETTINGS, signingAlgorithm } from './config.js';
import { readDevSecrets } from './dev.js';
import { isJson } from './payload.js';
import { isTopic, isValidName, topicToChannel } from './topics.js';

// ioredis and jose load only for the command that needs them: usage errors stay instant.

const USAGE = `usage:
  herald token --sub <user> [--roles a,b] [--topics 'org:rio,feed:*'] [--ttl 3600]
      Prints a JWT signed with HERALD_JWT_SECRET (or the dev secret of \`make run\`).
  herald publish --topic <topic> --data <json or text> [--url http://127.0.0.1:${SETTINGS.HERALD_PORT.default}]
      Publishes through Redis when HERALD_REDIS_URL is set, else through POST /publish
      with HERALD_PUBLISH_KEY (or the dev key of \`make run\`).`;

class UsageError extends Error {}

// Every HERALD_* variable is read through config.ts's parsers, as the gateway reads
// it: trimmed (a value mounted from a file often ends in a newline), checked, and
// with the same default.
const env = process.env;
const csv = (s: string | undefined): string[] =>
  (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');

function secretOrDev(name: 'HERALD_JWT_SECRET' | 'HERALD_PUBLISH_KEY'): string {
  const fromEnv = read(env, name);
  if (fromEnv !== undefined) return fromEnv;
  const dev = readDevSecrets();
  if (dev !== undefined) {
    process.stderr.write(`herald: ${name} is not set; using the dev value from .herald/dev.json\n`);
    return name === 'HERALD_JWT_SECRET' ? dev.jwtSecret : dev.publishKey;
  }
  throw new UsageError(`${name} is not set (and no .herald/dev.json from \`make run\` here)`);
}

async function token(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { sub: { type: 'string' }, roles: { type: 'string' }, topics: { type: 'string' }, ttl: { type: 'string' } },
    strict: true,
  });
  if (values.sub === undefined || values.sub === '') throw new UsageError('--sub is required');
  // The gateway refuses such a token (invalid_claims): say so here instead of minting it.
  if (!isValidName(values.sub)) throw new UsageError('--sub: expected 1-123 of [A-Za-z0-9_.@-] (no ":")');
  const badRole = csv(values.roles).find((r) => !isValidName(r));
  if (badRole !== undefined) throw new UsageError(`--roles: ${JSON.stringify(badRole)} is not 1-123 of [A-Za-z0-9_.@-] (no ":")`);
  const ttl = Number(values.ttl ?? '3600');
  if (!Number.isSafeInteger(ttl) || ttl < 1) throw new UsageError(`--ttl: expected a positive number of seconds, got ${values.ttl}`);
  const algorithm = signingAlgorithm(env);
  const secret = secretOrDev('HERALD_JWT_SECRET');
  const { mintToken } = await import('./token.js');
  process.stdout.write(
    `${await mintToken({
      secret,
      algorithm,
      sub: values.sub,
      roles: csv(values.roles),
      topics: csv(values.topics),
      ttlS: ttl,
      issuer: read(env, 'HERALD_JWT_ISSUER'),
      audience: read(env, 'HERALD_JWT_AUDIENCE'),
    })}\n`,
  );
}

async function publish(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { topic: { type: 'string' }, data: { type: 'string' }, url: { type: 'string' } },
    strict: true,
  });
  const topic = values.topic ?? '';
  if (!isTopic(topic)) throw new UsageError('--topic: expected 1-128 of [A-Za-z0-9:_.@-]');
  if (values.data === undefined) throw new UsageError('--data is required');
  const text = values.data;

  const redisUrl = read(env, 'HERALD_REDIS_URL');
  if (redisUrl !== undefined) {
    const ns = read(env, 'HERALD_NAMESPACE');
    const channel = topicToChannel(channelPrefix(env, ns), topic);
    const fn = `${ns}_publish`;
    const { Redis } = await import('ioredis');
    const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
    redis.on('error', () => undefined); // reported by the rejected command below
    try {
      await redis.connect();
      // <ns>_publish (loaded by the gateways) records the history entry and announces it
      // in one step; without it (history off) a plain PUBLISH is all there is.
      try {
        const kind = isJson(text) ? 'j' : 't';
        const [offset, id] = (await redis.call('FCALL', fn, '1', topic, text, kind)) as [string, string];
        process.stdout.write(`published ${topic} with ${fn} (id ${id}, offset ${offset})\n`);
      } catch (err) {
        if (!/function not found/i.test((err as Error).message)) throw err;
        const receivers = await redis.publish(channel, text);
        process.stdout.write(
          `published to redis ${channel} (${receivers} gateway subscriber${receivers === 1 ? '' : 's'}; history off: no ${fn} function)\n`,
        );
      }
    } finally {
      redis.disconnect();
    }
    return;
  }

  // Same meaning as a Redis payload: JSON data as JSON, anything else as a string.
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    data = text;
  }
  const base = values.url ?? read(env, 'HERALD_URL') ?? `http://127.0.0.1:${read(env, 'HERALD_PORT')}`;
  const res = await fetch(new URL('/publish', base), {
    method: 'POST',
    headers: { authorization: `Bearer ${secretOrDev('HERALD_PUBLISH_KEY')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ topic, data }),
  });
  const body = await res.text();
  if (res.status !== 202) throw new Error(`POST /publish answered ${res.status}: ${body}`);
  process.stdout.write(`published via ${base} ${body}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'token':
      return token(rest);
    case 'publish':
      return publish(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const code = (err as { code?: unknown }).code;
  if (err instanceof UsageError || err instanceof ConfigError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
    process.stderr.write(`herald: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(64);
  }
  process.stderr.write(`herald: ${(err as Error).message}\n`);
  process.exit(1);
});

#!/usr/bin/env node
// `herald token` mints a JWT with the configured secret; `herald publish` sends a
// notification through Redis (HERALD_REDIS_URL set) or POST /publish; `herald presence`
// and the control commands (disconnect, subscribe, unsubscribe, revoke) ask a gateway
// over HTTP (GET /presence, POST /control/<action>), which acts on every gateway.
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
      with HERALD_PUBLISH_KEY (or the dev key of \`make run\`).
  herald presence (--user <id> | --topic <topic>)... [--url <gateway>]
      Prints each user's and topic's connections across the gateways (1-100 in all),
      asked with HERALD_CONTROL_KEY or HERALD_PUBLISH_KEY.
  herald disconnect --user <id> [--connection <id>] [--reconnect] [--url <gateway>]
      Closes the user's connections (or the one), code 4000; with --reconnect 4001,
      after which the SDK connects again.
  herald subscribe --user <id> --topic <topic> [--url <gateway>]
  herald unsubscribe --user <id> --topic <topic> [--url <gateway>]
      Joins (leaves) the topic on each of the user's open connections.
  herald revoke --user <id> [--url <gateway>]
      Refuses the user's tokens issued before now and closes the connections using them.
  These four use HERALD_CONTROL_KEY (or the dev key of \`make run\`). Each prints the
  gateway's JSON answer; --url defaults to HERALD_URL, else http://127.0.0.1:<HERALD_PORT>.`;

class UsageError extends Error {}

/**
 * sysexits' EX_USAGE, the code `token` and `publish` have always used for a usage
 * error (docs/PUBLISHING.md): one code for every command.
 */
const EXIT_USAGE = 64;
/** A presence or control request, answer included, never takes longer (a gateway that accepts and never answers). */
const REQUEST_TIMEOUT_MS = 10_000;
/** A refusal's body is cut here on stderr: a --url pointing at something else may answer a whole page. */
const MAX_SHOWN_BODY = 2000;
/** The gateway's bound on one presence query, users and topics together. */
const MAX_PRESENCE_PARAMS = 100;
/** The gateway's bound on a connectionId (`connected` frames carry a UUID). */
const MAX_CONNECTION_ID = 64;

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

/** HERALD_CONTROL_KEY, for presence also HERALD_PUBLISH_KEY, else the dev key of `make run`. */
function controlKey(orPublishKey: boolean): string {
  // The environment names the deployment being talked to: it wins over a dev.json
  // that happens to lie in the current directory.
  const control = read(env, 'HERALD_CONTROL_KEY');
  if (control !== undefined) return control;
  const publish = orPublishKey ? read(env, 'HERALD_PUBLISH_KEY') : undefined;
  if (publish !== undefined) return publish;
  const dev = readDevSecrets();
  if (dev?.controlKey !== undefined) {
    process.stderr.write('herald: HERALD_CONTROL_KEY is not set; using the dev value from .herald/dev.json\n');
    return dev.controlKey;
  }
  if (orPublishKey && dev !== undefined) {
    process.stderr.write('herald: HERALD_CONTROL_KEY is not set; using the dev publish key from .herald/dev.json\n');
    return dev.publishKey;
  }
  const names = orPublishKey ? 'HERALD_CONTROL_KEY (or HERALD_PUBLISH_KEY)' : 'HERALD_CONTROL_KEY';
  // A dev.json written before the control API has no control key: `make run` adds one.
  const where = dev === undefined ? 'no .herald/dev.json from `make run` here' : '.herald/dev.json has no controlKey: run `make run` once';
  throw new UsageError(`${names} is not set (and ${where})`);
}

/** Where the gateway is: --url, else HERALD_URL, else this host at HERALD_PORT. */
function gatewayUrl(flag: string | undefined): string {
  if (flag === undefined) return read(env, 'HERALD_URL') ?? `http://127.0.0.1:${read(env, 'HERALD_PORT')}`;
  let url: URL;
  try {
    url = new URL(flag);
  } catch {
    throw new UsageError(`--url: not a valid URL: ${JSON.stringify(flag)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`--url: expected an http:// or https:// URL, got ${url.protocol}//`);
  }
  return flag;
}

function userId(s: string): string {
  // The gateway's `sub` grammar: any other id cannot own a connection.
  if (!isValidName(s)) throw new UsageError(`--user: ${JSON.stringify(s)} is not 1-123 of [A-Za-z0-9_.@-] (no ":")`);
  return s;
}

function topicName(s: string): string {
  if (!isTopic(s)) throw new UsageError(`--topic: ${JSON.stringify(s)} is not 1-128 of [A-Za-z0-9:_.@-]`);
  return s;
}

/** A flag given exactly once: parseArgs alone keeps the last of two, and `revoke --user a --user b` must not act on b only. */
function once(values: string[] | undefined, flag: string): string {
  if (values === undefined || values.length === 0) throw new UsageError(`${flag} is required`);
  if (values.length > 1) throw new UsageError(`${flag}: give it once (got ${values.length})`);
  return values[0] as string;
}

/** One request to the gateway; its JSON answer goes to stdout, a refusal or no answer is an error (exit 1). */
async function ask(base: string, path: string, key: string, body?: Record<string, unknown>): Promise<void> {
  const url = new URL(path, base);
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      // The key goes to this gateway only, never where a redirect points.
      redirect: 'manual',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    text = await res.text();
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') throw new Error(`no answer from ${url.origin} within ${REQUEST_TIMEOUT_MS / 1000} s`);
    // fetch says only "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, ...).
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    const why = typeof cause?.code === 'string' ? cause.code : String(cause?.message ?? (err as Error).message);
    throw new Error(`cannot reach a gateway at ${url.origin} (${why}); is it running? (--url, HERALD_URL, HERALD_PORT)`);
  }
  if (res.status < 200 || res.status > 299) throw new Error(`${res.status} ${text.trim().slice(0, MAX_SHOWN_BODY)}`.trimEnd());
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

async function presence(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { user: { type: 'string', multiple: true }, topic: { type: 'string', multiple: true }, url: { type: 'string' } },
    strict: true,
  });
  const users = (values.user ?? []).map(userId);
  const topics = (values.topic ?? []).map(topicName);
  const asked = users.length + topics.length;
  if (asked === 0) throw new UsageError('presence: give at least one --user or --topic');
  if (asked > MAX_PRESENCE_PARAMS)
    throw new UsageError(`presence: at most ${MAX_PRESENCE_PARAMS} --user and --topic in all (got ${asked})`);
  const base = gatewayUrl(values.url);
  const query = new URLSearchParams([
    ...users.map((u): [string, string] => ['user', u]),
    ...topics.map((t): [string, string] => ['topic', t]),
  ]);
  await ask(base, `/presence?${query}`, controlKey(true));
}

async function disconnect(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      user: { type: 'string', multiple: true },
      connection: { type: 'string', multiple: true },
      reconnect: { type: 'boolean' },
      url: { type: 'string' },
    },
    strict: true,
  });
  const user = userId(once(values.user, '--user'));
  const connectionId = values.connection === undefined ? undefined : once(values.connection, '--connection');
  if (connectionId !== undefined && (connectionId.length < 1 || connectionId.length > MAX_CONNECTION_ID)) {
    throw new UsageError(`--connection: expected 1-${MAX_CONNECTION_ID} characters (the connectionId of a \`connected\` frame)`);
  }
  const base = gatewayUrl(values.url);
  await ask(base, '/control/disconnect', controlKey(false), {
    user,
    ...(connectionId === undefined ? {} : { connectionId }),
    ...(values.reconnect === true ? { reconnect: true } : {}),
  });
}

/** `subscribe` and `unsubscribe`: the same body, opposite actions. */
async function topicControl(action: 'subscribe' | 'unsubscribe', args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { user: { type: 'string', multiple: true }, topic: { type: 'string', multiple: true }, url: { type: 'string' } },
    strict: true,
  });
  const user = userId(once(values.user, '--user'));
  const topic = topicName(once(values.topic, '--topic'));
  const base = gatewayUrl(values.url);
  await ask(base, `/control/${action}`, controlKey(false), { user, topic });
}

async function revoke(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { user: { type: 'string', multiple: true }, url: { type: 'string' } }, strict: true });
  const user = userId(once(values.user, '--user'));
  const base = gatewayUrl(values.url);
  await ask(base, '/control/revoke', controlKey(false), { user });
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
  // The gateway refuses a longer-lived token (invalid_claims): a revocation is kept only that long.
  const maxLifetimeS = read(env, 'HERALD_JWT_MAX_LIFETIME_S');
  if (ttl > maxLifetimeS) throw new UsageError(`--ttl: at most HERALD_JWT_MAX_LIFETIME_S (${maxLifetimeS}) seconds, got ${ttl}`);
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
  const base = gatewayUrl(values.url);
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
    case 'presence':
      return presence(rest);
    case 'disconnect':
      return disconnect(rest);
    case 'subscribe':
    case 'unsubscribe':
      return topicControl(command, rest);
    case 'revoke':
      return revoke(rest);
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
    process.exit(EXIT_USAGE);
  }
  process.stderr.write(`herald: ${(err as Error).message}\n`);
  process.exit(1);
});

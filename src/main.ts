#!/usr/bin/env node
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
// Entry point: env -> config -> logger -> gateway; signals -> shutdown.
// `--dev` (used by `make run`) fills in a generated secret and prints how to connect.
import { type Config, ConfigError, type Env, loadConfig, workerId as readWorkerId, signingAlgorithm } from './config.js';
import { ensureDevSecrets, withDevDefaults } from './dev.js';
import { startGateway } from './gateway.js';
import { createLogger } from './log.js';
import { runSupervisor } from './supervisor.js';
import { mintToken } from './token.js';
import { loadUws, UwsLoadError } from './uws.js';

function fatal(message: string, code: number): never {
  // The logger may not exist yet: this is the one place src/ writes to stderr directly.
  console.error(`herald: ${message}`);
  process.exit(code);
}

async function devBanner(env: Env, config: Config, port: number, generated: string[]): Promise<string> {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const key = config.jwt.key;
  const token =
    key.kind === 'secret'
      ? await mintToken({
          secret: key.secret,
          algorithm: signingAlgorithm(env),
          sub: 'alice',
          roles: ['admin'],
          topics: ['org:rio', 'feed:*'],
          ttlS: 24 * 3600,
          issuer: config.jwt.issuer,
          audience: config.jwt.audience,
        })
      : '<mint one with your identity provider>';
  const ws = `ws://${host}:${port}${config.wsPath}`;
  const lines = [
    '',
    '================================ HERALD DEV MODE ================================',
    ...(generated.length > 0
      ? [
          `  WARNING: using GENERATED dev secrets for ${generated.join(', ')} (kept in .herald/dev.json).`,
          '  Never use dev mode in production: `npm start` refuses to run without a key.',
        ]
      : []),
    `  mode:      ${config.redisUrl === undefined ? 'embedded (no Redis; POST /publish delivers locally)' : `redis ${config.redisUrl.replace(/\/\/[^@]*@/, '//***@')}`}`,
    `  websocket: ${ws}`,
    ...(config.demo
      ? [`  demo page: http://${host}:${port}/demo${key.kind === 'secret' ? `#token=${token}` : ' (paste a token into the page)'}`]
      : []),
    `  dev token (sub=alice, roles=[admin], topics=[org:rio, feed:*], 24 h):`,
    `    ${token}`,
    '',
    `  connect:   node -e "const ws=new (require('ws'))('${ws}',{headers:{authorization:'Bearer '+process.argv[1]}});ws.on('message',m=>console.log(String(m)))" <token>`,
    `             (or any client, e.g. wscat -c "${ws}?token=<token>")`,
    `  publish:   npx herald publish --url http://${host}:${port} --topic user:alice --data '{"title":"hi"}'`,
    ...(config.redisUrl !== undefined ? [`             redis-cli PUBLISH ${config.channelPrefix}:user:alice '{"title":"hi"}'`] : []),
    '  tokens:    npx herald token --sub bob --roles ops --ttl 3600',
    ...(config.controlKey !== undefined
      ? [`  control:   npx herald presence --url http://${host}:${port} --user alice   (or disconnect, subscribe --topic t, revoke)`]
      : []),
    `  health:    curl http://${host}:${port}/readyz   metrics: curl http://${host}:${port}/metrics`,
    '=================================================================================',
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const dev = process.argv.includes('--dev');
  let env: Env = process.env;
  let generated: string[] = [];
  if (dev) ({ env, generated } = withDevDefaults(process.env, ensureDevSecrets()));

  let config: Config;
  let workerId: number | undefined;
  try {
    config = loadConfig(env, availableParallelism());
    workerId = readWorkerId(env, config.workers);
  } catch (err) {
    if (err instanceof ConfigError) fatal(`configuration error: ${err.message}`, 2);
    throw err;
  }
  let uws: ReturnType<typeof loadUws>;
  try {
    uws = loadUws();
  } catch (err) {
    if (err instanceof UwsLoadError) fatal(err.message, 3);
    throw err;
  }
  const log = createLogger(config.logLevel, workerId);
  if (generated.length > 0 && workerId === undefined)
    log.warn({ generated }, 'DEV MODE: using generated secrets; never do this in production');
  if (config.workers > 1 && workerId === undefined) {
    runSupervisor(config, log, fileURLToPath(import.meta.url), process.argv.slice(2));
    return;
  }

  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(config, log, uws, {
      workerId,
      onConflict: (err) => fatal(`configuration error: ${err.message}`, 2),
    });
  } catch (err) {
    if (err instanceof ConfigError) fatal(`configuration error: ${err.message}`, 2);
    log.fatal({ err: (err as Error).message }, 'cannot start');
    process.exit(1);
  }
  if (dev && (workerId ?? 0) === 0) process.stderr.write(await devBanner(env, config, gateway.port, generated));

  const stop = (signal: string): void => {
    log.info({ signal }, 'shutting down');
    void gateway.shutdown().then((clean) => {
      if (clean) log.info('shutdown complete');
      else log.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out; exiting anyway');
      log.flush();
      process.exit(clean ? 0 : 1);
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // A worker whose supervisor died (SIGKILL, OOM) drains and exits rather than hold
  // the port as an orphan.
  if (workerId !== undefined) process.once('disconnect', () => stop('supervisor gone'));
}

main().catch((err: unknown) => fatal(`unexpected error: ${(err as Error).stack ?? String(err)}`, 1));

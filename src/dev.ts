// Development mode (`make run`): a generated JWT secret, publish key and control key, kept in
// .herald/dev.json so tokens minted by `herald token` keep working across restarts.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Env, isSet, SETTINGS } from './config.js';

export interface DevSecrets {
  jwtSecret: string;
  publishKey: string;
  controlKey?: string;
}

export const DEV_DIR = '.herald';
const DEV_FILE = 'dev.json';

export function readDevSecrets(dir: string = DEV_DIR): DevSecrets | undefined {
  const file = join(dir, DEV_FILE);
  if (!existsSync(file)) return undefined;
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<DevSecrets>;
  if (typeof parsed.jwtSecret !== 'string' || typeof parsed.publishKey !== 'string') return undefined;
  return {
    jwtSecret: parsed.jwtSecret,
    publishKey: parsed.publishKey,
    // A dev.json from before the control API has none: ensureDevSecrets adds one.
    ...(typeof parsed.controlKey === 'string' ? { controlKey: parsed.controlKey } : {}),
  };
}

export function ensureDevSecrets(dir: string = DEV_DIR): Required<DevSecrets> {
  const existing = readDevSecrets(dir);
  if (existing?.controlKey !== undefined) return existing as Required<DevSecrets>;
  // Keep what an older dev.json holds (its tokens stay valid); add what it lacks.
  const secrets: Required<DevSecrets> = {
    jwtSecret: existing?.jwtSecret ?? randomBytes(32).toString('base64url'),
    publishKey: existing?.publishKey ?? randomBytes(24).toString('hex'),
    controlKey: randomBytes(24).toString('hex'),
  };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, DEV_FILE), `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  return secrets;
}

/**
 * The env with dev secrets filled in where no key is configured, and each setting's
 * dev default (config.ts's SETTINGS: loopback only, the demo page on) where it is
 * unset; says which secrets were generated.
 */
export function withDevDefaults(env: Env, secrets: Required<DevSecrets>): { env: Env; generated: string[] } {
  const out: Record<string, string | undefined> = { ...env };
  const generated: string[] = [];
  const keyless = !isSet(env, 'HERALD_JWT_SECRET') && !isSet(env, 'HERALD_JWT_PUBLIC_KEY') && !isSet(env, 'HERALD_JWT_JWKS');
  if (keyless) {
    out['HERALD_JWT_SECRET'] = secrets.jwtSecret;
    generated.push('HERALD_JWT_SECRET');
  }
  for (const [name, setting] of Object.entries(SETTINGS)) {
    if ('dev' in setting && !isSet(env, name as keyof typeof SETTINGS)) out[name] = setting.dev;
  }
  if (!isSet(env, 'HERALD_PUBLISH_KEY')) {
    out['HERALD_PUBLISH_KEY'] = secrets.publishKey;
    generated.push('HERALD_PUBLISH_KEY');
  }
  if (!isSet(env, 'HERALD_CONTROL_KEY')) {
    out['HERALD_CONTROL_KEY'] = secrets.controlKey;
    generated.push('HERALD_CONTROL_KEY');
  }
  return { env: out, generated };
}

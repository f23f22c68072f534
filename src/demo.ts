// The demo page (HERALD_DEMO): client/demo/ and the SDK's browser build
// (client/dist/*.js, plain ES modules), read once at start and served from memory.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './config.js';

export interface DemoAsset {
  body: string;
  contentType: string;
}

const CLIENT_DIR = fileURLToPath(new URL('../client/', import.meta.url));
const HTML = 'text/html; charset=utf-8';
const JS = 'text/javascript; charset=utf-8';

/** URL path -> asset: /demo, /demo/demo.js, /demo/sdk/<module>.js. */
export function loadDemoAssets(clientDir: string = CLIENT_DIR): ReadonlyMap<string, DemoAsset> {
  const assets = new Map<string, DemoAsset>();
  const read = (...parts: string[]): string => readFileSync(join(clientDir, ...parts), 'utf8');
  try {
    const page = { body: read('demo', 'index.html'), contentType: HTML };
    assets.set('/demo', page);
    assets.set('/demo/', page);
    assets.set('/demo/demo.js', { body: read('demo', 'demo.js'), contentType: JS });
    for (const file of readdirSync(join(clientDir, 'dist'))) {
      if (file.endsWith('.js')) assets.set(`/demo/sdk/${file}`, { body: read('dist', file), contentType: JS });
    }
  } catch (err) {
    throw new ConfigError(`HERALD_DEMO: the demo page needs the built client in ${clientDir} (run \`make build\`): ${(err as Error).message}`);
  }
  if (!assets.has('/demo/sdk/index.js')) {
    throw new ConfigError(`HERALD_DEMO: ${join(clientDir, 'dist', 'index.js')} is missing (run \`make build\`)`);
  }
  return assets;
}

/** Headers for every demo asset: same-origin scripts only, sockets to any ws(s) host. */
export const DEMO_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

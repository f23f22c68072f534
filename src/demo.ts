// The demo page (HERALD_DEMO): client/demo/ and the SDK's browser build
// (client/dist/*.js, plain ES modules), read once at start and served from memory.
import { readdirSync, readFileSync } from 'node:fs';
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
    throw new ConfigError(
      `HERALD_DEMO: the demo page needs the built client in ${clientDir} (run \`make build\`): ${(err as Error).message}`,
    );
  }
  if (!assets.has('/demo/sdk/index.js')) {
    throw new ConfigError(`HERALD_DEMO: ${join(clientDir, 'dist', 'index.js')} is missing (run \`make build\`)`);
  }
  return assets;
}

/**
 * The assets with the page told where the WebSocket is (HERALD_WS_PATH, a path of
 * [A-Za-z0-9._~/-], so safe in an attribute): the page connects to its own origin only.
 */
export function withWsPath(assets: ReadonlyMap<string, DemoAsset>, wsPath: string): ReadonlyMap<string, DemoAsset> {
  const out = new Map(assets);
  for (const key of ['/demo', '/demo/']) {
    const page = assets.get(key);
    if (page !== undefined) {
      out.set(key, {
        ...page,
        body: page.body.replace('<meta name="herald-ws-path" content="/ws">', `<meta name="herald-ws-path" content="${wsPath}">`),
      });
    }
  }
  return out;
}

/**
 * Headers for every demo asset: same-origin scripts, and sockets to this origin only
 * (CSP 3's 'self' covers ws: and wss: on the page's host and port), so a token pasted
 * into the page cannot be sent to another host.
 */
export const DEMO_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

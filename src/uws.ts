// The only importer of uWebSockets.js. The npm package behind our alias silently
// falls back to a slow pure-JS server when its native binary does not load; Herald
// loads the binary itself and refuses to start without it.

import type * as UWS from 'uWebSockets.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export type {
  HttpRequest,
  HttpResponse,
  TemplatedApp,
  us_listen_socket,
  us_socket_context_t,
  WebSocket,
  WebSocketBehavior,
} from 'uWebSockets.js';
export type Uws = typeof UWS;

export class UwsLoadError extends Error {
  override name = 'UwsLoadError';
}

export interface BinaryTarget {
  platform: string;
  arch: string;
  /** Node's ABI version, process.versions.modules (115 for Node 20). */
  modules: string;
}

const require = createRequire(import.meta.url);

/** The folder of the installed `uWebSockets.js` package (upstream or our npm alias). */
export function uwsPackageDir(): string {
  return dirname(require.resolve('uWebSockets.js/package.json'));
}

/**
 * Loads `uws_<platform>_<arch>_<abi>.node` from the package: `binaries/` in the npm
 * alias, the package root upstream. Never the JS fallback.
 */
export function loadNativeUws(
  packageDir: string,
  target: BinaryTarget = { platform: process.platform, arch: process.arch, modules: process.versions.modules },
): Uws {
  const file = `uws_${target.platform}_${target.arch}_${target.modules}.node`;
  const tried: string[] = [];
  for (const candidate of [join(packageDir, 'binaries', file), join(packageDir, file)]) {
    if (!existsSync(candidate)) {
      tried.push(`${candidate}: not found`);
      continue;
    }
    try {
      const native = require(candidate) as Uws;
      if (typeof native.App !== 'function' || typeof native.us_listen_socket_close !== 'function') {
        tried.push(`${candidate}: not a uWebSockets.js binary`);
        continue;
      }
      return native;
    } catch (err) {
      tried.push(`${candidate}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new UwsLoadError(
    `uWebSockets.js: no native binary loads for ${target.platform}-${target.arch}, Node ABI ${target.modules}.\n` +
      `  ${tried.join('\n  ')}\n` +
      'Herald refuses to run on the pure-JS fallback (it is many times slower). Use Node 20 on Linux x64 with glibc,\n' +
      'or point the "uWebSockets.js" alias in package.json at a uWebSockets.js build for this platform, then `npm ci`.',
  );
}

export function loadUws(): Uws {
  return loadNativeUws(uwsPackageDir());
}

type ListenWithOptions = (host: string, port: number, options: number, cb: (socket: us_listen_socket | false) => void) => TemplatedApp;

/**
 * listen(host, port, LIBUS_LISTEN_EXCLUSIVE_PORT, cb): the binary has this overload and
 * constant, the package's types do not. Exclusive means a second process on the same
 * port fails to listen instead of silently sharing it (uWS's default is SO_REUSEPORT).
 */
export function listenExclusive(
  uws: Uws,
  app: TemplatedApp,
  host: string,
  port: number,
  cb: (socket: us_listen_socket | false) => void,
): void {
  const exclusive = (uws as Uws & { LIBUS_LISTEN_EXCLUSIVE_PORT: number }).LIBUS_LISTEN_EXCLUSIVE_PORT;
  (app.listen as unknown as ListenWithOptions).call(app, host, port, exclusive, cb);
}

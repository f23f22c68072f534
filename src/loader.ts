// Keeps the deployment's function library (library.ts, history.ts) loaded on the
// command connection, history on: Redis is looked at, and the library loaded when
// missing or older, every time the connection is (again) ready, because a Redis that
// lost its data lost the library too. One state machine: `loaded` on the connection's
// current session, and whether it ever was: a conflicting library found at the first
// contact stops the gateway (onConflict); found later (someone loaded another meanwhile)
// it is looked at again every CONFLICT_RETRY_MS, the gateway not ready meanwhile.
import type { Redis } from 'ioredis';
import { type History, LibraryConflict } from './history.js';
import type { Logger } from './log.js';

export interface LibraryLoaderOptions {
  commands: Redis;
  history: History;
  /** `loaded` changed (either way). */
  onChange(why: string): void;
  /** Redis holds this deployment's library with other settings, or another's with our
   *  prefix, when this gateway first reaches it: it must not start. */
  onConflict(err: LibraryConflict): void;
  log: Logger;
}

export interface LibraryLoader {
  /** The library is loaded on the command connection's current session. */
  readonly loaded: boolean;
}

/** After a library conflict found once running, the next look, ms. */
const CONFLICT_RETRY_MS = 5000;

export function createLibraryLoader(opts: LibraryLoaderOptions): LibraryLoader {
  const { commands, history } = opts;
  const llog = opts.log.child({ component: 'library' });
  let loaded = false;
  let everLoaded = false;

  commands.on('ready', () => {
    history.load().then(
      () => {
        loaded = true;
        everLoaded = true;
        opts.onChange('library loaded');
      },
      (err: Error) => {
        if (err instanceof LibraryConflict && !everLoaded) {
          opts.onConflict(err);
          return;
        }
        llog.error({ err }, 'cannot load the function library; trying again');
        // A new session looks again ('ready').
        setTimeout(() => commands.disconnect(true), err instanceof LibraryConflict ? CONFLICT_RETRY_MS : 0).unref();
      },
    );
  });
  commands.on('close', () => {
    if (!loaded) return;
    loaded = false;
    opts.onChange('command connection closed');
  });

  return {
    get loaded() {
      return loaded;
    },
  };
}

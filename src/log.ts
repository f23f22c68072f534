// The one place pino is configured. Tokens, keys and cookies are redacted wherever
// they would appear; payload bodies are never logged at info. An unexpected error is
// logged as `{ err }`: its type, message, stack and own properties, redacted likewise.
import { type Logger, pino } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/** `workerId` is set in a worker under the supervisor, and goes on every line. */
export function createLogger(level: LogLevel, workerId?: number, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid, service: 'herald', ...(workerId !== undefined ? { worker: workerId } : {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // pino's default, written out because the stack depends on it: `err: err.message`
    // would keep one line and lose where it came from.
    serializers: { err: pino.stdSerializers.err },
    redact: {
      paths: [
        'token',
        '*.token',
        'authorization',
        '*.authorization',
        'cookie',
        '*.cookie',
        'headers.authorization',
        'headers.cookie',
        'secret',
        '*.secret',
        'publishKey',
        '*.publishKey',
        'controlKey',
        '*.controlKey',
        // ioredis puts the failed command on its errors: AUTH's password, or the
        // notification payloads of a PUBLISH or FCALL.
        '*.command.args',
      ],
      censor: '[redacted]',
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

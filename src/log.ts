// The one place pino is configured. Tokens, keys and cookies are redacted wherever
// they would appear; payload bodies are never logged at info.
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
      ],
      censor: '[redacted]',
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

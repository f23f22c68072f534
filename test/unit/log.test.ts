// The logger as configured in src/log.ts: an error logged as `{ err }` keeps its stack,
// and secrets are redacted wherever they sit, on an error too.
import t from 'tap';
import { createLogger } from '../../dist/log.js';

/** A logger at `debug` writing into an array, and the lines it wrote, parsed. */
function capture() {
  const written: string[] = [];
  const log = createLogger('debug', undefined, { write: (line: string) => void written.push(line) });
  const lines = () => written.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines };
}

t.test('an error logged as { err } keeps its type, message and stack', async (t) => {
  const { log, lines } = capture();
  const err = new TypeError('boom');
  log.error({ err }, 'step failed');
  const [line] = lines();
  const logged = line?.['err'] as Record<string, unknown> | undefined;
  t.equal(logged?.['type'], 'TypeError');
  t.equal(logged?.['message'], 'boom');
  t.equal(logged?.['stack'], err.stack, 'the whole stack, not one line');
  t.match(logged?.['stack'], /log\.test\.[jt]s/, 'which names where the error was made');
});

t.test('a child logger serializes { err } too, and something thrown that is not an Error stays as it was', async (t) => {
  const { log, lines } = capture();
  log.child({ component: 'x' }).warn({ err: new Error('child') }, 'a');
  log.warn({ err: 'a string was thrown' }, 'b');
  const [child, thrown] = lines();
  t.equal((child?.['err'] as Record<string, unknown> | undefined)?.['message'], 'child');
  t.equal(child?.['component'], 'x');
  t.equal(thrown?.['err'], 'a string was thrown');
});

t.test('secrets are redacted at the top level, one level down, and on an error', async (t) => {
  const { log, lines } = capture();
  const rows: Array<[name: string, fields: Record<string, unknown>, path: string[]]> = [
    ['token', { token: 'eyJ.a.b' }, ['token']],
    ['a nested token', { frame: { token: 'eyJ.a.b' } }, ['frame', 'token']],
    ['authorization header', { headers: { authorization: 'Bearer eyJ.a.b' } }, ['headers', 'authorization']],
    ['cookie header', { headers: { cookie: 'sid=1' } }, ['headers', 'cookie']],
    ['secret', { secret: 'hunter2' }, ['secret']],
    ['publish key', { config: { publishKey: 'k' } }, ['config', 'publishKey']],
    ['control key', { config: { controlKey: 'k' } }, ['config', 'controlKey']],
    ['a token on an error', { err: Object.assign(new Error('x'), { token: 'eyJ.a.b' }) }, ['err', 'token']],
    [
      "an ioredis error's command arguments (AUTH's password)",
      { err: Object.assign(new Error('WRONGPASS'), { command: { name: 'auth', args: ['herald', 'hunter2'] } }) },
      ['err', 'command', 'args'],
    ],
  ];
  for (const [, fields] of rows) log.info(fields, 'line');
  for (const [i, [name, , path]] of rows.entries()) {
    let value: unknown = lines()[i];
    for (const key of path) value = (value as Record<string, unknown> | undefined)?.[key];
    t.equal(value, '[redacted]', name);
  }
  const kept = lines()[rows.length - 1]?.['err'] as { command?: { name?: string } } | undefined;
  t.equal(kept?.command?.name, 'auth', "the command's name is kept");
});

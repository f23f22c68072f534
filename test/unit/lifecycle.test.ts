// Readiness and the shutdown sequence, with a real logger writing into an array and
// real timers (the deadline is a few tens of ms).
import t from 'tap';
import { NotReady } from '../../client/dist/codes.js';
import { createLifecycle, type ShutdownStep } from '../../dist/lifecycle.js';
import { createLogger } from '../../dist/log.js';

function capture() {
  const written: string[] = [];
  const log = createLogger('debug', undefined, { write: (line: string) => void written.push(line) });
  return { log, lines: () => written.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

t.test('readiness: starting, then ready once serving, not ready without Redis, draining once shutdown starts', async (t) => {
  let redisUp = false;
  const { log } = capture();
  const lc = createLifecycle({ log, timeoutMs: 1000, redisUp: () => redisUp });
  t.strictSame(lc.readiness(), { ready: false, why: NotReady.Starting });
  lc.serving();
  t.strictSame(lc.readiness(), { ready: false, why: NotReady.RedisUnavailable });
  redisUp = true;
  t.strictSame(lc.readiness(), { ready: true });
  const done = lc.shutdown([]);
  t.strictSame(lc.readiness(), { ready: false, why: NotReady.Draining });
  lc.serving();
  t.strictSame(lc.readiness(), { ready: false, why: NotReady.Draining }, 'serving() does not undo a shutdown');
  t.equal(await done, true);
});

t.test('a failing shutdown step is logged with its stack and the later steps still run', async (t) => {
  const { log, lines } = capture();
  const lc = createLifecycle({ log, timeoutMs: 1000 });
  const ran: string[] = [];
  const failure = new Error('redis quit failed');
  const steps: ShutdownStep[] = [
    { name: 'first', run: () => void ran.push('first') },
    {
      name: 'redis',
      run: async () => {
        throw failure;
      },
    },
    { name: 'last', run: () => void ran.push('last') },
  ];
  t.equal(await lc.shutdown(steps), true, 'finished before the deadline');
  t.strictSame(ran, ['first', 'last']);
  const line = lines().find((l) => l['msg'] === 'shutdown step failed');
  t.equal(line?.['step'], 'redis');
  const err = line?.['err'] as Record<string, unknown> | undefined;
  t.equal(err?.['message'], 'redis quit failed');
  t.equal(err?.['stack'], failure.stack, 'the stack survives');
});

t.test('shutdown runs once however often it is asked, and a stuck step ends at the deadline', async (t) => {
  const { log } = capture();
  const lc = createLifecycle({ log, timeoutMs: 50 });
  let runs = 0;
  const stuck: ShutdownStep = {
    name: 'stuck',
    run: () => {
      runs++;
      return new Promise<void>(() => undefined);
    },
  };
  // The deadline's timer is unref'd (it must not hold a gateway open): this one keeps
  // the test process alive until the deadline has passed.
  const alive = setTimeout(() => undefined, 5000);
  t.teardown(() => clearTimeout(alive));
  const first = lc.shutdown([stuck]);
  const second = lc.shutdown([stuck]);
  t.equal(first, second, 'the same promise');
  t.equal(await first, false, 'resolved false at the deadline');
  t.equal(runs, 1);
});

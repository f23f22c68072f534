// The chaos run (bench/chaos.ts) at the size the durable-delivery issue names: 300
// SDK clients, three gateway workers, 500 notifications/s for 60 s, half plain PUBLISH
// and half herald_publish, through a SIGKILL of a worker holding a recorder slot, 10% of
// sockets cut for 2 s, one worker's Redis subscriber cut for 3 s and a redis-server
// restart (appendonly: nothing lost). Every client must have every notification
// addressed to it exactly once (after the SDK's de-duplication); a recovered:false
// signal excuses only what was published before it reached the client, and since
// Redis keeps its data none may be needed.
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ROOT, spawnNode } from '../support/gateway.js';

const CHAOS = fileURLToPath(new URL('../../dist-bench/chaos.js', import.meta.url));

t.setTimeout(300_000);

t.test('chaos: nothing lost without a signal, nothing shown twice', async (t) => {
  const run = spawnNode(CHAOS, ['--clients', '300', '--rate', '500', '--seconds', '60'], { PATH: process.env['PATH'] ?? '' }, ROOT);
  t.teardown(() => {
    if (run.proc.exitCode === null) run.proc.kill('SIGKILL');
  });
  const { code } = await run.exited;
  const line = run
    .stdout()
    .split('\n')
    .find((l) => l.startsWith('CHAOS '));
  t.equal(code, 0, `the run completed with nothing lost or shown twice (exit 0); stderr: ${run.stderr().slice(-2000)}`);
  if (line === undefined) {
    t.fail('no CHAOS summary line');
    return;
  }
  const s = JSON.parse(line.slice('CHAOS '.length)) as Record<string, unknown>;
  t.comment(`published ${s['published']}, confirmed ${s['confirmed']}, failed ${s['failed']}, heard by no gateway ${s['unheard']}`);
  t.comment(
    `deliveries expected ${s['deliveriesExpected']}: lost ${s['lost']}, duplicated ${s['duplicated']}, unrecovered topics ${s['unrecoveredTopics']} (signalled ${s['lostButSignalled']})`,
  );
  t.comment(`events: ${(s['events'] as string[]).join('; ')}`);
  t.equal((s['events'] as string[]).length, 4, 'all four faults happened');
  t.match((s['events'] as string[])[0], /\(a recorder\)$/, 'the killed worker held a recorder slot');
  t.ok(Number(s['confirmed']) > 0.8 * Number(s['published']), 'most publishes were confirmed (the rest fell in the Redis restart)');
  t.equal(s['open'], 300, 'every client is connected at the end');
  t.equal(s['lost'], 0, `no notification lost without a recovered:false signal ${JSON.stringify(s['lostSamples'])}`);
  t.equal(s['duplicated'], 0, 'no notification shown twice');
  t.equal(s['unrecoveredTopics'], 0, 'Redis kept its data: no topic needed a recovered:false');
});

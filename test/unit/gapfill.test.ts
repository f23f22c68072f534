// The gap fill's state machine (src/gapfill.ts) with a real deliverer and a history
// that records what it is asked: where each held topic's fill starts.
import t from 'tap';
import { createDedupWindow } from '../../dist/dedup.js';
import { createDeliverer } from '../../dist/deliver.js';
import { createGapFill } from '../../dist/gapfill.js';
import type { History, Recovery, ResumePoint } from '../../dist/history.js';
import { createLogger } from '../../dist/log.js';
import { createMetrics } from '../../dist/metrics.js';
import { offsetMs } from '../../dist/offsets.js';

function setup() {
  const asked: Array<Map<string, ResumePoint>> = [];
  const history = {
    epoch: 'e1',
    noteEpoch: () => undefined,
    load: async () => undefined,
    publish: async () => [],
    async since(_epoch: string, points: ReadonlyMap<string, ResumePoint>) {
      asked.push(new Map(points));
      return new Map<string, Recovery>([...points.keys()].map((k) => [k, { recovered: true, entries: [] }]));
    },
    page: async () => ({ epoch: 'e1', entries: [] }), // not a gap fill's
  } satisfies History;
  const deliverer = createDeliverer({
    fanout: { publish: () => true, numSubscribers: () => 1 },
    dedup: createDedupWindow({ windowMs: 60_000, maxEntries: 1000 }),
    metrics: createMetrics(),
    maxBytes: 65_536,
  });
  const held = new Set(['user:a', 'user:b']);
  const gap = createGapFill({
    history,
    deliverer,
    held: () => held,
    commandsReady: async () => undefined,
    metrics: createMetrics(),
    log: createLogger('silent'),
  });
  const deliver = (topic: string, offset: string): void => {
    deliverer.deliver(topic, '{}', 0, { id: offset, offset, epoch: 'e1', ts: offsetMs(offset), json: true });
  };
  return { asked, held, gap, deliver };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 10));

t.test('a fill starts from the offsets delivered when the connection dropped, not from what arrived with the resubscription', async (t) => {
  const { asked, gap, deliver } = setup();
  gap.subscribed();
  deliver('user:a', '1000-0');
  gap.lost();
  // The resubscription's confirmation and a live announcement came in one read: the
  // notification was delivered before the fill began.
  deliver('user:a', '5000-0');
  gap.subscribed();
  await settle();
  t.same(asked[0]?.get('user:a'), { offset: '1000-0' }, 'from 1000-0: what was announced between the drop and 5000-0 is replayed');
  t.same(
    asked[0]?.get('user:b'),
    { since: 1000 - 2000 },
    'a topic with no offset starts 2 s before the newest entry delivered at the drop',
  );
});

t.test('no fill without a drop, and a second loss before the fill keeps the first point', async (t) => {
  const { asked, gap, deliver, held } = setup();
  gap.subscribed();
  await settle();
  t.equal(asked.length, 0, 'the first subscription fills nothing');
  deliver('user:a', '2000-0');
  gap.lost();
  deliver('user:a', '3000-0');
  gap.lost();
  held.add('user:c'); // held while the connection was down: its connected went out at once
  gap.subscribed();
  await settle();
  t.same(asked[0]?.get('user:a'), { offset: '2000-0' });
  t.same(asked[0]?.get('user:c'), { since: 0 }, 'a topic first held during the outage starts from the drop time');
});

// Herald's own counters, read from each gateway's /metrics (Prometheus text): what
// Redis sent it, what it delivered, and what it did as a recorder. The bench compares
// them with what it published and with what redis-server says it reached.

/** One gateway's counters at one moment (counters are totals since it started). */
export interface Counters {
  /** herald_redis_messages_total{source="topic"}: routed to its interest subscriptions. */
  topic: number;
  /** herald_redis_messages_total{source="pattern"}: received as a recorder. */
  pattern: number;
  /** herald_notifications_published_total: one per notification handed to uWS. */
  published: number;
  /** herald_notifications_unrouted_total: arrived for a topic nobody here holds. */
  unrouted: number;
  /** herald_recorder_announcements_delivered_total: redis-server's PUBLISH replies. */
  announcements: number;
  /** herald_history_writes_total by result. */
  recorded: number;
  found: number;
  failed: number;
  dropped: number;
  /** Gauges: channels held for topics, and 1 while it holds a recorder slot. */
  subscriptions: number;
  recorder: number;
  /** What connects and disconnects leave for the gateway to do in batches (upkeep.ts
   *  waits until these stop moving): open connections, users' control channels held,
   *  SUBSCRIBE/UNSUBSCRIBE commands sent, per-user admission checks made in Redis,
   *  presence entries and connection events written. */
  open: number;
  controlChannels: number;
  subscribeCommands: number;
  unsubscribeCommands: number;
  admissionChecks: number;
  presenceWrites: number;
  eventsWritten: number;
}

/** The series read, by their exact name and labels as prom-client prints them. */
const SERIES: Record<string, keyof Counters> = {
  'herald_redis_messages_total{source="topic"}': 'topic',
  'herald_redis_messages_total{source="pattern"}': 'pattern',
  herald_notifications_published_total: 'published',
  herald_notifications_unrouted_total: 'unrouted',
  herald_recorder_announcements_delivered_total: 'announcements',
  'herald_history_writes_total{result="recorded"}': 'recorded',
  'herald_history_writes_total{result="found"}': 'found',
  'herald_history_writes_total{result="failed"}': 'failed',
  'herald_history_writes_total{result="dropped"}': 'dropped',
  'herald_redis_subscriptions{kind="topic"}': 'subscriptions',
  herald_recorder: 'recorder',
  herald_connections: 'open',
  'herald_redis_subscriptions{kind="control"}': 'controlChannels',
  'herald_redis_subscription_commands_total{command="subscribe"}': 'subscribeCommands',
  'herald_redis_subscription_commands_total{command="unsubscribe"}': 'unsubscribeCommands',
  'herald_admission_checks_total{where="redis"}': 'admissionChecks',
  herald_presence_writes_total: 'presenceWrites',
  'herald_connection_events_total{outcome="written"}': 'eventsWritten',
};

/** Counters from a /metrics text; a series the gateway does not export reads 0. */
export function parseCounters(text: string): Counters {
  const c: Counters = {
    topic: 0,
    pattern: 0,
    published: 0,
    unrouted: 0,
    announcements: 0,
    recorded: 0,
    found: 0,
    failed: 0,
    dropped: 0,
    subscriptions: 0,
    recorder: 0,
    open: 0,
    controlChannels: 0,
    subscribeCommands: 0,
    unsubscribeCommands: 0,
    admissionChecks: 0,
    presenceWrites: 0,
    eventsWritten: 0,
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const key = SERIES[line.slice(0, space)];
    if (key !== undefined) c[key] = Number(line.slice(space + 1));
  }
  return c;
}

/** A gateway still working through an overloaded step's backlog answers late: wait for it. */
const SCRAPE_TIMEOUT_MS = 120_000;

export async function scrape(port: number): Promise<Counters> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`gateway on ${port}: /metrics answered ${res.status}`);
  return parseCounters(await res.text());
}

/** How long settledCounters waits for the gateways to go quiet. */
const SETTLE_MAX_MS = 120_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const same = (a: Counters[], b: Counters[]): boolean =>
  a.every((x, i) => (Object.keys(x) as (keyof Counters)[]).every((k) => x[k] === b[i]?.[k]));

/**
 * Every gateway's counters once they stopped moving: a recorder counts its
 * announcements when its recording call answers, which can be just after the
 * deliveries it announced arrived; and after an overloaded step the gateways work
 * through what Redis already sent them (recording, announcing) for a while. The next
 * step must not start, nor this one be counted, before that ends: readings 250 ms
 * apart, equal for `quietMs` (a second unless told), within SETTLE_MAX_MS.
 */
export async function settledCounters(ports: number[], quietMs = 1000): Promise<Counters[]> {
  const started = Date.now();
  let prev = await Promise.all(ports.map(scrape));
  let stable = 0;
  while (stable < quietMs / 250 && Date.now() - started < SETTLE_MAX_MS) {
    await sleep(250);
    const next = await Promise.all(ports.map(scrape));
    stable = same(prev, next) ? stable + 1 : 0;
    prev = next;
  }
  return prev;
}

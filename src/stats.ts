// GET /stats: a JSON snapshot for humans and load balancers, across every worker
// on the host when running under the supervisor. Pure.

export interface WorkerStats {
  id: number;
  pid: number;
  connections: number;
  /** Topics with at least one subscriber in this worker. */
  topics: number;
  rssBytes: number;
  uptimeS: number;
  redis: 'up' | 'down' | 'embedded';
  /** The recorder slot this worker holds (history on), if any. */
  recorderSlot?: number;
}

export interface HostStats {
  version: string;
  mode: 'embedded' | 'redis';
  uptimeS: number;
  connections: number;
  /** 'up' only when every worker's Redis link is up. */
  redis: 'up' | 'down' | 'embedded';
  workers: WorkerStats[];
}

export function hostStats(version: string, workers: readonly WorkerStats[]): HostStats {
  const sorted = [...workers].sort((a, b) => a.id - b.id);
  const redis = sorted.every((w) => w.redis === 'embedded') ? 'embedded' : sorted.every((w) => w.redis === 'up') ? 'up' : 'down';
  return {
    version,
    mode: redis === 'embedded' ? 'embedded' : 'redis',
    uptimeS: Math.max(0, ...sorted.map((w) => w.uptimeS)),
    connections: sorted.reduce((sum, w) => sum + w.connections, 0),
    redis,
    workers: sorted,
  };
}

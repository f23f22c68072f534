// Admission control before any JWT work: a global connection cap (503), a cap per
// client address (429) and an upgrade rate per address (429). Counts include
// upgrades still being verified, so a burst cannot overshoot a cap while jose works.
// Every check is O(1); per-address state is dropped once idle. Pure: time is passed in.

export interface AdmissionLimits {
  /** 0 = no limit. */
  maxConnections: number;
  /** 0 = no limit. */
  maxConnectionsPerIp: number;
  /** Upgrades per second per address (burst of the same size); 0 = no limit. */
  upgradeRatePerIp: number;
}

export type Refusal =
  | { status: 503; reason: 'too_many_connections' }
  | { status: 429; reason: 'too_many_connections_from_address' | 'upgrade_rate_exceeded' };

interface Address {
  /** Open plus admitted-but-not-yet-open connections. */
  held: number;
  /** Token bucket for the upgrade rate. */
  tokens: number;
  refilledAt: number;
}

export interface Admission {
  /** Reserves a place for an upgrade from `ip`, or says why not. */
  admit(ip: string, now: number): Refusal | undefined;
  /** The reserved place is given back (refused, aborted, or the connection closed). */
  release(ip: string): void;
  /** Connections held or being admitted, overall. */
  readonly held: number;
  /** Addresses tracked (for tests and /stats); idle ones are swept. */
  readonly addresses: number;
  /** Forgets addresses that hold nothing and whose bucket is full again. */
  sweep(now: number): void;
}

export function createAdmission(limits: AdmissionLimits): Admission {
  const { maxConnections, maxConnectionsPerIp, upgradeRatePerIp } = limits;
  const byIp = new Map<string, Address>();
  let held = 0;

  function refill(a: Address, now: number): void {
    if (upgradeRatePerIp === 0) return;
    a.tokens = Math.min(upgradeRatePerIp, a.tokens + ((now - a.refilledAt) / 1000) * upgradeRatePerIp);
    a.refilledAt = now;
  }

  return {
    admit(ip, now) {
      if (maxConnections > 0 && held >= maxConnections) return { status: 503, reason: 'too_many_connections' };
      let a = byIp.get(ip);
      if (a === undefined) {
        a = { held: 0, tokens: upgradeRatePerIp, refilledAt: now };
        byIp.set(ip, a);
      }
      if (maxConnectionsPerIp > 0 && a.held >= maxConnectionsPerIp) return { status: 429, reason: 'too_many_connections_from_address' };
      if (upgradeRatePerIp > 0) {
        refill(a, now);
        if (a.tokens < 1) return { status: 429, reason: 'upgrade_rate_exceeded' };
        a.tokens -= 1;
      }
      a.held++;
      held++;
      return undefined;
    },
    release(ip) {
      const a = byIp.get(ip);
      if (a === undefined || a.held === 0) return;
      a.held--;
      held--;
    },
    get held() {
      return held;
    },
    get addresses() {
      return byIp.size;
    },
    sweep(now) {
      for (const [ip, a] of byIp) {
        refill(a, now);
        if (a.held === 0 && (upgradeRatePerIp === 0 || a.tokens >= upgradeRatePerIp)) byIp.delete(ip);
      }
    },
  };
}

/** The client address: the socket's, or the first X-Forwarded-For hop when the proxy is trusted. */
export function clientAddress(socketAddress: string, forwardedFor: string, trustProxy: boolean): string {
  if (!trustProxy || forwardedFor === '') return socketAddress;
  const first = forwardedFor.split(',', 1)[0]?.trim() ?? '';
  // A hop that is not an address (garbage, or absurdly long) is not trusted.
  return /^[0-9A-Fa-f:.]{2,45}$/.test(first) ? first : socketAddress;
}

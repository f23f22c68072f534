// Admission control before any JWT work: a global connection cap (503), a cap per
// client address (429) and an upgrade rate per address (429). Counts include
// upgrades still being verified, so a burst cannot overshoot a cap while jose works.
// Every check is O(1); per-address state is dropped once idle. Pure: time is passed in.
import { isIP } from 'node:net';
import { Refusal as Refusals } from '@herald/client/codes';

export interface AdmissionLimits {
  /** 0 = no limit. */
  maxConnections: number;
  /** 0 = no limit. */
  maxConnectionsPerIp: number;
  /** Upgrades per second per address (burst of the same size); 0 = no limit. */
  upgradeRatePerIp: number;
}

/** The refusals admission gives, from the code table (codes.ts): status, body and headers. */
export type Refusal =
  | typeof Refusals.TooManyConnections
  | typeof Refusals.TooManyConnectionsFromAddress
  | typeof Refusals.UpgradeRateExceeded;

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
  /** Addresses tracked, for the tests that show sweep bounds this state; idle ones are swept. */
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
      if (maxConnections > 0 && held >= maxConnections) return Refusals.TooManyConnections;
      let a = byIp.get(ip);
      if (a === undefined) {
        a = { held: 0, tokens: upgradeRatePerIp, refilledAt: now };
        byIp.set(ip, a);
      }
      if (maxConnectionsPerIp > 0 && a.held >= maxConnectionsPerIp) return Refusals.TooManyConnectionsFromAddress;
      if (upgradeRatePerIp > 0) {
        refill(a, now);
        if (a.tokens < 1) return Refusals.UpgradeRateExceeded;
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
  // A hop that is not an address (garbage, absurdly long, a zone or a port) is not trusted.
  return /^[0-9A-Fa-f:.]{2,45}$/.test(first) && isIP(first) !== 0 ? first : socketAddress;
}

/**
 * What the per-address limits count by. An IPv4 address as is, and so an
 * IPv4-mapped IPv6 address (uWS reports IPv4 clients of a dual-stack listener as
 * `0000:…:ffff:7f00:0001`) in its IPv4 form. Any other IPv6 address is cut to its
 * first `ipv6PrefixBits` bits (HERALD_IPV6_PREFIX, 64 by default): one subscriber
 * usually gets a whole /64, which is 2^64 addresses to rotate through.
 * Anything else is its own key.
 */
export function addressKey(address: string, ipv6PrefixBits: number): string {
  if (isIP(address) !== 6) return address;
  const h = ipv6Hextets(address);
  if (h[0] === 0 && h[1] === 0 && h[2] === 0 && h[3] === 0 && h[4] === 0 && h[5] === 0xffff) {
    const [a, b] = [h[6] ?? 0, h[7] ?? 0];
    return `${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
  }
  const kept = h.map((x, i) => {
    const bits = Math.max(0, Math.min(16, ipv6PrefixBits - 16 * i));
    return (x & ((0xffff << (16 - bits)) & 0xffff)).toString(16);
  });
  return `${kept.join(':')}/${ipv6PrefixBits}`;
}

/** The eight 16-bit groups of an address that isIP() called IPv6 (a zone and an IPv4 tail allowed). */
function ipv6Hextets(address: string): number[] {
  let s = address;
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    s = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = s.split('::');
  const before = head === '' ? [] : head.split(':');
  const after = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? 0 : 8 - before.length - after.length;
  return [...before, ...Array<string>(zeros).fill('0'), ...after].map((x) => parseInt(x, 16));
}

// Measurement primitives: a mergeable log-bucket latency histogram, and CPU/RSS
// readings of other processes from /proc (Linux).
import { readFileSync } from 'node:fs';

/** Log-spaced buckets, ~2% apart, from 1 µs to ~100 s. Mergeable by adding counts. */
const GROWTH = 1.02;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(1e8) / LOG_GROWTH) + 2;

export interface Histogram {
  counts: number[];
  n: number;
  max: number;
}

export function newHistogram(): Histogram {
  return { counts: new Array<number>(BUCKETS).fill(0), n: 0, max: 0 };
}

/** Records a latency in milliseconds. */
export function record(h: Histogram, ms: number): void {
  const us = Math.max(1, ms * 1000);
  const b = Math.min(BUCKETS - 1, Math.floor(Math.log(us) / LOG_GROWTH));
  h.counts[b] = (h.counts[b] ?? 0) + 1;
  h.n++;
  if (ms > h.max) h.max = ms;
}

export function merge(into: Histogram, from: Histogram): void {
  for (let i = 0; i < BUCKETS; i++) into.counts[i] = (into.counts[i] ?? 0) + (from.counts[i] ?? 0);
  into.n += from.n;
  if (from.max > into.max) into.max = from.max;
}

/** The q-quantile (0..1) in ms; the bucket's upper edge, so never flattering. */
export function quantile(h: Histogram, q: number): number {
  if (h.n === 0) return NaN;
  const target = Math.ceil(q * h.n);
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += h.counts[i] ?? 0;
    if (seen >= target) return Math.min(h.max, GROWTH ** (i + 1) / 1000);
  }
  return h.max;
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU time (user + system) of a process in µs, from /proc/<pid>/stat. */
export function cpuMicros(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
    return (ticks * 1e6) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

/** Resident set size of a process in KiB, from /proc/<pid>/status. */
export function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? NaN : Number(m[1]);
  } catch {
    return NaN;
  }
}

export const round = (x: number, digits = 1): number => (Number.isFinite(x) ? Number(x.toFixed(digits)) : NaN);

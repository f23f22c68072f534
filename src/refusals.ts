// Log lines for refused upgrades, bounded. Each refusal costs its client nothing to
// repeat (a keep-alive connection can send thousands a second), so one line each
// would let any client flood the log. Per reason, the first LINES_PER_REASON
// refusals of an interval get their own line; the rest are only counted, and the
// interval ends with one summary of the counts per reason. Pure: the caller logs
// and keeps the clock (one interval for the process).

/** Own lines per reason per interval: enough to see who and why, too few to flood. */
export const LINES_PER_REASON = 5;
/** The summary interval, ms. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

export interface RefusalSummary {
  /** Refusals in the interval per reason, those that had their own line included. */
  refused: Record<string, number>;
  /** How many of them had no line of their own. */
  suppressed: number;
}

export interface RefusalLog {
  /** Counts one refusal; true when it gets its own line. `reason` comes from a code table. */
  note(reason: string): boolean;
  /** Ends the interval: the summary when any refusal went without its own line, else undefined. */
  flush(): RefusalSummary | undefined;
}

export function createRefusalLog(linesPerReason = LINES_PER_REASON): RefusalLog {
  // Keyed by code-table reasons only, so both maps stay as small as those tables.
  const refused = new Map<string, number>();
  let suppressed = 0;
  return {
    note(reason) {
      const n = (refused.get(reason) ?? 0) + 1;
      refused.set(reason, n);
      if (n <= linesPerReason) return true;
      suppressed++;
      return false;
    },
    flush() {
      const summary = suppressed === 0 ? undefined : { refused: Object.fromEntries(refused), suppressed };
      refused.clear();
      suppressed = 0;
      return summary;
    },
  };
}

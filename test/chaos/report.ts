/**
 * The figures of a chaos run: recovery times around each fault, the summary lines printed
 * at the end (one per figure) and the JSON file.
 */
import type { Fault } from './chaos.ts';

/** How long after a fault (after its target is back) its stall is still looked for. */
export const SETTLE_MS = 15_000;

export interface FaultRecovery extends Fault {
  /**
   * Longest stretch without any step completing, from the fault until SETTLE_MS after
   * its target was back (or the next fault): how long the fault stopped progress (for a
   * fault that stops everything, its downtime plus the time to resume).
   */
  stall_ms: number | null;
  /** From the target being back to the next step completion. */
  first_completion_after_back_ms: number | null;
}

/**
 * Stall and resume figures of each fault, from the step completion times (ascending).
 * A fault's window ends SETTLE_MS after its target was back, or when the next fault
 * starts (the stall is then cut there, so one outage is not charged to two faults). A
 * stretch after the last completion of the run is not a stall: the work was done.
 */
export function recoveries(faults: Fault[], completions: number[]): FaultRecovery[] {
  const starts = faults.map((f) => f.at);
  return faults.map((f, i) => {
    const nextAt = starts.slice(i + 1).find((t) => t > f.at) ?? Infinity;
    const limit = Math.min((f.backAt ?? f.at) + SETTLE_MS, nextAt);
    let prev = f.at;
    let stall = 0;
    for (const t of completions) {
      if (t <= f.at) continue;
      if (t > limit) {
        stall = Math.max(stall, (limit === nextAt ? nextAt : t) - prev);
        break;
      }
      stall = Math.max(stall, t - prev);
      prev = t;
    }
    const back = f.backAt;
    const next = back === null ? undefined : completions.find((t) => t >= back);
    return {
      ...f,
      stall_ms: stall,
      first_completion_after_back_ms: back === null || next === undefined ? null : next - back,
    };
  });
}

/** `label ........ value`, one figure per line. */
export function summaryLines(figures: Array<[string, string | number]>): string[] {
  const width = Math.max(...figures.map(([k]) => k.length)) + 2;
  return figures.map(([k, v]) => `chaos: ${`${k} `.padEnd(width, '.')} ${v}`);
}

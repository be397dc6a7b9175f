import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };

/**
 * Time in ms with sub-millisecond precision on the clock every process of the machine shares
 * (CLOCK_MONOTONIC, process.hrtime), so comparable across processes. Not the wall clock:
 * `performance.timeOrigin` is read once at each process's start, and the wall clock moves
 * under NTP after that (two processes' origins were seen about 4 ms apart).
 */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** p-th percentile (nearest rank) of numbers; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length) - 1;
  return s[Math.min(s.length - 1, Math.max(0, rank))]!;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function round(x: number, digits = 2): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** A short random suffix of lower-case letters and digits, for schema, prefix and key names. */
export function runId(): string {
  return Math.random().toString(36).slice(2, 8).replace(/[^a-z0-9]/g, 'x');
}

/** Runs `count` jobs with at most `concurrency` in flight; stops starting new ones after `deadline`. */
export async function pool(
  count: number,
  concurrency: number,
  job: (i: number) => Promise<void>,
  deadline = Number.POSITIVE_INFINITY,
): Promise<{ done: number; failed: number; firstError: Error | null }> {
  let next = 0;
  let done = 0;
  let failed = 0;
  let firstError: Error | null = null;
  const lane = async (): Promise<void> => {
    while (next < count && Date.now() < deadline) {
      const i = next++;
      try {
        await job(i);
        done++;
      } catch (err) {
        failed++;
        firstError ??= err as Error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return { done, failed, firstError };
}

/** Polls `check` every `everyMs` until it returns true or `deadline` passes; returns whether it held. */
export async function waitUntil(check: () => Promise<boolean>, everyMs: number, deadline: number): Promise<boolean> {
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

/** Busy and total jiffies of all CPUs, from /proc/stat. */
function cpuJiffies(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Measures how busy the whole machine's CPUs are (every process, ours included) between start() and stop(). */
export function cpuMeter(): () => number {
  const a = cpuJiffies();
  return () => {
    const b = cpuJiffies();
    return round(((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100, 1);
  };
}

/**
 * Waits until the machine's CPUs are less than `maxBusyPct` busy over a one-second sample,
 * for at most `maxWaitMs`; returns the last sample.
 */
export async function waitQuiet(maxBusyPct: number, maxWaitMs: number): Promise<number> {
  const until = Date.now() + maxWaitMs;
  for (;;) {
    const m = cpuMeter();
    await sleep(1000);
    const busy = m();
    if (busy < maxBusyPct || Date.now() >= until) return busy;
  }
}

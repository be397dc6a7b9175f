import type { Child } from '../proc.ts';
import { round } from '../util.ts';

export interface PeerResult {
  name: string;
  /** True where the peer's state survives a crash: Postgres, or Redis with appendfsync always. */
  durable: boolean;
  tasks: number;
  steps: number;
  seconds: number;
  steps_per_sec: number;
  timed_out: boolean;
  worker_mb: number | null;
  /** How the diamond is mapped onto the library, in one line (bench/README.md has the long form). */
  mapping: string;
  /** With --repeat: steps/s of every repetition (the figures above are the median one's). */
  samples?: number[];
}

export interface PeerContext {
  runId: string;
  tasks: number;
  warmup: number;
  /** Date.now() after which the peer's run stops where it is. */
  deadline: number;
  outDir: string;
  /** The fresh database the Postgres peers use. */
  peersDatabaseUrl: string;
  redisUrl: string;
  concurrency: number;
  /** Measurements in a row on the same worker (the median one is reported). @defaultValue 1 */
  repeat?: number;
  /**
   * What runs beside the peer's measurements, its worker up and idle (`--paired`): `before`
   * and `after` each of them, `k` counting them from 0.
   */
  beside?: { before?: (k: number) => Promise<void>; after?: (k: number) => Promise<void> };
}

/** Chunks producers add at once with the peers' bulk APIs, and chunks in flight. */
export const BULK = 100;
export const BULK_IN_FLIGHT = 4;

/** Adds tasks [from, from + count) in chunks of BULK, BULK_IN_FLIGHT chunks at a time. */
export async function bulkProduce(from: number, count: number, add: (ids: number[]) => Promise<unknown>): Promise<void> {
  const chunks: number[][] = [];
  for (let i = 0; i < count; i += BULK) chunks.push(Array.from({ length: Math.min(BULK, count - i) }, (_, k) => from + i + k));
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(BULK_IN_FLIGHT, chunks.length) }, async () => {
      while (next < chunks.length) await add(chunks[next++]!);
    }),
  );
}

/**
 * Measures a peer whose worker child reports `{type: 'progress', done}` (diamonds whose last
 * step the library reports done): a warm-up of `ctx.warmup` tasks, then `ctx.tasks` tasks
 * produced as fast as the library accepts them; steps per second from the first add to the
 * report that the last diamond is done.
 */
export async function measure(
  name: string,
  durable: boolean,
  mapping: string,
  ctx: PeerContext,
  worker: Child,
  produce: (from: number, count: number) => Promise<void>,
): Promise<PeerResult> {
  let done = 0;
  let doneAt = 0;
  let waiter: { target: number; resolve: () => void } | null = null;
  const off = worker.on((m) => {
    if (m.type !== 'progress' || typeof m.done !== 'number') return;
    done = m.done;
    doneAt = performance.now();
    if (waiter && done >= waiter.target) {
      const w = waiter;
      waiter = null;
      w.resolve();
    }
  });
  const until = (target: number): Promise<boolean> =>
    done >= target
      ? Promise.resolve(true)
      : new Promise((resolve) => {
          const timer = setTimeout(() => resolve(false), Math.max(0, ctx.deadline - Date.now()));
          waiter = {
            target,
            resolve: () => {
              clearTimeout(timer);
              resolve(true);
            },
          };
        });
  try {
    if (ctx.warmup > 0) {
      await produce(1_000_000, ctx.warmup);
      await until(ctx.warmup);
    }
    const runs: PeerResult[] = [];
    for (let k = 0; k < (ctx.repeat ?? 1); k++) {
      await ctx.beside?.before?.(k);
      const base = done;
      const t0 = performance.now();
      // Task ids of each repetition apart, so per-task join keys never meet.
      await produce(10_000_000 * k, ctx.tasks);
      const all = await until(base + ctx.tasks);
      const tasks = done - base;
      const seconds = ((all ? doneAt : performance.now()) - t0) / 1000;
      runs.push({
        name,
        durable,
        tasks,
        steps: tasks * 4,
        seconds: round(seconds, 3),
        steps_per_sec: round((tasks * 4) / seconds, 1),
        timed_out: !all,
        worker_mb: worker.peakMemoryMb(),
        mapping,
      });
      if (!all) break;
      await ctx.beside?.after?.(k);
    }
    return medianRun(runs);
  } finally {
    off();
  }
}

/** The run with the median steps/s, carrying every run's figure in `samples` when there were several. */
export function medianRun<T extends { steps_per_sec: number }>(runs: T[]): T & { samples?: number[] } {
  const sorted = [...runs].sort((a, b) => a.steps_per_sec - b.steps_per_sec);
  const mid = sorted[Math.floor((sorted.length - 1) / 2)]!;
  return runs.length > 1 ? { ...mid, samples: runs.map((r) => r.steps_per_sec) } : mid;
}

import v8 from 'node:v8';

/** How much V8 lets the old generation grow past what the last full collection kept, in %. */
export const HEAP_GROWING_PERCENT = 25;

/**
 * Keeps the orchestrator process's memory near what it uses. Left alone, V8 lets the old
 * generation grow up to four times what its last full collection kept before collecting
 * again: draining 10,000 queued diamond tasks at ~4,000 steps/s, the heap reached 262 MB
 * for 43–67 MB of live data, and the process peaked at 226–393 MB (bench, `--only memory`,
 * classic queues, four runs). Growing by 25 % at most, full collections come more often
 * (each 5–35 ms, mostly concurrent), the heap stays near 100 MB and the process peaked at
 * 165–216 MB (four runs); the drain rate did not change measurably. The price is the
 * orchestrator's CPU: 0.163–0.166 ms per step in the throughput run instead of 0.137–0.146
 * (throughput within noise). A `--heap-growing-percent` given to node itself is kept.
 * Called by the orchestrator's binary (and the bench's orchestrator), not by the library:
 * a process embedding the orchestrator keeps its own V8 settings.
 */
export function tuneHeap(): void {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith('--heap-growing-percent'));
  if (!given) v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}

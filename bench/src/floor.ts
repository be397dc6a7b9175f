import { round } from './util.ts';

/**
 * The least a step's gap (its handler's result → the next handler's start) can take on this
 * machine, from section 4 of the same run: the step's two broker hops, one at a time on the
 * work queue type (a persistent, confirmed message through two queues), and one durable
 * one-row commit, one at a time. Any orchestrator that stores a step's result durably before
 * it dispatches the next step pays at least these; what a measured gap takes beyond them is
 * the system's own work and its processes' crossings. A sum of p50s, not the p50 of a sum.
 */
export interface OverheadFloor {
  queue_type: string;
  two_hop_p50_ms: number;
  commit_p50_ms: number;
  p50_ms: number;
}

export function overheadFloor(
  queueType: string,
  twoHops: Array<{ queue_type: string; latency_p50_ms: number }>,
  cas: { single_commit_p50_ms: number } | null,
): OverheadFloor | null {
  const hops = twoHops.find((r) => r.queue_type === queueType);
  if (!hops || !cas || !Number.isFinite(hops.latency_p50_ms) || !Number.isFinite(cas.single_commit_p50_ms)) return null;
  return {
    queue_type: queueType,
    two_hop_p50_ms: hops.latency_p50_ms,
    commit_p50_ms: cas.single_commit_p50_ms,
    p50_ms: round(hops.latency_p50_ms + cas.single_commit_p50_ms, 3),
  };
}

/**
 * The chaos run's load: N tasks created over HTTP, spread over a time window so that the
 * kills and restarts land while tasks run, with a bounded number of requests in flight.
 *
 * Each task has an idempotency key, so a request that failed (its orchestrator was just
 * killed, Postgres was down) is sent again, to the other orchestrator, without ever making
 * a second task; a retry answered 200 (the first request had in fact created the task) is
 * counted as a replay.
 */
import { HttpTaskClient, TaskerError } from '@tasker/client';
import { sleep } from './exec.ts';

/** Refusals that no retry can change: the suite itself is wrong. */
const PERMANENT = new Set(['INVALID_CONTEXT', 'INVALID_MESSAGE', 'UNKNOWN_NAMESPACE', 'UNKNOWN_TEMPLATE', 'UNKNOWN_VERSION', 'PAYLOAD_TOO_LARGE']);

export interface LoadOptions {
  tasks: number;
  /** The i-th task is sent at start + i × spreadMs / tasks. */
  spreadMs: number;
  concurrency: number;
  /** The orchestrators' HTTP addresses; requests alternate between them. */
  baseUrls: string[];
  /** Bearer token of the orchestrators' HTTP API. */
  token: string;
  /** Idempotency keys are `<keyPrefix>-<i>`. */
  keyPrefix: string;
  /** Template names of the `chaos` namespace, used in turn. */
  templates: string[];
  /** How long one task's creation may keep failing before it is given up. */
  giveUpMs: number;
  signal: AbortSignal;
}

export interface LoadResult {
  requested: number;
  /** Task ids the orchestrators returned, by index. */
  taskIds: Map<number, string>;
  /** Answered 200 on a retry: an earlier, failed-looking request had created the task. */
  replays: number;
  /** Requests that failed and were sent again. */
  retriedRequests: number;
  failures: Array<{ index: number; key: string; error: string }>;
  byTemplate: Record<string, number>;
  startedAt: number;
  finishedAt: number;
}

export async function runLoad(o: LoadOptions, onCreated: (count: number) => void): Promise<LoadResult> {
  const clients = o.baseUrls.map((baseUrl) => new HttpTaskClient({ baseUrl, token: o.token }));
  const result: LoadResult = {
    requested: 0,
    taskIds: new Map(),
    replays: 0,
    retriedRequests: 0,
    failures: [],
    byTemplate: {},
    startedAt: Date.now(),
    finishedAt: 0,
  };
  let next = 0;

  const createOne = async (i: number): Promise<void> => {
    const name = o.templates[i % o.templates.length]!;
    const key = `${o.keyPrefix}-${i}`;
    result.requested += 1;
    result.byTemplate[name] = (result.byTemplate[name] ?? 0) + 1;
    const firstTry = Date.now();
    let lastError = '';
    for (let attempt = 0; !o.signal.aborted; attempt++) {
      const client = clients[(i + attempt) % clients.length]!;
      try {
        const r = await client.createTask(
          { namespace: 'chaos', name, context: { n: i }, idempotencyKey: key, requestedBy: 'chaos-suite' },
          { signal: AbortSignal.any([o.signal, AbortSignal.timeout(10_000)]) },
        );
        if (!r.created && attempt > 0) result.replays += 1;
        result.taskIds.set(i, r.task.id);
        onCreated(result.taskIds.size);
        return;
      } catch (err) {
        const code = err instanceof TaskerError ? err.code : null;
        lastError = `${code ?? (err as Error).name}: ${(err as Error).message}${
          (err as { cause?: { code?: string } }).cause?.code ? ` (${(err as { cause: { code: string } }).cause.code})` : ''
        }`;
        if (code && PERMANENT.has(code)) break;
        if (Date.now() - firstTry > o.giveUpMs) break;
        result.retriedRequests += 1;
        await sleep(Math.min(200 * 2 ** Math.min(attempt, 4), 2000), o.signal);
      }
    }
    result.failures.push({ index: i, key, error: lastError || 'aborted' });
  };

  const lane = async (): Promise<void> => {
    while (!o.signal.aborted) {
      const i = next++;
      if (i >= o.tasks) return;
      const due = result.startedAt + (i * o.spreadMs) / o.tasks;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait, o.signal);
      if (o.signal.aborted) return;
      await createOne(i);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, lane));
  result.finishedAt = Date.now();
  return result;
}

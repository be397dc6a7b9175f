import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';

interface Waiter {
  done: () => void;
}

/**
 * Callers of `GET /v1/tasks/:id?wait_ms=N` waiting for their task to end (complete, error or
 * cancelled). A task this orchestrator ends answers its waiters as the commit returns
 * (`finished`); what it cannot see (a task another orchestrator ended, an operator's action
 * there) it learns by reading, every `pollMs`, which waited-for tasks have ended: one query
 * for all of them, and only while someone waits.
 */
export class TaskWaiters {
  private readonly waiting = new Map<string, Set<Waiter>>();
  private timer: NodeJS.Timeout | null = null;
  private polling = false;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly pollMs: number,
    private readonly logger: Logger,
  ) {}

  /** Tasks waited for now. */
  get size(): number {
    return this.waiting.size;
  }

  /**
   * Resolves when the task ends, after `ms`, when `signal` aborts (the caller went away),
   * or when the waiters are closed, whichever comes first; never rejects. The caller reads
   * the task afterwards: resolving says only that there is something to read.
   */
  wait(taskId: string, ms: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || signal?.aborted || ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timeout = setTimeout(() => w.done(), ms);
      const onAbort = () => w.done();
      const w: Waiter = {
        done: () => {
          clearTimeout(timeout);
          signal?.removeEventListener('abort', onAbort);
          const set = this.waiting.get(taskId);
          if (set?.delete(w) && set.size === 0) this.waiting.delete(taskId);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let set = this.waiting.get(taskId);
      if (!set) this.waiting.set(taskId, (set = new Set()));
      set.add(w);
      this.schedulePoll();
    });
  }

  /** These tasks ended (this orchestrator committed it): their waiters answer now. */
  finished(taskIds: Iterable<string>): void {
    if (this.waiting.size === 0) return;
    for (const id of taskIds) this.release(id);
  }

  /**
   * Something here may have ended waited-for tasks without knowing which (an operator's
   * action, which also cancels a task's children): read them now rather than at the next poll.
   */
  recheck(): void {
    if (this.waiting.size === 0 || this.polling || this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.poll();
  }

  /** Answers every waiter now (the orchestrator stops). */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const id of [...this.waiting.keys()]) this.release(id);
  }

  private release(taskId: string): void {
    const set = this.waiting.get(taskId);
    if (!set) return;
    for (const w of [...set]) w.done();
  }

  private schedulePoll(): void {
    if (this.timer || this.polling || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.poll();
    }, this.pollMs);
    this.timer.unref();
  }

  /** Reads which waited-for tasks have ended, answers their waiters, and goes on while any wait. */
  private async poll(): Promise<void> {
    const ids = [...this.waiting.keys()];
    if (ids.length === 0 || this.closed) return;
    this.polling = true;
    try {
      const { rows } = await sql<{ id: string }>`SELECT id FROM tasks WHERE id = ANY(${ids}::text[]) AND state <> 'in_progress'`.execute(this.db);
      for (const r of rows) this.release(r.id);
    } catch (err) {
      // The next poll tries again; a waiter's own timeout bounds its wait meanwhile.
      this.logger.warn({ err: (err as Error).message, waiting: ids.length }, 'reading the tasks waited for failed');
    } finally {
      this.polling = false;
    }
    if (this.waiting.size > 0) this.schedulePoll();
  }
}

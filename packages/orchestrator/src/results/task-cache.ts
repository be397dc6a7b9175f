import type { LockedTask } from '../tasks/dispatch.ts';
import type { StepState } from './batch-plan.ts';

/**
 * What a result batch run from the cache sends for the write to compare with the rows
 * (write_result_batch_checked, migration 0008), each side in id order: `tasks` is
 * 'id state' per task and `steps` 'id state attempt deps_pending' per step, joined by commas.
 */
export interface CacheCheck {
  taskIds: string[];
  tasks: string;
  steps: string;
}

/** Ids the check's text can carry unambiguously (ours are `tsk_…` and `stp_…` with a nanoid). */
const PLAIN_ID = /^[A-Za-z0-9_-]+$/;

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** A batch's tasks and steps taken from the cache: copies a plan may change, and what they were. */
export interface CachedBatch {
  tasks: Map<string, LockedTask>;
  steps: Map<string, StepState>;
  check: CacheCheck;
}

interface Entry {
  task: LockedTask;
  steps: StepState[];
  bytes: number;
  /** When it was kept (Date.now()). */
  at: number;
}

/** What an entry counts for besides its JSON values: the objects, their strings, the map. */
const ENTRY_BYTES = 600;
const STEP_BYTES = 400;

/**
 * When the cache is full, a task kept longer ago than this gives its place to a newcomer (a
 * task that waits for days must not hold a place forever); a more recent one keeps it, and the
 * newcomer is not held. Tasks run oldest first, so under a backlog this keeps the tasks whose
 * results come next, where evicting the least recently kept would evict exactly those.
 */
const IDLE_MS = 30_000;

/**
 * Of every WINDOW batches taken from the cache, if more than a quarter were found stale
 * (something else writes these tasks: another orchestrator the broker did not report yet, a
 * program writing the tables), the cache rests for the next REST batches: each stale one cost
 * a round trip more than reading would have. Then it tries again.
 */
const WINDOW = 16;
const REST = 512;

/**
 * What this orchestrator last read or wrote of its live tasks, so that the next result batch
 * for them can skip reading them (issue 7, per-step overhead): a result batch then costs one
 * round trip (BEGIN, the checked write, COMMIT) instead of two. Nothing here is trusted: the
 * write compares every step of every task of the batch with what the plan was made from,
 * under the task locks, and writes nothing if anything differs (another orchestrator or an
 * operator changed the task). The caller then drops the tasks and reads them as before.
 *
 * Holds tasks in progress that no other task waits for (a finished child task sends its
 * outcome, which needs a read), within `maxBytes` (estimated: the task's context, its steps'
 * results and errors, and a fixed share per object); once full, a task is held only in the
 * place of one kept more than IDLE_MS ago. Each orchestrator has its own.
 */
export class TaskCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  /** Estimated size of JSON values met before (contexts and results travel from entry to entry). */
  private readonly sizes = new WeakMap<object, number>();
  /** Tasks that a batch of this orchestrator is deciding or writing now, with how many batches. */
  private readonly inFlight = new Map<string, number>();
  /**
   * Result batches: taken from the cache (`hits`), read because a task was not held
   * (`misses`), because another batch of ours was writing one of them (`busy`) or because the
   * cache was resting (`resting`, see WINDOW) or off while other orchestrators share the
   * results (`shared`), and taken but found stale (`stale`).
   */
  readonly stats = { hits: 0, misses: 0, busy: 0, stale: 0, resting: 0, shared: 0 };
  /** Other orchestrators consume the same results (see `setShared`). */
  private sharedResults = false;
  /** The current window: batches taken, and how many of them were stale. */
  private taken = 0;
  private staleTaken = 0;
  /** Batches still to read rather than take (see WINDOW). */
  private rest = 0;

  constructor(private readonly maxBytes: number) {}

  get size(): number {
    return this.entries.size;
  }

  get shared(): boolean {
    return this.sharedResults;
  }

  /**
   * Whether other orchestrators consume the same results queue (the orchestrator asks the
   * broker for the queue's consumers). Then a task's results go to any of them, each one's
   * writes make the others' copies stale, and a stale copy costs a round trip more than
   * reading: the cache holds nothing and gives nothing until it is alone again.
   */
  setShared(shared: boolean): void {
    if (shared && !this.sharedResults) {
      this.entries.clear();
      this.bytes = 0;
    }
    this.sharedResults = shared;
  }

  /**
   * Marks the tasks as being written by a batch until `leave`: while one is, `take` answers
   * null for it, since what the cache holds is about to change (the other batch's write would
   * make this one's stale, a wasted round trip).
   */
  enter(taskIds: Iterable<string>): void {
    for (const id of new Set(taskIds)) this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1);
  }

  leave(taskIds: Iterable<string>): void {
    for (const id of new Set(taskIds)) {
      const n = this.inFlight.get(id) ?? 0;
      if (n <= 1) this.inFlight.delete(id);
      else this.inFlight.set(id, n - 1);
    }
  }

  /**
   * The tasks, and copies of their steps, if every one of `taskIds` is held and no other
   * batch is writing it (the caller has entered them itself, once); null otherwise. The copies
   * are the caller's to change (planBatch does); the cache keeps what it had until `keep` or
   * `drop`.
   */
  take(taskIds: Iterable<string>): CachedBatch | null {
    if (this.sharedResults) {
      this.stats.shared++;
      return null;
    }
    if (this.rest > 0) {
      this.rest--;
      this.stats.resting++;
      return null;
    }
    const ids = new Set(taskIds);
    for (const id of ids) {
      if ((this.inFlight.get(id) ?? 0) > 1) {
        this.stats.busy++;
        return null;
      }
    }
    const tasks = new Map<string, LockedTask>();
    const steps = new Map<string, StepState>();
    for (const id of ids) {
      const e = this.entries.get(id);
      if (!e) {
        this.stats.misses++;
        return null;
      }
      tasks.set(id, { ...e.task });
      for (const s of e.steps) steps.set(s.id, { ...s });
    }
    if (tasks.size === 0) return null;
    this.stats.hits++;
    if (++this.taken >= WINDOW) {
      // The last few batches' verdicts are still on their way: they count in the next window.
      if (this.staleTaken * 4 > this.taken) this.rest = REST;
      this.taken = 0;
      this.staleTaken = 0;
    }
    // Ordered as Postgres orders the ids (bytewise, COLLATE "C"; the same as JavaScript's for
    // plain ids). A different order would only make the check fail: the batch is read instead.
    const t = [...tasks.values()].sort(byId);
    const st = [...steps.values()].sort(byId);
    const check: CacheCheck = {
      taskIds: t.map((x) => x.id),
      tasks: t.map((x) => `${x.id} ${x.state}`).join(','),
      steps: st.map((x) => `${x.id} ${x.state} ${x.attempt} ${x.deps_pending}`).join(','),
    };
    return { tasks, steps, check };
  }

  /**
   * Holds the tasks as a committed batch left them: `steps` holds all the steps of every task
   * in `tasks` (a batch reads or takes them all). A task that is no longer in progress, or
   * that another task waits for, is dropped instead.
   */
  keep(tasks: Map<string, LockedTask>, steps: Iterable<StepState>): void {
    const byTask = new Map<string, StepState[]>();
    for (const s of steps) {
      let list = byTask.get(s.task_id);
      if (!list) byTask.set(s.task_id, (list = []));
      list.push(s);
    }
    let now: number | undefined;
    for (const task of tasks.values()) {
      this.remove(task.id);
      if (this.sharedResults || task.state !== 'in_progress' || task.parent_step_id || !PLAIN_ID.test(task.id)) continue;
      const own = byTask.get(task.id) ?? [];
      if (own.length === 0 || !own.every((s) => PLAIN_ID.test(s.id))) continue;
      let bytes = ENTRY_BYTES + this.sizeOf(task.context);
      for (const s of own) bytes += STEP_BYTES + this.sizeOf(s.result) + this.sizeOf(s.error);
      if (this.bytes + bytes > this.maxBytes && !this.makeRoom(bytes, now ??= Date.now())) continue;
      this.entries.set(task.id, { task, steps: own, bytes, at: now ??= Date.now() });
      this.bytes += bytes;
    }
  }

  /** Lets idle tasks go (oldest kept first) until `bytes` fit; false if they do not. */
  private makeRoom(bytes: number, now: number): boolean {
    if (bytes > this.maxBytes) return false;
    for (const [id, e] of this.entries) {
      if (this.bytes + bytes <= this.maxBytes || now - e.at < IDLE_MS) break;
      this.entries.delete(id);
      this.bytes -= e.bytes;
    }
    return this.bytes + bytes <= this.maxBytes;
  }

  /**
   * A batch taken from the cache was found stale by its write (or held a result the cache
   * could not decide): its tasks are dropped, and the batch counts against the cache.
   */
  stale(taskIds: Iterable<string>): void {
    this.stats.stale++;
    this.staleTaken++;
    this.drop(taskIds);
    this.onStale?.();
  }

  /** Told of every stale batch (the orchestrator then asks at once whether others share its results). */
  onStale: (() => void) | null = null;

  /** Forgets the tasks (a batch about them failed, or found them changed). */
  drop(taskIds: Iterable<string>): void {
    for (const id of taskIds) this.remove(id);
  }

  private remove(id: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    this.bytes -= e.bytes;
  }

  /** A JSON value's size, estimated by its text (UTF-16 units); an object's is remembered. */
  private sizeOf(value: unknown): number {
    if (value === null || value === undefined) return 0;
    if (typeof value === 'string') return value.length + 2;
    if (typeof value !== 'object') return 8;
    let n = this.sizes.get(value);
    if (n === undefined) {
      n = JSON.stringify(value)?.length ?? 0;
      this.sizes.set(value, n);
    }
    return n;
  }
}

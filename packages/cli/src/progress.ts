import { TERMINAL_TASK_STATES, type StepView, type TaskView } from '@tasker/protocol';
import type { HttpTaskClient } from '@tasker/client';
import { duration, paintState, stepsDone, templateRef, timeOfDay } from './format.ts';
import type { Output } from './output.ts';

export interface WatchOptions {
  /** Between two progress reads of the task (its end is shown as it happens). */
  pollMs: number;
  /** Give up waiting after this long (the task goes on); 0: no limit. */
  timeoutMs: number;
}

export interface WatchOutcome {
  task: TaskView;
  /** The wait ended at the timeout, not because the task finished. */
  timedOut: boolean;
  elapsedMs: number;
}

const MARK: Record<StepView['state'], string> = {
  pending: '·',
  enqueued: '▸',
  waiting_retry: '↻',
  waiting_child: '⧗',
  complete: '✔',
  error: '✖',
  cancelled: '⊘',
};

/**
 * Reads the task until it is terminal (or the timeout), showing progress: on a terminal,
 * a block (steps done of total, each step's state and attempt) redrawn in place; otherwise
 * one plain line per step change, so logs and pipes stay readable. Nothing with --json.
 */
export async function watchTask(client: HttpTaskClient, first: TaskView, out: Output, options: WatchOptions): Promise<WatchOutcome> {
  const started = Date.now();
  const seen = new Map<string, string>();
  let drawn = 0;
  let task = first;
  const announce = (t: TaskView): void => {
    const { done, total } = stepsDone(t);
    out.line(`waiting for task ${t.id} (${templateRef(t)}): ${done}/${total} steps done`);
  };
  if (!out.interactive) announce(task);
  for (;;) {
    if (out.interactive) {
      const block = renderBlock(task, out.color, Date.now() - started);
      out.raw(`${drawn > 0 ? `\x1b[${drawn}F\x1b[J` : ''}${block.join('\n')}\n`);
      drawn = block.length;
    } else {
      for (const line of changes(task, seen)) out.line(line);
    }
    if (TERMINAL_TASK_STATES.includes(task.state)) return { task, timedOut: false, elapsedMs: Date.now() - started };
    const left = options.timeoutMs > 0 ? started + options.timeoutMs - Date.now() : Infinity;
    if (left <= 0) return { task, timedOut: true, elapsedMs: Date.now() - started };
    // The orchestrator answers as soon as the task ends, or after a poll interval with its
    // progress; an orchestrator without `wait_ms` (an older version) answers at once, so the
    // rest of the interval is slept here.
    const waitMs = Math.min(options.pollMs, left);
    const asked = Date.now();
    task = await client.getTask(task.id, { waitMs });
    const rest = waitMs - (Date.now() - asked);
    if (!TERMINAL_TASK_STATES.includes(task.state) && rest > waitMs / 2) await new Promise((r) => setTimeout(r, rest));
  }
}

function renderBlock(task: TaskView, color: boolean, elapsedMs: number): string[] {
  const { done, total } = stepsDone(task);
  const width = Math.max(...task.steps.map((s) => s.name.length), 4);
  const bar = total > 0 ? `[${'#'.repeat(Math.round((done / total) * 20)).padEnd(20, '.')}]` : '';
  return [
    `task ${task.id} ${templateRef(task)}  ${paintState(task.state, color)}  ${bar} ${done}/${total} steps done  ${duration(elapsedMs)}`,
    ...task.steps.map((s) => {
      const attempt = s.attempt > 0 ? `attempt ${s.attempt}/${s.max_attempts}` : '';
      const extra = s.state === 'waiting_retry' && s.next_retry_at ? `  retry at ${timeOfDay(s.next_retry_at)}` : '';
      return `  ${MARK[s.state]} ${s.name.padEnd(width)}  ${paintState(s.state, color)}${' '.repeat(Math.max(0, 13 - s.state.length))}  ${attempt}${extra}`;
    }),
  ];
}

/** One line per step whose state or attempt changed since the last read. */
function changes(task: TaskView, seen: Map<string, string>): string[] {
  const lines: string[] = [];
  const { done, total } = stepsDone(task);
  for (const s of task.steps) {
    const key = `${s.state}#${s.attempt}`;
    const before = seen.get(s.id);
    if (before === key) continue;
    seen.set(s.id, key);
    if (before === undefined && s.state === 'pending') continue;
    const from = before ? before.split('#')[0] : undefined;
    const attempt = s.attempt > 0 ? ` (attempt ${s.attempt}/${s.max_attempts})` : '';
    lines.push(`${timeOfDay(new Date().toISOString())}  ${s.name}: ${from && from !== s.state ? `${from} -> ` : ''}${s.state}${attempt}  [${done}/${total} done]`);
  }
  const taskKey = `task#${task.state}`;
  if (seen.get(task.id) !== taskKey) {
    if (seen.has(task.id) || task.state !== 'in_progress') lines.push(`${timeOfDay(new Date().toISOString())}  task ${task.id}: ${task.state}  [${done}/${total} done]`);
    seen.set(task.id, taskKey);
  }
  return lines;
}

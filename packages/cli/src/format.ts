import type { StepView, TaskListItem, TaskSummary, TaskView, TransitionView } from '@tasker/protocol';

const ANSI = /\x1b\[[0-9;]*m/g;
const visible = (s: string): number => s.replace(ANSI, '').length;

/** A plain text table: a header row, columns padded to the widest cell, two spaces apart. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(visible(h), ...rows.map((r) => visible(r[i] ?? ''))));
  const fmt = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - visible(c))))
      .join('  ')
      .trimEnd();
  return [fmt(headers), ...rows.map(fmt)].join('\n');
}

const COLORS: Record<string, string> = {
  complete: '32',
  error: '31',
  cancelled: '33',
  waiting_retry: '33',
  waiting_child: '36',
  enqueued: '36',
  in_progress: '36',
  pending: '2',
};

/** A state name, colored on a terminal. */
export function paintState(state: string, color: boolean): string {
  const c = COLORS[state];
  return color && c ? `\x1b[${c}m${state}\x1b[0m` : state;
}

export function bold(s: string, color: boolean): string {
  return color ? `\x1b[1m${s}\x1b[0m` : s;
}

/** `2025-01-02 14:03:05Z`: a timestamp to the second, UTC. */
export function dateTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z`;
}

/** `14:03:05.123Z`: the time of day to the millisecond, UTC (step times within one task). */
export function timeOfDay(iso: string | null | undefined): string {
  if (!iso) return '-';
  return `${iso.slice(11, 23)}Z`;
}

/** `850ms`, `4.2s`, `3m05s`, `2h04m`. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** How long a step ran: from its handler's start (else its dispatch) to its end. */
export function stepDuration(s: StepView): string {
  const from = s.started_at ?? s.enqueued_at;
  if (!from || !s.finished_at) return '-';
  return duration(Date.parse(s.finished_at) - Date.parse(from));
}

/** `CODE: message` of a step's or task's error (a StepError object), or its JSON. */
export function errorText(error: unknown, max = 100): string {
  if (error === null || error === undefined) return '';
  let text: string;
  if (typeof error === 'object' && 'message' in error) {
    const e = error as { code?: unknown; message?: unknown };
    text = `${typeof e.code === 'string' ? `${e.code}: ` : ''}${String(e.message)}`;
  } else {
    text = typeof error === 'string' ? error : JSON.stringify(error);
  }
  return truncate(text, max);
}

export function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** `payments.process_refund@1.0.0` */
export function templateRef(t: { namespace: string; name: string; version: string }): string {
  return `${t.namespace}.${t.name}@${t.version}`;
}

export function stepsDone(task: TaskView): { done: number; total: number } {
  return { done: task.steps.filter((s) => s.state === 'complete').length, total: task.steps.length };
}

/** The steps table: state, attempts, times and errors, one row per step in template order. */
export function stepsTable(task: TaskView, color: boolean): string {
  return table(
    ['STEP', 'STATE', 'ATTEMPTS', 'STARTED', 'FINISHED', 'DURATION', 'STEP ID', 'ERROR'],
    task.steps.map((s) => [
      s.name,
      paintState(s.state, color),
      `${s.attempt}/${s.max_attempts}`,
      timeOfDay(s.started_at ?? s.enqueued_at),
      timeOfDay(s.finished_at),
      stepDuration(s),
      s.id,
      s.state === 'waiting_child' && s.waiting_for_task_id
        ? `waiting for task ${s.waiting_for_task_id}`
        : s.state === 'waiting_retry' && s.next_retry_at
          ? `retry at ${timeOfDay(s.next_retry_at)}${s.error ? ` after ${errorText(s.error, 70)}` : ''}`
          : errorText(s.error),
    ]),
  );
}

export function transitionsTable(transitions: TransitionView[], color: boolean): string {
  return table(
    ['AT', 'OF', 'FROM', 'TO', 'ATTEMPT', 'ACTOR', 'REASON'],
    transitions.map((t) => [
      timeOfDay(t.at),
      t.step ?? (t.step_id ? t.step_id : '(task)'),
      t.from_state ?? '-',
      paintState(t.to_state, color),
      t.attempt === null ? '-' : String(t.attempt),
      t.actor ?? '-',
      truncate(t.reason, 80),
    ]),
  );
}

export function tasksTable(tasks: Array<TaskListItem | TaskSummary>, color: boolean): string {
  return table(
    ['TASK ID', 'TEMPLATE', 'STATE', 'CREATED', 'COMPLETED'],
    tasks.map((t) => [
      t.id,
      templateRef(t),
      paintState(t.state, color),
      dateTime(t.created_at),
      'completed_at' in t ? dateTime(t.completed_at) : '-',
    ]),
  );
}

/** Everything `task get` shows: header, steps, parent and children, transitions. */
export function renderTask(task: TaskView, color: boolean): string {
  const { done, total } = stepsDone(task);
  const lines: string[] = [];
  lines.push(`${bold(`Task ${task.id}`, color)}  ${templateRef(task)}  ${paintState(task.state, color)}`);
  const field = (k: string, v: string): void => void lines.push(`  ${`${k}:`.padEnd(13)} ${v}`);
  field('created', dateTime(task.created_at));
  field('updated', dateTime(task.updated_at));
  if (task.completed_at) field('completed', dateTime(task.completed_at));
  field('correlation', task.correlation_id);
  if (task.idempotency_key) field('idempotency', task.idempotency_key);
  if (task.parent_task_id) {
    const p = task.parent;
    field(
      'parent',
      `${task.parent_task_id}${p ? ` (${templateRef(p)}, ${paintState(p.state, color)})` : ''}${task.parent_step_id ? ` step ${task.parent_step_id}` : ''}`,
    );
  }
  if (task.error !== null) field('error', errorText(task.error, 200));
  field('context', truncate(JSON.stringify(task.context), 200));
  lines.push('');
  lines.push(bold(`Steps: ${done} of ${total} complete`, color));
  lines.push(stepsTable(task, color));
  if (task.children && task.children.length > 0) {
    lines.push('');
    lines.push(bold(`Children (${task.children.length})`, color));
    lines.push(tasksTable(task.children, color));
  }
  if (task.transitions && task.transitions.length > 0) {
    lines.push('');
    lines.push(bold(`Transitions (${task.transitions.length})`, color));
    lines.push(transitionsTable(task.transitions, color));
  }
  return lines.join('\n');
}

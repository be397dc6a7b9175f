/**
 * What the demo prints: step tables, the parent/child link, and the final checklist.
 * Plain text, with colour only on a terminal (NO_COLOR turns it off there too).
 */
import type { StepView, TaskView } from '@tasker/client';

const useColor = Boolean(process.stdout.isTTY) && !process.env['NO_COLOR'];
const paint = (code: number) => (s: string) => (useColor ? `\u001b[${code}m${s}\u001b[0m` : s);
export const bold = paint(1);
export const dim = paint(2);
export const red = paint(31);
export const green = paint(32);
export const yellow = paint(33);
export const cyan = paint(36);

/** `HH:MM:SS.mmm` (UTC), or `-`. */
export function clock(iso: string | null): string {
  return iso ? new Date(iso).toISOString().slice(11, 23) : '-';
}

/** `1.234 s` or `12 ms`. */
export function span(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(3)} s` : `${Math.round(ms)} ms`;
}

/** The code of a step's (or task's) error JSON, if it has one. */
export function errorCode(error: unknown): string | null {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'string') return error.code;
  return null;
}

export function stepByName(task: TaskView, name: string): StepView {
  const step = task.steps.find((s) => s.name === name);
  if (!step) throw new Error(`task ${task.id} (${task.namespace}.${task.name}) has no step '${name}'`);
  return step;
}

function stateText(state: string): string {
  if (state === 'complete') return green(state);
  if (state === 'error') return red(state);
  if (state === 'waiting_retry') return yellow(state);
  return state;
}

const ANSI = /\u001b\[[0-9;]*m/g;

/** Length as seen on screen, colour codes left out. */
function visibleLength(s: string): number {
  return s.replace(ANSI, '').length;
}

function pad(s: string, width: number): string {
  return s + ' '.repeat(Math.max(0, width - visibleLength(s)));
}

/** A task's heading and its steps: name, state, attempts/max, started, finished, duration, error code. */
export function taskTable(task: TaskView, title?: string): string {
  const heading =
    `${bold(`${task.namespace}.${task.name}`)} ${task.id}  state: ${stateText(task.state)}` +
    `  correlation_id: ${task.correlation_id}` +
    (task.parent_task_id ? `  parent: ${task.parent_task_id}` : '');
  const header = ['step', 'state', 'attempts', 'started (UTC)', 'finished (UTC)', 'duration', 'error code'];
  const rows = task.steps.map((s) => [
    s.name,
    stateText(s.state),
    `${s.attempt}/${s.max_attempts}`,
    clock(s.started_at),
    clock(s.finished_at),
    s.started_at && s.finished_at ? span(Date.parse(s.finished_at) - Date.parse(s.started_at)) : '-',
    errorCode(s.error) ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i]!))));
  const line = (cells: string[]) => `    ${cells.map((c, i) => pad(c, widths[i]!)).join('  ')}`.trimEnd();
  return [
    title ? `  ${title}` : null,
    `  ${heading}`,
    dim(line(header)),
    ...rows.map(line),
  ]
    .filter((l): l is string => l !== null)
    .join('\n');
}

/** One expected outcome of the demo. */
export interface Check {
  /** Stable id printed with the verdict, e.g. `a1`; the demo's test looks for `PASS (a1)`. */
  id: string;
  label: string;
  pass: boolean;
  /** What was seen, printed on failure (and on success when short). */
  detail?: string;
}

export function checklist(checks: Check[]): string {
  const lines = checks.map((c) => {
    const verdict = c.pass ? green('PASS') : red('FAIL');
    const detail = c.detail ? dim(` — ${c.detail}`) : '';
    return `  ${verdict} (${c.id}) ${c.label}${detail}`;
  });
  const passed = checks.filter((c) => c.pass).length;
  const summary = passed === checks.length ? green(`${passed}/${checks.length} checks passed`) : red(`${passed}/${checks.length} checks passed`);
  return [...lines, '', `  ${summary}`].join('\n');
}

import type { StepContext, Worker } from '@tasker/worker';
import type { CompiledTemplate } from '@tasker/protocol';
import type { Stack } from './stack.ts';

export interface Execution {
  namespace: string;
  taskId: string;
  step: string;
  attempt: number;
  start: number;
  end: number;
}

/**
 * A real TypeScript worker whose handlers (one per callable of the given templates) record
 * when they ran and return `{ step }` after a short random pause. The stack's `cleanup()`
 * stops it.
 */
export async function startRecordingWorker(
  stack: Stack,
  namespace: string,
  templates: CompiledTemplate[],
  executions: Execution[],
  options: { concurrency?: number; maxPauseMs?: number } = {},
): Promise<Worker> {
  const handlers: Record<string, (ctx: StepContext) => Promise<unknown>> = {};
  for (const t of templates.filter((t) => t.namespace === namespace)) {
    for (const s of t.steps) {
      handlers[s.callable] = async (ctx) => {
        const start = performance.now();
        await new Promise((r) => setTimeout(r, Math.random() * (options.maxPauseMs ?? 10)));
        const end = performance.now();
        executions.push({ namespace: ctx.namespace, taskId: ctx.taskId, step: ctx.stepName, attempt: ctx.attempt, start, end });
        return { step: ctx.stepName, saw: Object.keys(ctx.dependencyResults).sort() };
      };
    }
  }
  return stack.worker({ namespace, handlers, concurrency: options.concurrency ?? 20 });
}

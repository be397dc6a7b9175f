/**
 * What a handler returns to make its step wait for a task it created, without holding a
 * worker slot: `return ctx.waitFor(child.task.id)`. The orchestrator completes the step with
 * that task's result (`{task_id, namespace, name, results}`, `results` holding its final
 * steps' results by step name) when it completes, or
 * fails it (CHILD_TASK_FAILED / CHILD_TASK_CANCELLED) when it does not.
 */
export class WaitForTask {
  constructor(readonly taskId: string) {}
}

import { Option, type Command } from 'commander';
import type { ListTasksFilter } from '@tasker/client';
import type { TaskListItem, TaskView } from '@tasker/protocol';
import { isoTimeArg, parseTemplateRef, positiveInt, readJsonArg } from '../args.ts';
import { ExitCode } from '../exit-codes.ts';
import { errorText, paintState, renderTask, stepsDone, stepsTable, tasksTable, templateRef } from '../format.ts';
import { watchTask } from '../progress.ts';
import { examples, type Runtime } from '../runtime.ts';

/** Exit 1 when the task ended badly (error, cancelled): the operation ran, the outcome failed. */
function outcomeCode(task: TaskView, timedOut: boolean): ExitCode {
  return timedOut || task.state === 'error' || task.state === 'cancelled' ? ExitCode.FAILED : ExitCode.OK;
}

export function registerTaskCommands(program: Command, rt: Runtime): void {
  const task = program.command('task').description('create, inspect, list and cancel tasks');
  examples(task, 'tasker task create payments.process_refund --context \'{"payment_id":"pay_1","refund_amount":10}\' --wait');

  examples(
    task
      .command('create')
      .description('create a task from a template (the newest version unless @version is given)')
      .argument('<template>', 'namespace.name[@version], e.g. payments.process_refund@1.0.0')
      .requiredOption('-c, --context <json|@file>', "the task's input: inline JSON, @path of a JSON file, or @- for stdin")
      .option('-k, --idempotency-key <key>', 'asking again with the same key returns the existing task (created: false)')
      .option('--correlation-id <id>', 'carried by every step (generated when absent)')
      .option('-w, --wait', 'show live progress until the task ends, then a table of its steps; exit 1 if it ends in error or cancelled')
      .option('--timeout <seconds>', 'with --wait: stop waiting after this long (the task goes on) and exit 1', positiveInt('--timeout'))
      .addOption(new Option('--poll-ms <ms>', 'with --wait: time between two reads of the task').argParser(positiveInt('--poll-ms', 60_000)).default(250).hideHelp()),
    "tasker task create payments.process_refund --context '{\"payment_id\":\"pay_1\",\"refund_amount\":49.99}'",
    'tasker task create customer_success.process_refund@1.0.0 --context @refund.json --idempotency-key ticket-42 --wait',
  ).action(async (ref: string, opts: { context: string; idempotencyKey?: string; correlationId?: string; wait?: boolean; timeout?: number; pollMs: number }, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    const t = parseTemplateRef(ref);
    const context = readJsonArg(opts.context, '--context') as Record<string, unknown>;
    const api = client();
    const { created, task: first } = await api.createTask({
      namespace: t.namespace,
      name: t.name,
      ...(t.version ? { version: t.version } : {}),
      context,
      ...(opts.idempotencyKey ? { idempotencyKey: opts.idempotencyKey } : {}),
      ...(opts.correlationId ? { correlationId: opts.correlationId } : {}),
    });
    out.line(
      created
        ? `created task ${first.id} (${templateRef(first)}): ${paintState(first.state, out.color)}, ${first.steps.length} steps`
        : `task ${first.id} (${templateRef(first)}) already exists for idempotency key '${first.idempotency_key}': ${paintState(first.state, out.color)}`,
    );
    if (!opts.wait) {
      out.document({ created, task: first });
      rt.exitCode = ExitCode.OK;
      return;
    }
    const { task: last, timedOut, elapsedMs } = await watchTask(api, first, out, {
      pollMs: opts.pollMs,
      timeoutMs: (opts.timeout ?? 0) * 1000,
    });
    out.result({ created, task: last, ...(timedOut ? { timed_out: true } : {}) }, () => {
      const { done, total } = stepsDone(last);
      out.line('');
      out.line(stepsTable(last, out.color));
      out.line('');
      if (timedOut) {
        out.line(`task ${last.id} is still ${last.state} after ${opts.timeout}s (${done}/${total} steps done); it goes on: tasker task get ${last.id}`);
      } else {
        const why = last.error ? `: ${errorText(last.error, 200)}` : '';
        out.line(`task ${last.id} ${paintState(last.state, out.color)} (${done}/${total} steps done, waited ${(elapsedMs / 1000).toFixed(1)}s)${why}`);
      }
    });
    rt.exitCode = outcomeCode(last, timedOut);
  });

  examples(
    task
      .command('get')
      .description('show a task: its steps (state, attempts, times, errors), transitions, parent and children')
      .argument('<task-id>', 'the task id (tsk_...)'),
    'tasker task get tsk_0123456789abcdefghij',
    'tasker task get tsk_0123456789abcdefghij --json | jq .steps',
  ).action(async (id: string, _opts: unknown, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    const view = await client().getTask(id);
    out.result(view, () => out.line(renderTask(view, out.color)));
    rt.exitCode = ExitCode.OK;
  });

  examples(
    task
      .command('list')
      .description('list tasks, newest first, with filters (combined with AND) and pagination')
      .option('-n, --namespace <namespace>', 'only tasks of this namespace')
      .option('--name <template>', 'only tasks of this template name')
      .addOption(new Option('-s, --state <state>', 'only tasks in this state').choices(['in_progress', 'complete', 'error', 'cancelled']))
      .option('--correlation-id <id>', 'only tasks with this correlation id')
      .option('--parent <task-id>', 'only the children of this task')
      .option('--created-after <time>', 'created at or after this time (ISO 8601, e.g. 2025-01-31T12:00:00Z)', isoTimeArg('--created-after'))
      .option('--created-before <time>', 'created before this time', isoTimeArg('--created-before'))
      .option('-l, --limit <n>', 'tasks per page (1-500; the server default is 50)', positiveInt('--limit', 500))
      .option('--cursor <cursor>', 'the next page, as printed by the previous one')
      .option('-a, --all', 'every page, not only the first'),
    'tasker task list --namespace payments --state error --limit 20',
    'tasker task list --parent tsk_0123456789abcdefghij --all --json',
  ).action(
    async (
      opts: {
        namespace?: string;
        name?: string;
        state?: TaskListItem['state'];
        correlationId?: string;
        parent?: string;
        createdAfter?: string;
        createdBefore?: string;
        limit?: number;
        cursor?: string;
        all?: boolean;
      },
      cmd: Command,
    ) => {
      const { out, client } = rt.begin(cmd);
      const filter: ListTasksFilter = {};
      if (opts.namespace) filter.namespace = opts.namespace;
      if (opts.name) filter.name = opts.name;
      if (opts.state) filter.state = opts.state;
      if (opts.correlationId) filter.correlation_id = opts.correlationId;
      if (opts.parent) filter.parent_task_id = opts.parent;
      if (opts.createdAfter) filter.created_after = opts.createdAfter;
      if (opts.createdBefore) filter.created_before = opts.createdBefore;
      if (opts.limit) filter.limit = opts.limit;
      if (opts.cursor) filter.cursor = opts.cursor;
      const api = client();
      let items: TaskListItem[];
      let next: string | null;
      if (opts.all) {
        items = [];
        for await (const t of api.iterateTasks(filter)) items.push(t);
        next = null;
      } else {
        const page = await api.listTasks(filter);
        items = page.items;
        next = page.next_cursor;
      }
      out.result({ items, next_cursor: next }, () => {
        if (items.length === 0) {
          out.line('no tasks match');
          return;
        }
        out.line(tasksTable(items, out.color));
        out.line('');
        out.line(`${items.length} task${items.length === 1 ? '' : 's'}${next ? `; more: --cursor ${next} (or --all)` : ''}`);
      });
      rt.exitCode = ExitCode.OK;
    },
  );

  examples(
    task
      .command('cancel')
      .description('cancel a task: pending and waiting steps are cancelled, running handlers are signalled, children still running are cancelled')
      .argument('<task-id>', 'the task id')
      .requiredOption('-r, --reason <reason>', 'why (kept in the audit with the token name)'),
    "tasker task cancel tsk_0123456789abcdefghij --reason 'customer withdrew the request'",
  ).action(async (id: string, opts: { reason: string }, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    const view = await client().cancelTask(id, opts.reason);
    out.result({ task: view }, () => {
      const counts = new Map<string, number>();
      for (const s of view.steps) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
      out.line(
        `task ${view.id} (${templateRef(view)}): ${paintState(view.state, out.color)}; steps: ${[...counts].map(([s, n]) => `${n} ${s}`).join(', ')}`,
      );
    });
    rt.exitCode = ExitCode.OK;
  });
}

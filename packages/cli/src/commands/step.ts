import type { Command } from 'commander';
import type { TaskView } from '@tasker/protocol';
import { readJsonArg } from '../args.ts';
import { ExitCode } from '../exit-codes.ts';
import { paintState, stepsTable, templateRef } from '../format.ts';
import type { Output } from '../output.ts';
import { examples, type Runtime } from '../runtime.ts';

function report(out: Output, view: TaskView, stepId: string, what: string): void {
  out.result({ task: view }, () => {
    const step = view.steps.find((s) => s.id === stepId);
    out.line(
      `${what} step ${step ? `'${step.name}' ` : ''}${stepId}: now ${step ? paintState(step.state, out.color) : '?'}; task ${view.id} (${templateRef(view)}) is ${paintState(view.state, out.color)}`,
    );
    out.line('');
    out.line(stepsTable(view, out.color));
  });
}

export function registerStepCommands(program: Command, rt: Runtime): void {
  const step = program.command('step').description('operate a step by hand: retry, resolve or complete it (recorded in the audit with who and why)');
  examples(step, "tasker step retry stp_0123456789abcdefghij --reason 'gateway is back'");

  examples(
    step
      .command('retry')
      .description('retry a failed step with a new attempt; its task resumes from there')
      .argument('<step-id>', 'the step id (stp_..., see tasker task get)')
      .requiredOption('-r, --reason <reason>', 'why (kept in the audit)'),
    "tasker step retry stp_0123456789abcdefghij --reason 'gateway outage is over'",
  ).action(async (id: string, opts: { reason: string }, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    report(out, await client().retryStep(id, opts.reason), id, 'retried');
    rt.exitCode = ExitCode.OK;
  });

  examples(
    step
      .command('resolve')
      .description('mark a failed step resolved by hand (no result): its dependents proceed')
      .argument('<step-id>', 'the step id')
      .requiredOption('-r, --reason <reason>', 'why (kept in the audit)'),
    "tasker step resolve stp_0123456789abcdefghij --reason 'refunded by phone'",
  ).action(async (id: string, opts: { reason: string }, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    report(out, await client().resolveStep(id, opts.reason), id, 'resolved');
    rt.exitCode = ExitCode.OK;
  });

  examples(
    step
      .command('complete')
      .description("complete a step by hand with a result, as if its handler had returned it; dependents see that result")
      .argument('<step-id>', 'the step id')
      .requiredOption('--result <json|@file>', 'the result: inline JSON, @path of a JSON file, or @- for stdin')
      .requiredOption('-r, --reason <reason>', 'why (kept in the audit)'),
    'tasker step complete stp_0123456789abcdefghij --result \'{"refund_id":"re_123"}\' --reason \'refunded in the gateway console\'',
  ).action(async (id: string, opts: { result: string; reason: string }, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    const result = readJsonArg(opts.result, '--result');
    report(out, await client().completeStep(id, result, opts.reason), id, 'completed');
    rt.exitCode = ExitCode.OK;
  });
}

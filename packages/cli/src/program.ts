import { Command, Option } from 'commander';
import { registerBrokerCommands } from './commands/broker.ts';
import { registerMigrateCommand } from './commands/migrate.ts';
import { registerOrchestratorCommands } from './commands/orchestrator.ts';
import { registerStepCommands } from './commands/step.ts';
import { registerTaskCommands } from './commands/task.ts';
import { registerTemplateCommands } from './commands/templates.ts';
import { registerWorkerCommands } from './commands/worker.ts';
import { EXIT_CODES_HELP } from './exit-codes.ts';
import type { Runtime } from './runtime.ts';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';
export const VERSION = '0.1.0';

/** The `tasker` program: every command, the global options, help with examples and exit codes. */
export function buildProgram(rt: Runtime): Command {
  const program = new Command('tasker');
  // Settings first: subcommands copy them when created.
  program
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void rt.streams.stdout.write(s),
      writeErr: (s) => void rt.streams.stderr.write(s),
    })
    .showHelpAfterError('(add --help for usage)')
    .helpCommand(false);
  program
    .description('Tasker: run and operate workflows (templates, tasks, steps) from the command line.')
    .version(VERSION, '-V, --version')
    .addOption(new Option('--url <url>', 'the orchestrator HTTP API').env('TASKER_API_URL').default(DEFAULT_API_URL))
    .addOption(new Option('--token <token>', 'API bearer token').env('TASKER_API_TOKEN'))
    .option('--json', 'machine output: exactly one JSON document on stdout (errors too: {"error": ...})')
    .addHelpText(
      'after',
      `
Examples:
  $ tasker templates validate templates/
  $ tasker task create payments.process_refund --context '{"payment_id":"pay_1","refund_amount":10}' --wait
  $ tasker task list --namespace payments --state error --json | jq '.items[].id'
  $ tasker step retry stp_0123456789abcdefghij --reason 'gateway is back'

Global options go anywhere on the line. Environment: TASKER_API_URL, TASKER_API_TOKEN;
migrate, orchestrator start and worker start read the TASKER_* variables of the README.

${EXIT_CODES_HELP}
`,
    );

  registerMigrateCommand(program, rt);
  registerTemplateCommands(program, rt);
  registerTaskCommands(program, rt);
  registerStepCommands(program, rt);
  registerOrchestratorCommands(program, rt);
  registerWorkerCommands(program, rt);
  registerBrokerCommands(program, rt);
  return program;
}

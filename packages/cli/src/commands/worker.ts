import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { destination, pino } from 'pino';
import type { StepHandler } from '@tasker/worker';
import { positiveInt } from '../args.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { examples, type Runtime } from '../runtime.ts';
import { startUnlessStopped, untilStopSignal } from '../stop-signal.ts';

const isHandlerMap = (v: unknown): v is Record<string, StepHandler> =>
  typeof v === 'object' && v !== null && Object.keys(v).length > 0 && Object.values(v).every((h) => typeof h === 'function');

/** The handlers a module exports: `export const handlers = {...}` or `export default {...}`, keyed by callable. */
export async function loadHandlers(modulePath: string): Promise<Record<string, StepHandler>> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(modulePath)).href)) as Record<string, unknown>;
  } catch (err) {
    throw new CliError(ExitCode.USAGE, `--handlers: cannot load ${modulePath}: ${(err as Error).message}`);
  }
  const def = mod['default'] as Record<string, unknown> | undefined;
  for (const candidate of [mod['handlers'], def?.['handlers'], def]) {
    if (isHandlerMap(candidate)) return candidate;
  }
  throw new CliError(
    ExitCode.USAGE,
    `--handlers: ${modulePath} exports no handlers: export \`handlers\` (or a default object) mapping each handler.callable to a function (ctx) => result`,
  );
}

export function registerWorkerCommands(program: Command, rt: Runtime): void {
  const worker = program.command('worker').description('run a TypeScript worker for a namespace');
  examples(worker, 'tasker worker start --namespace payments --handlers ./src/handlers.ts');

  examples(
    worker
      .command('start')
      .description(
        "run a worker for one namespace with the handlers a module exports (`handlers`, or a default object, keyed by handler.callable) until SIGTERM or SIGINT; running steps get the shutdown grace period. Broker settings from TASKER_AMQP_URL and TASKER_AMQP_PREFIX",
      )
      .requiredOption('-n, --namespace <namespace>', 'the namespace whose step queue this worker reads')
      .requiredOption('--handlers <module>', 'path of a JS or TS module exporting the handlers')
      .option('--concurrency <n>', 'steps run at once (default 10)', positiveInt('--concurrency', 65_535))
      .option('--shutdown-grace-ms <ms>', 'on stop, how long running handlers may take before they are aborted (default 10000)', (v: string) =>
        v === '0' ? 0 : positiveInt('--shutdown-grace-ms')(v),
      ),
    'tasker worker start --namespace payments --handlers ./dist/payments-handlers.js --concurrency 20',
  ).action(async (opts: { namespace: string; handlers: string; concurrency?: number; shutdownGraceMs?: number }, cmd: Command) => {
    const { out } = rt.begin(cmd);
    const handlers = await loadHandlers(opts.handlers);
    const { createWorker } = await import('@tasker/worker');
    let w;
    try {
      w = createWorker({
        namespace: opts.namespace,
        handlers,
        ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
        ...(opts.shutdownGraceMs !== undefined ? { shutdownGraceMs: opts.shutdownGraceMs } : {}),
        // With --json, stdout holds only the JSON document: logs go to stderr.
        ...(out.json ? { logger: pino({ level: process.env['TASKER_LOG_LEVEL'] ?? 'info', name: 'tasker-worker' }, destination(2)) } : {}),
      });
    } catch (err) {
      throw new CliError(ExitCode.USAGE, (err as Error).message);
    }
    const stop = untilStopSignal();
    const worker = w;
    if ((await startUnlessStopped(worker.start().then(() => worker), stop, () => worker.stop())) === null) {
      // worker.stop() would wait for the broker connection it is still trying: not awaited.
      out.note('stopped before the worker was running');
      rt.exitCode = ExitCode.OK;
      return;
    }
    out.document({ status: 'running', namespace: opts.namespace, handlers: Object.keys(handlers).sort(), pid: process.pid });
    out.note(`worker for namespace '${opts.namespace}' running with ${Object.keys(handlers).length} handlers; stop with SIGTERM or Ctrl-C`);
    await stop;
    await w.stop();
    rt.exitCode = ExitCode.OK;
  });
}

import type { Command } from 'commander';
import { destination, pino } from 'pino';
import { TemplateError } from '@tasker/protocol';
import { positiveInt } from '../args.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { examples, type Runtime } from '../runtime.ts';
import { startUnlessStopped, untilStopSignal } from '../stop-signal.ts';

export function registerOrchestratorCommands(program: Command, rt: Runtime): void {
  const orchestrator = program.command('orchestrator').description('run the orchestrator');
  examples(orchestrator, 'tasker orchestrator start');

  examples(
    orchestrator
      .command('start')
      .description(
        'run an orchestrator configured from TASKER_* environment variables (see the README) until SIGTERM or SIGINT, then stop cleanly (batches in flight finish). Logs JSON lines (pino) on stdout',
      )
      .option('--templates-dir <dir>', 'register the templates of this folder at start (default: TASKER_TEMPLATES_DIR)')
      .option('--http-port <port>', 'HTTP API port, 0 for any free one (default: TASKER_HTTP_PORT, else 8080)', (v: string) =>
        v === '0' ? 0 : positiveInt('--http-port', 65535)(v),
      )
      .option('--tokens-file <path>', 'YAML or JSON file of API tokens, {tokens: [{name, token, namespaces, actions}]} (default: TASKER_API_TOKENS_FILE)')
      .option('--insecure', 'serve the HTTP API without authentication (logged as a warning; default: TASKER_API_INSECURE)'),
    'tasker orchestrator start --tokens-file /etc/tasker/tokens.yaml',
    'TASKER_DATABASE_URL=postgres://... TASKER_AMQP_URL=amqp://... tasker orchestrator start --templates-dir templates/',
  ).action(async (opts: { templatesDir?: string; httpPort?: number; tokensFile?: string; insecure?: boolean }, cmd: Command) => {
    const { out } = rt.begin(cmd);
    const { Orchestrator, resolveConfig } = await import('@tasker/orchestrator');
    const input = {
      ...(opts.templatesDir ? { templatesDir: opts.templatesDir } : {}),
      ...(opts.httpPort !== undefined ? { httpPort: opts.httpPort } : {}),
      ...(opts.tokensFile ? { apiTokensFile: opts.tokensFile } : {}),
      ...(opts.insecure ? { apiInsecure: true } : {}),
    };
    let config;
    try {
      config = resolveConfig(input); // a bad TASKER_* value is a usage error, before connecting to anything
    } catch (err) {
      throw new CliError(ExitCode.USAGE, (err as Error).message);
    }
    // With --json, stdout holds only the JSON document: logs go to stderr.
    const logger = out.json ? pino({ level: config.logLevel, base: { component: 'orchestrator' } }, destination(2)) : undefined;
    const stop = untilStopSignal();
    let running;
    try {
      running = await startUnlessStopped(Orchestrator.start({ ...input, ...(logger ? { logger } : {}) }), stop, (o) => o.stop());
    } catch (err) {
      // Refusals of the configuration itself (no API tokens, a bad tokens file) are usage errors.
      if (/no API tokens configured|tokens file .* is invalid|TASKER_API_TOKENS is invalid/.test((err as Error).message)) {
        throw new CliError(ExitCode.USAGE, (err as Error).message);
      }
      if (err instanceof TemplateError) {
        throw new CliError(ExitCode.FAILED, `templates in ${opts.templatesDir ?? 'TASKER_TEMPLATES_DIR'} are invalid:\n${err.message}`, err.code, err.issues);
      }
      throw err;
    }
    if (running === null) {
      out.note('stopped before the orchestrator was running');
      rt.exitCode = ExitCode.OK;
      return;
    }
    out.document({ status: 'running', http_url: running.httpUrl, pid: process.pid });
    out.note(`orchestrator running${running.httpUrl ? `; HTTP API at ${running.httpUrl}` : ''}; stop with SIGTERM or Ctrl-C`);
    const signal = await stop;
    running.logger.info({ signal }, 'stopping: finishing batches in flight');
    await running.stop();
    rt.exitCode = ExitCode.OK;
  });
}

import type { Command } from 'commander';
import { CliError, ExitCode } from '../exit-codes.ts';
import { examples, type Runtime } from '../runtime.ts';

/**
 * `tasker broker apply`: the topology, one broker user per namespace (and for the
 * orchestrator and services) with least permissions, from infra/broker.yaml and the
 * registered namespaces. The same function as `pnpm broker:apply`.
 */
export function registerBrokerCommands(program: Command, rt: Runtime): void {
  const broker = program.command('broker').description('broker access control (users, permissions, topology)');
  examples(broker, 'tasker broker apply --dry-run');
  examples(
    broker
      .command('apply')
      .description('declare the topology and create or update the broker users and their permissions (idempotent; never deletes)')
      .option('--dry-run', 'show what would change, change nothing'),
    'tasker broker apply          # passwords: TASKER_BROKER_PASSWORD_<USER>, e.g. TASKER_BROKER_PASSWORD_TASKER_NS_PAYMENTS',
    'tasker broker apply --dry-run --json   # or TASKER_BROKER_SECRETS_FILE=/run/secrets/broker.yaml',
  ).action(async (opts: { dryRun?: boolean }, cmd: Command) => {
    const { out } = rt.begin(cmd);
    const { applyBrokerAccess, formatBrokerAccessReport } = await import('@tasker/orchestrator');
    let report: Awaited<ReturnType<typeof applyBrokerAccess>>;
    try {
      report = await applyBrokerAccess({ dryRun: opts.dryRun ?? false });
    } catch (err) {
      const e = err as Error & { code?: string };
      const usage = /password|TASKER_|prefix|refus/i.test(e.message);
      throw new CliError(usage ? ExitCode.USAGE : ExitCode.UNAVAILABLE, e.message);
    }
    out.result(report, () => out.line(formatBrokerAccessReport(report)));
    rt.exitCode = ExitCode.OK;
  });
}

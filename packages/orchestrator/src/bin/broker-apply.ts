#!/usr/bin/env node
// `pnpm broker:apply [--dry-run] [--json]`: declares the topology and creates or updates the
// broker users and their permissions from infra/broker.yaml (TASKER_BROKER_ACCESS_FILE)
// and the namespaces registered in the database. Passwords: TASKER_BROKER_PASSWORD_<USER>
// or TASKER_BROKER_SECRETS_FILE. Management API: TASKER_RABBITMQ_MANAGEMENT_URL.
// Exit 0 when applied (or nothing to do), 1 with one sentence when refused or failed.
import { applyBrokerAccess, formatBrokerAccessReport } from '../broker-access/apply.ts';

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--dry-run' && a !== '--json');
if (unknown.length > 0) {
  console.error(`unknown argument${unknown.length > 1 ? 's' : ''} ${unknown.join(' ')}; usage: broker-apply [--dry-run] [--json]`);
  process.exit(2);
}
try {
  const report = await applyBrokerAccess({ dryRun: args.includes('--dry-run') });
  console.log(args.includes('--json') ? JSON.stringify(report, null, 2) : formatBrokerAccessReport(report));
} catch (err) {
  console.error(`broker:apply: ${(err as Error).message}`);
  process.exit(1);
}

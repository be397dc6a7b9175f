/**
 * What the polyglot tests share: running a command to its end, the Rust build (once per
 * run: cargo skips what is up to date, and its lock serializes concurrent builds), the
 * polyglot demo on a schema, prefix and database of its own, and the conformance kit.
 */
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { formatReport, runConformance, type ConformanceReport } from '@tasker/conformance';
import { EXPECTED_OUTCOMES } from '../../examples/refunds/src/demo/scenario.ts';
import { buildRust, cargoPath, PYTHON, RUBY } from '../../examples/polyglot/src/languages.ts';
import { AMQP_URL, DATABASE_URL, uniqueSuffix } from '../support/services.ts';
import { dropSchema, dropTopology } from '../support/stack.ts';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export { PYTHON, RUBY, cargoPath };

export interface Ran {
  code: number | null;
  output: string;
}

/** Runs a command from the repository root (or `cwd`) and collects its output; never rejects. */
export function runCommand(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    let output = '';
    const proc = spawn(cmd, args, {
      cwd: options.cwd ?? REPO,
      env: { ...process.env, TASKER_DATABASE_URL: DATABASE_URL(), TASKER_AMQP_URL: AMQP_URL(), NO_COLOR: '1', ...(options.env ?? {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => proc.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    proc.stdout.on('data', (b: Buffer) => (output += b.toString()));
    proc.stderr.on('data', (b: Buffer) => (output += b.toString()));
    proc.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, output: `${output}\n${err.message}` });
    });
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

let rustBuild: Promise<void> | null = null;
/** Builds the Rust SDK (with its conformance worker) and the Rust handlers, offline, into sdks/rust/target. */
export function ensureRustBuilt(): Promise<void> {
  rustBuild ??= (async () => {
    await promisify(execFile)(cargoPath(), ['build', '--offline', '--quiet'], { cwd: `${REPO}sdks/rust`, maxBuffer: 16 << 20 }).catch(
      (err: { stderr?: string; message: string }) => {
        throw new Error(`cargo build of sdks/rust failed: ${err.stderr || err.message}`);
      },
    );
    await buildRust(REPO);
  })();
  return rustBuild;
}

/** The command line that runs a Rust binary of sdks/rust/target as a worker, through the exec bridge. */
export function rustExecWorker(binary: string): string[] {
  return [process.execPath, '--import', 'tsx', 'packages/worker/src/bin/exec-worker.ts', '--', `sdks/rust/target/debug/${binary}`];
}

/** Runs the conformance kit against a worker command; prints the table when it fails. */
export async function conformance(namespace: string, command: string[]): Promise<ConformanceReport & { table: string }> {
  const report = await runConformance({ namespace, command, cwd: REPO, databaseUrl: DATABASE_URL(), amqpUrl: AMQP_URL() });
  return { ...report, table: formatReport(report, command.join(' ')) };
}

/**
 * Runs `pnpm demo:polyglot` with the given languages on a schema and prefix of its own, and
 * removes both afterwards.
 */
export async function polyglotDemo(customerSuccess: string, payments: string): Promise<Ran> {
  const sfx = uniqueSuffix();
  const schema = `pdemo_${sfx}`;
  const prefix = `pdemo${sfx}`;
  try {
    return await runCommand(
      process.execPath,
      ['--import', 'tsx', 'examples/polyglot/src/demo.ts', '--customer-success', customerSuccess, '--payments', payments],
      { env: { TASKER_DB_SCHEMA: schema, TASKER_AMQP_PREFIX: prefix, TASKER_HTTP_PORT: '0' }, timeoutMs: 110_000 },
    );
  } finally {
    await dropTopology(AMQP_URL(), prefix, ['customer_success', 'payments']).catch(() => undefined);
    await dropSchema(DATABASE_URL(), schema).catch(() => undefined);
  }
}

/** Every expected outcome of the refunds scenario, as the demo prints them (`PASS (a1) ...`). */
export const SCENARIO_CHECKS = Object.keys(EXPECTED_OUTCOMES);

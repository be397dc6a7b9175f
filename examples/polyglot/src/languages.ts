/**
 * How to start each team's worker in each language, from the repository root. The Rust
 * teams run through the worker runtime's exec bridge (Debian has no AMQP crate); Python
 * and Ruby speak AMQP themselves; TypeScript is examples/refunds.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const LANGUAGES = ['typescript', 'python', 'ruby', 'rust'] as const;
export type Language = (typeof LANGUAGES)[number];
export const TEAMS = ['customer_success', 'payments'] as const;
export type Team = (typeof TEAMS)[number];

/** Debian's Python, which python3-pika serves (the first python3 on PATH may be another build). */
export const PYTHON = process.env['TASKER_PYTHON'] ?? '/usr/bin/python3';
export const RUBY = process.env['TASKER_RUBY'] ?? 'ruby';
/** Where the Rust binaries are built (git-ignored, shared by the SDK and the handlers). */
export const RUST_TARGET_DIR = 'sdks/rust/target';

const TS_WORKER: Record<Team, string> = {
  customer_success: 'examples/refunds/src/workers/customer-success.ts',
  payments: 'examples/refunds/src/workers/payments.ts',
};
const RUST_BINARY: Record<Team, string> = { customer_success: 'customer-success-worker', payments: 'payments-worker' };

/** The command line of a team's worker in a language, relative to the repository root. */
export function workerCommand(team: Team, language: Language): string[] {
  switch (language) {
    case 'typescript':
      return [process.execPath, '--import', 'tsx', TS_WORKER[team]];
    case 'python':
      return [PYTHON, 'examples/polyglot/python/worker.py', team];
    case 'ruby':
      return [RUBY, 'examples/polyglot/ruby/worker.rb', team];
    case 'rust':
      return [
        process.execPath,
        '--import',
        'tsx',
        'packages/worker/src/bin/exec-worker.ts',
        '--namespace',
        team,
        '--',
        join(RUST_TARGET_DIR, 'debug', RUST_BINARY[team]),
      ];
  }
}

/** cargo: the one on PATH, else rustup's, else Debian's. */
export function cargoPath(): string {
  for (const dir of (process.env['PATH'] ?? '').split(':')) if (dir && existsSync(join(dir, 'cargo'))) return join(dir, 'cargo');
  for (const p of [join(homedir(), '.cargo/bin/cargo'), '/usr/bin/cargo']) if (existsSync(p)) return p;
  return 'cargo';
}

/**
 * Builds the Rust handlers (and the SDK with them) offline from Debian's crates, into
 * sdks/rust/target. Cargo skips what is up to date, so calling it again costs little.
 */
export async function buildRust(repo: string): Promise<void> {
  await promisify(execFile)(cargoPath(), ['build', '--offline', '--quiet', '--target-dir', join(repo, RUST_TARGET_DIR)], {
    cwd: join(repo, 'examples/polyglot/rust'),
    maxBuffer: 16 * 1024 * 1024,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`cargo build of examples/polyglot/rust failed: ${err.stderr || err.message}`);
  });
}

/**
 * Section `languages`: the per-step overhead of each language's worker runtime, measured by
 * the conformance kit's `measureWorkerOverhead()` on that language's conformance worker (the
 * handler `conformance_succeed` does nothing). Steps go straight to the namespace's queue and
 * results are timed on the results exchange: no orchestrator, no database, so the figures
 * are the worker runtime plus one broker hop each way (issue 4's comparison, now in the same
 * run as everything else).
 *
 * Each language is first checked for what it needs (Debian's python3-pika, ruby-bunny, cargo
 * with Debian's crates); one that lacks it is reported as skipped with the reason.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { WorkerOverhead } from '@tasker/conformance';
import type { Language } from '../options.ts';

/** tsx's loader, resolved from this package so the TypeScript workers start from any cwd. */
const TSX = import.meta.resolve('tsx');
/** Debian's Python, which python3-pika serves (the first python3 on PATH may be another build). */
const PYTHON = process.env['TASKER_PYTHON'] ?? '/usr/bin/python3';
const RUBY = process.env['TASKER_RUBY'] ?? 'ruby';
/**
 * The conformance workers run 16 steps at once (their own setting); the exec bridge's
 * default is 10, so it is given 16 too and every language gets the same prefetch.
 */
export const WORKER_CONCURRENCY = 16;

export const LANGUAGE_LABELS: Record<Language, string> = {
  typescript: 'TypeScript, native AMQP (packages/worker)',
  python: 'Python, pika (sdks/python)',
  ruby: 'Ruby, bunny (sdks/ruby)',
  rust: 'Rust through the exec bridge (sdks/rust)',
};

export interface RustBuild {
  profile: 'release' | 'debug';
  /** Wall time of `cargo build`, not part of any figure. */
  seconds: number;
  /** Whether cargo compiled anything (false: the binary was up to date). */
  compiled: boolean;
  binary: string;
  /** Why it is not the release profile, when it is not. */
  note: string | null;
}

/** How to start one language's conformance worker, or why it cannot be. */
export type PreparedWorker =
  | { command: string[]; env: Record<string, string>; runtime: string; build: RustBuild | null }
  | { skipped: string; build: RustBuild | null };

/** A measured language, or a skipped one (with the same keys, null). */
export type LanguageFigures =
  | (WorkerOverhead & { worker: string; runtime: string; rust_build?: RustBuild })
  | { worker: string; skipped: string; p50_ms: null; p95_ms: null; p99_ms: null; in_flight_steps_per_sec: null; rust_build?: RustBuild };

export function skipped(language: Language, reason: string, build?: RustBuild | null): LanguageFigures {
  return {
    worker: LANGUAGE_LABELS[language],
    skipped: reason,
    p50_ms: null,
    p95_ms: null,
    p99_ms: null,
    in_flight_steps_per_sec: null,
    ...(build ? { rust_build: build } : {}),
  };
}

interface Ran {
  ok: boolean;
  stdout: string;
  stderr: string;
  /** What went wrong, in a sentence, when not ok. */
  problem: string;
}

function run(cmd: string, args: string[], options: { cwd: string; timeoutMs: number }): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: options.cwd, timeout: options.timeoutMs, maxBuffer: 16 << 20, env: process.env }, (err, stdout, stderr) => {
      if (!err) return resolve({ ok: true, stdout, stderr, problem: '' });
      const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: string | number };
      // The line that says why: cargo's first `error…`, else the last one (Python's exception, Ruby's LoadError).
      const lines = stderr.trim().split('\n').filter(Boolean);
      const why = lines.find((l) => /^error\b/.test(l)) ?? lines[lines.length - 1];
      const problem =
        e.code === 'ENOENT'
          ? `${cmd} not found`
          : e.killed
            ? `${cmd} ${args[0] ?? ''} did not finish within ${Math.round(options.timeoutMs / 1000)} s`
            : `${cmd} exited with code ${e.code}${why ? `: ${why.trim()}` : ''}`;
      resolve({ ok: false, stdout, stderr, problem });
    });
  });
}

/** cargo: the one on PATH, else rustup's, else Debian's. */
function cargoPath(): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(':')) if (dir && existsSync(join(dir, 'cargo'))) return join(dir, 'cargo');
  for (const p of [join(homedir(), '.cargo/bin/cargo'), '/usr/bin/cargo']) if (existsSync(p)) return p;
  return null;
}

/**
 * Builds sdks/rust's conformance worker offline (Debian's crates, per sdks/rust/.cargo/config.toml)
 * into `targetDir`: the release profile first, the debug one if release fails. The target
 * directory is the bench's own, so the build never waits on the test suite's (cargo locks it).
 */
export async function buildRustWorker(repo: string, targetDir: string, timeoutMs: number): Promise<RustBuild | { skipped: string }> {
  const cargo = cargoPath();
  if (!cargo) return { skipped: 'cargo not found (PATH, ~/.cargo/bin, /usr/bin)' };
  let releaseProblem: string | null = null;
  for (const profile of ['release', 'debug'] as const) {
    const t0 = performance.now();
    const r = await run(
      cargo,
      ['build', '--offline', ...(profile === 'release' ? ['--release'] : []), '--bin', 'tasker-conformance-worker', '--target-dir', targetDir],
      { cwd: join(repo, 'sdks/rust'), timeoutMs },
    );
    const seconds = Math.round((performance.now() - t0) / 100) / 10;
    if (r.ok) {
      return {
        profile,
        seconds,
        compiled: /^\s*Compiling /m.test(r.stderr),
        binary: join(targetDir, profile, 'tasker-conformance-worker'),
        note: releaseProblem ? `release build failed: ${releaseProblem}` : null,
      };
    }
    if (profile === 'release') releaseProblem = r.problem;
    else return { skipped: `cargo build --offline of sdks/rust failed (release: ${releaseProblem}; debug: ${r.problem})` };
  }
  throw new Error('unreachable');
}

/**
 * Checks that a language's runtime and client library are there (and builds the Rust worker),
 * and returns the command line of its conformance worker, run from `repo`.
 */
export async function prepareWorker(language: Language, repo: string, rustTargetDir: string, rustBuildTimeoutMs: number): Promise<PreparedWorker> {
  const probe = (cmd: string, args: string[]) => run(cmd, args, { cwd: repo, timeoutMs: 20_000 });
  switch (language) {
    case 'typescript':
      return {
        command: [process.execPath, '--import', TSX, 'packages/conformance/src/workers/typescript.ts'],
        env: {},
        runtime: `Node ${process.versions.node}`,
        build: null,
      };
    case 'python': {
      const r = await probe(PYTHON, ['-c', 'import sys, pika; print("Python", sys.version.split()[0] + ", pika", pika.__version__)']);
      if (!r.ok) return { skipped: `${r.problem} (needs Debian's python3-pika for ${PYTHON}; TASKER_PYTHON names another)`, build: null };
      return { command: [PYTHON, 'sdks/python/examples/conformance_worker.py'], env: {}, runtime: r.stdout.trim(), build: null };
    }
    case 'ruby': {
      const r = await probe(RUBY, ['-e', 'require "bunny"; print "Ruby #{RUBY_VERSION}, bunny #{Bunny::VERSION}"']);
      if (!r.ok) return { skipped: `${r.problem} (needs ruby and Debian's ruby-bunny; TASKER_RUBY names another ruby)`, build: null };
      return { command: [RUBY, 'sdks/ruby/examples/conformance_worker.rb'], env: {}, runtime: r.stdout.trim(), build: null };
    }
    case 'rust': {
      const build = await buildRustWorker(repo, rustTargetDir, rustBuildTimeoutMs);
      if ('skipped' in build) return { skipped: build.skipped, build: null };
      // The rustc beside the cargo that built it (rustup's or Debian's), else the one on PATH.
      let rustc = await probe(join(cargoPath() ?? '', '..', 'rustc'), ['--version']);
      if (!rustc.ok) rustc = await probe('rustc', ['--version']);
      return {
        command: [process.execPath, '--import', TSX, 'packages/worker/src/bin/exec-worker.ts', '--', build.binary],
        env: { TASKER_CONCURRENCY: String(WORKER_CONCURRENCY) },
        runtime: `${rustc.ok ? rustc.stdout.trim().split(' (')[0] : 'rustc'} ${build.profile} build; bridge on Node ${process.versions.node}`,
        build,
      };
    }
  }
}

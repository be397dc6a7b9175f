import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { run } from '../../packages/cli/src/index.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'packages/cli/src/bin.ts');
export const FIXTURES = join(ROOT, 'test/cli/fixtures');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment a spawned CLI sees: this one without API settings (tests pass them explicitly), no colors. */
function childEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', TASKER_LOG_LEVEL: 'warn' };
  for (const k of ['TASKER_API_URL', 'TASKER_API_TOKEN', 'TASKER_API_TOKENS', 'TASKER_API_TOKENS_FILE', 'TASKER_API_INSECURE']) delete base[k];
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

/** Spawns `node --import tsx packages/cli/src/bin.ts ...args`, as a user would run `tasker`. */
export function startCli(args: string[], env: Record<string, string | undefined> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs the CLI to its end and collects exit code, stdout and stderr. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = startCli(args, env);
    child.stdin!.end();
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tasker ${args.join(' ')} did not end within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running CLI process (orchestrator start, worker start) and its output so far. */
export class CliProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(args: string[], env: Record<string, string | undefined> = {}) {
    this.child = startCli(args, env);
    this.child.stdout!.on('data', (c: Buffer) => (this.stdout += c.toString()));
    this.child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  /** Waits until `check` finds something in the output; fails early when the process exits. */
  async waitFor<T>(check: (p: CliProcess) => T | undefined, timeoutMs = 20_000, what = 'output'): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const v = check(this);
      if (v !== undefined) return v;
      if (exited) throw new Error(`process exited before ${what}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Sends a signal and returns the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The one JSON document a `--json` run printed. */
export function json<T = any>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch (err) {
    throw new Error(`stdout is not one JSON document (${(err as Error).message}):\n${r.stdout}\nstderr: ${r.stderr}`);
  }
}

/**
 * Runs the CLI inside this process (the same `run` the bin calls), for checks that need no
 * server and no process of their own (usage errors, --help): a spawn costs about a second.
 */
export async function runHere(args: string[], env: NodeJS.ProcessEnv = {}, options: { tty?: boolean } = {}): Promise<CliResult & { code: number }> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        append(chunk.toString());
        cb();
      },
    });
  const out = Object.assign(sink((s) => (stdout += s)), { isTTY: options.tty ?? false });
  const code = await run(['node', 'tasker', ...args], { stdout: out, stderr: sink((s) => (stderr += s)), env });
  return { code, stdout, stderr };
}

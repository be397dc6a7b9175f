/**
 * Small process helpers of the chaos runner: a command with a time bound, a TCP probe, and
 * the runner's own log (every line on the terminal and in `runner.log` of the run's folder).
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { Socket } from 'node:net';

let runnerLog: string | null = null;
const t0 = Date.now();

/** From now on, every `say` line is also appended to this file. */
export function setRunnerLog(path: string): void {
  runnerLog = path;
}

/** One line on the terminal (prefixed with the seconds since start) and in the runner log. */
export function say(line: string): void {
  const text = `[chaos +${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${line}`;
  process.stdout.write(`${text}\n`);
  note(text);
}

/** A line in the runner log only. */
export function note(line: string): void {
  if (!runnerLog) return;
  try {
    appendFileSync(runnerLog, `${new Date().toISOString()} ${line}\n`);
  } catch {
    // the log is a convenience; never a reason to fail the run
  }
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command (no shell) and resolves with its exit code and output; kills it with
 * SIGKILL after `timeoutMs`. Throws when it exits non-zero, unless `allowFailure`.
 */
export function command(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; allowFailure?: boolean } = {},
): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const shown = [file, ...args].join(' ');
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: options.env ?? process.env,
      cwd: options.cwd ?? '/',
      // Never inherit the runner's stdin: a detached server would keep it.
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${shown}: ${err.message}`));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const took = Date.now() - started;
      note(`$ ${shown} -> ${timedOut ? `killed after ${timeoutMs} ms` : `exit ${code}`} in ${took} ms${
        stdout.trim() ? `\n  stdout: ${stdout.trim().split('\n').join('\n          ')}` : ''
      }${stderr.trim() ? `\n  stderr: ${stderr.trim().split('\n').join('\n          ')}` : ''}`);
      const result = { code: timedOut ? null : code, stdout, stderr };
      if (!options.allowFailure && (timedOut || code !== 0)) {
        const why = timedOut ? `did not finish within ${timeoutMs} ms` : `exited with ${code}`;
        reject(new Error(`${shown} ${why}: ${(stderr.trim() || stdout.trim()).split('\n').slice(-5).join(' | ')}`));
        return;
      }
      resolve(result);
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('error', () => done(false));
    s.connect(port, '127.0.0.1', () => done(true));
  });
}

/** Polls `check` every `everyMs` until it is true; false when `timeoutMs` passed first. */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      resolve();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

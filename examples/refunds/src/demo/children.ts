/**
 * The demo's child processes (the orchestrator and one worker per namespace): started with
 * tsx from the repository root (through child-main.ts, which stops them if the demo dies), their log lines copied whole to a file and shown on the
 * terminal in one short line each, prefixed with the child's name, and always stopped:
 * SIGTERM, then SIGKILL after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { cyan, dim, red, yellow } from './report.ts';

/** How long a child may take to stop after SIGTERM before it is killed. */
export const STOP_GRACE_MS = 10_000;
const CHILD_MAIN = fileURLToPath(new URL('../../../../scripts/child-main.ts', import.meta.url));
/** Lines kept per child, shown when it dies unexpectedly. */
const TAIL_LINES = 20;

const PINO_LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Fields worth showing on the one-line form of a pino record, in this order. */
const SHOWN_FIELDS = ['namespace', 'taskId', 'step', 'attempt', 'code', 'kind', 'url', 'signal'];

export interface ChildSpec {
  name: string;
  /** A TypeScript entrypoint, run as `node --import tsx child-main.ts <script>`. */
  script: string;
  env: NodeJS.ProcessEnv;
}

interface Running {
  spec: ChildSpec;
  proc: ChildProcess;
  tail: string[];
  exited: Promise<void>;
  done: boolean;
  stopping: boolean;
}

export type UnexpectedExit = (name: string, code: number | null, signal: NodeJS.Signals | null, tail: string[]) => void;

export class Children {
  private readonly running: Running[] = [];
  private readonly log: WriteStream;
  private readonly nameWidth: number;

  constructor(
    /** Where every child line goes, whole. */
    readonly logPath: string,
    private readonly cwd: string,
    names: string[],
    private readonly onUnexpectedExit: UnexpectedExit,
  ) {
    this.log = createWriteStream(logPath, { flags: 'a' });
    this.nameWidth = Math.max(...names.map((n) => n.length));
    // Last resort if the demo dies without running its cleanup (an uncaught error): no
    // child outlives it.
    process.once('exit', () => {
      for (const r of this.running) if (!r.done) r.proc.kill('SIGKILL');
    });
  }

  start(spec: ChildSpec): void {
    // One process per child (no npx or shell in between), so the signals reach it. Its
    // stdin stays an open pipe: see child-main.ts.
    const proc = spawn(process.execPath, ['--import', 'tsx', CHILD_MAIN, spec.script], {
      cwd: this.cwd,
      env: spec.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const r: Running = { spec, proc, tail: [], exited: Promise.resolve(), done: false, stopping: false };
    r.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        r.done = true;
        this.log.write(`[${spec.name}] exited (code ${code}, signal ${signal})\n`);
        if (!r.stopping) this.onUnexpectedExit(spec.name, code, signal, r.tail);
        resolve();
      });
      proc.once('error', (err) => {
        r.done = true;
        if (!r.stopping) this.onUnexpectedExit(spec.name, null, null, [...r.tail, `spawn failed: ${err.message}`]);
        resolve();
      });
    });
    for (const stream of [proc.stdout!, proc.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => this.onLine(r, line));
    }
    this.running.push(r);
  }

  private onLine(r: Running, line: string): void {
    this.log.write(`[${r.spec.name}] ${line}\n`);
    r.tail.push(line);
    if (r.tail.length > TAIL_LINES) r.tail.shift();
    process.stdout.write(`${cyan(`[${r.spec.name.padEnd(this.nameWidth)}]`)} ${shortForm(line)}\n`);
  }

  /** SIGTERM to every child still running, SIGKILL to those still there after the grace period. */
  async stopAll(graceMs = STOP_GRACE_MS): Promise<void> {
    const live = this.running.filter((r) => !r.done);
    for (const r of live) {
      r.stopping = true;
      r.proc.kill('SIGTERM');
    }
    await Promise.all(
      live.map(async (r) => {
        let timer: NodeJS.Timeout | undefined;
        const killed = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            process.stdout.write(`${yellow(`[${r.spec.name}]`)} did not stop within ${graceMs / 1000} s: SIGKILL\n`);
            r.proc.kill('SIGKILL');
            resolve();
          }, graceMs);
        });
        await Promise.race([r.exited, killed]);
        clearTimeout(timer);
        await r.exited;
      }),
    );
    await new Promise<void>((resolve) => this.log.end(resolve));
  }

  /** Kills every child at once (a second Ctrl-C). */
  killAll(): void {
    for (const r of this.running) {
      if (r.done) continue;
      r.stopping = true;
      r.proc.kill('SIGKILL');
    }
  }
}

/** A pino JSON line as `WARN message (key=value ...)`; anything else as it came. */
function shortForm(line: string): string {
  let rec: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (!parsed || typeof parsed !== 'object') return line;
    rec = parsed as Record<string, unknown>;
  } catch {
    return line;
  }
  const level = PINO_LEVELS[rec['level'] as number] ?? String(rec['level'] ?? '');
  const fields = SHOWN_FIELDS.filter((k) => rec[k] !== undefined).map((k) => `${k}=${String(rec[k])}`);
  const err = rec['err'] as { message?: unknown } | undefined;
  if (err && typeof err.message === 'string') fields.push(`err=${JSON.stringify(err.message)}`);
  const levelText = (rec['level'] as number) >= 50 ? red(level) : (rec['level'] as number) >= 40 ? yellow(level) : level;
  return `${levelText} ${String(rec['msg'] ?? '')}${fields.length > 0 ? dim(` (${fields.join(' ')})`) : ''}`;
}

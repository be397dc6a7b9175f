import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';

/** Lines kept from the worker's output, shown when a case fails. */
const TAIL_LINES = 40;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * The worker under test, started from its command in a process group of its own so the
 * kit can kill it and everything it started (the redelivery case), or signal only the
 * worker itself (the graceful shutdown case).
 */
export class WorkerProcess {
  private proc: ChildProcess | null = null;
  private exitPromise: Promise<Exit> = Promise.resolve({ code: null, signal: null });
  readonly tail: string[] = [];
  private readonly log: WriteStream | null;
  starts = 0;

  constructor(
    private readonly command: readonly string[],
    private readonly env: NodeJS.ProcessEnv,
    logPath: string | null,
    private readonly cwd: string = process.cwd(),
  ) {
    this.log = logPath ? createWriteStream(logPath, { flags: 'a' }) : null;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  start(): void {
    this.starts += 1;
    const [cmd, ...args] = this.command;
    const proc = spawn(cmd!, args, { env: this.env, cwd: this.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.proc = proc;
    const label = `[worker #${this.starts}]`;
    this.exitPromise = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.line(`${label} exited (code ${code}, signal ${signal})`);
        resolve({ code, signal });
      });
      proc.once('error', (err) => {
        this.line(`${label} could not start: ${err.message}`);
        resolve({ code: null, signal: null });
      });
    });
    for (const stream of [proc.stdout!, proc.stderr!]) {
      createInterface({ input: stream }).on('line', (l) => this.line(`${label} ${l}`));
    }
  }

  private line(l: string): void {
    this.log?.write(`${l}\n`);
    this.tail.push(l);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  exited(): Promise<Exit> {
    return this.exitPromise;
  }

  /** A signal to the worker process alone (its own handling decides what happens to its children). */
  signal(sig: NodeJS.Signals): void {
    if (this.running) this.proc!.kill(sig);
  }

  /** SIGKILL to the worker's whole process group: no cleanup anywhere. */
  async killGroup(): Promise<Exit> {
    if (this.proc?.pid && this.running) {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        this.proc.kill('SIGKILL');
      }
    }
    return this.exitPromise;
  }

  async closeLog(): Promise<void> {
    await new Promise<void>((resolve) => (this.log ? this.log.end(resolve) : resolve()));
  }
}

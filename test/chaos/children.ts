/**
 * The chaos run's child processes (orchestrators and workers): each one a `node --import tsx
 * child-main.ts <script>` process (no npx or shell in between, so SIGKILL reaches the real
 * process), its output appended whole to `<name>.log` in the run's folder (across restarts,
 * each start marked), and its life tied to the runner's through its stdin (child-main.ts).
 *
 * The runner kills children on purpose (`kill`), and restarts them; a child that exits on
 * its own is an unexpected exit: counted, reported with the end of its log, and restarted
 * after a pause so the run can still measure everything else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { say, sleep } from './exec.ts';

const CHILD_MAIN = fileURLToPath(new URL('../../scripts/child-main.ts', import.meta.url));
/** Lines kept per child, shown when it exits unexpectedly. */
const TAIL_LINES = 30;

export interface ChildSpec {
  name: string;
  /** A TypeScript entrypoint. */
  script: string;
  env: NodeJS.ProcessEnv;
}

export interface UnexpectedExit {
  name: string;
  pid: number | undefined;
  at: number;
  at_iso: string;
  code: number | null;
  signal: string | null;
  tail: string[];
}

export class Child {
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private log: WriteStream;
  private tail: string[] = [];
  /** Set while the runner itself stops or kills the process: its exit is expected. */
  private expectingExit = false;
  private lineWaiters: Array<{ test: (line: string) => boolean; resolve: () => void }> = [];
  starts = 0;
  /** Pids of every start, in order. */
  readonly pids: number[] = [];

  constructor(
    readonly spec: ChildSpec,
    private readonly cwd: string,
    outDir: string,
    private readonly onUnexpectedExit: (e: UnexpectedExit) => void,
  ) {
    this.log = createWriteStream(join(outDir, `${spec.name}.log`), { flags: 'a' });
  }

  get name(): string {
    return this.spec.name;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  start(): void {
    if (this.proc) throw new Error(`${this.name} is already running`);
    this.starts += 1;
    this.expectingExit = false;
    const proc = spawn(process.execPath, ['--import', 'tsx', CHILD_MAIN, this.spec.script], {
      cwd: this.cwd,
      env: this.spec.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.proc = proc;
    if (proc.pid) this.pids.push(proc.pid);
    this.log.write(`=== [${this.name}] start #${this.starts} pid ${proc.pid} at ${new Date().toISOString()}\n`);
    this.exited = new Promise((resolve) => {
      let done = false;
      const finish = (code: number | null, signal: string | null, extra?: string): void => {
        if (done) return;
        done = true;
        this.proc = null;
        this.log.write(`=== [${this.name}] pid ${proc.pid} exited (code ${code}, signal ${signal}) at ${new Date().toISOString()}\n`);
        if (!this.expectingExit) {
          this.onUnexpectedExit({
            name: this.name,
            pid: proc.pid,
            at: Date.now(),
            at_iso: new Date().toISOString(),
            code,
            signal,
            tail: extra ? [...this.tail, extra] : [...this.tail],
          });
        }
        resolve();
      };
      // 'close', not 'exit': the output is read to its end first, so the log stays in order.
      proc.once('close', (code, signal) => finish(code, signal));
      proc.once('error', (err) => finish(null, null, `spawn failed: ${err.message}`));
    });
    for (const stream of [proc.stdout!, proc.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => this.onLine(line));
    }
    // Writing to the stdin of a process that died must not crash the runner.
    proc.stdin?.on('error', () => undefined);
  }

  private onLine(line: string): void {
    this.log.write(`${line}\n`);
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    for (const w of [...this.lineWaiters]) {
      if (w.test(line)) {
        this.lineWaiters.splice(this.lineWaiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }

  /** Resolves true when a line of this child's output passes `test`; false after `timeoutMs`. */
  waitForLine(test: (line: string) => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const waiter = { test, resolve: () => resolve(true) };
      this.lineWaiters.push(waiter);
      setTimeout(() => {
        const i = this.lineWaiters.indexOf(waiter);
        if (i >= 0) {
          this.lineWaiters.splice(i, 1);
          resolve(false);
        }
      }, timeoutMs).unref();
    });
  }

  /** Sends SIGKILL and waits for the exit. */
  async kill(): Promise<void> {
    if (!this.proc) return;
    this.expectingExit = true;
    this.log.write(`=== [${this.name}] SIGKILL from the chaos runner at ${new Date().toISOString()}\n`);
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (!this.proc) return;
    this.expectingExit = true;
    const proc = this.proc;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      say(`${this.name} did not stop within ${graceMs} ms of SIGTERM: SIGKILL`);
      proc.kill('SIGKILL');
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** At once, without waiting (last resort). */
  killNow(): void {
    if (!this.proc) return;
    this.expectingExit = true;
    this.proc.kill('SIGKILL');
  }

  async closeLog(): Promise<void> {
    await new Promise<void>((resolve) => this.log.end(resolve));
  }
}

/** Every child of the run; makes sure none outlives the runner. */
export class Children {
  readonly all: Child[] = [];
  readonly unexpectedExits: UnexpectedExit[] = [];
  /** Off during set-up (a child that cannot start fails the set-up), on during the run. */
  private restarting = false;

  constructor(
    private readonly cwd: string,
    private readonly outDir: string,
    /**
     * Awaited before a child that exited by itself is restarted: waits for the services,
     * so that the restart is not refused merely because PostgreSQL is still recovering
     * (which a supervisor would retry too) and counted as a second exit.
     */
    private readonly beforeRestart: () => Promise<void> = async () => undefined,
  ) {
    // Last resort if the runner dies without its cleanup (an uncaught error).
    process.once('exit', () => {
      for (const c of this.all) c.killNow();
    });
  }

  add(spec: ChildSpec): Child {
    const child = new Child(spec, this.cwd, this.outDir, (e) => this.onUnexpectedExit(child, e));
    this.all.push(child);
    return child;
  }

  private onUnexpectedExit(child: Child, e: UnexpectedExit): void {
    this.unexpectedExits.push(e);
    say(`UNEXPECTED: ${e.name} (pid ${e.pid}) exited by itself (code ${e.code}, signal ${e.signal}); last lines:`);
    for (const l of e.tail.slice(-5)) say(`    ${l.slice(0, 300)}`);
    if (!this.restarting) return;
    // Restart it after a pause so the rest of the run is still measured.
    void sleep(2000)
      .then(() => this.beforeRestart())
      .then(() => {
        if (this.restarting && !child.running) {
          say(`restarting ${child.name} after its unexpected exit`);
          child.start();
        }
      });
  }

  /** From now on, a child that exits by itself is restarted after a pause. */
  startRestarting(): void {
    this.restarting = true;
  }

  /** From now on, children that exit are not restarted (the run is ending). */
  stopRestarting(): void {
    this.restarting = false;
  }

  async stopAll(graceMs: number): Promise<void> {
    this.stopRestarting();
    await Promise.all(this.all.map((c) => c.stop(graceMs)));
    await Promise.all(this.all.map((c) => c.closeLog()));
  }

  killAll(): void {
    this.stopRestarting();
    for (const c of this.all) c.killNow();
  }
}

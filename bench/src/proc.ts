import { fork, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Folder of the child entry points (`bench/src/children`). */
export const CHILDREN_DIR = join(dirname(fileURLToPath(import.meta.url)), 'children');
/** tsx's loader, resolved from this package so children start from any cwd. */
const TSX = import.meta.resolve('tsx');

/** A message a child sends over IPC. `ready` once it serves; `progress` with counters; `reply` to a request. */
export interface ChildMessage {
  type: string;
  id?: number;
  [key: string]: unknown;
}

export interface SpawnOptions {
  /** Environment added to the bench's own. */
  env?: Record<string, string>;
  /** Where the child's stdout and stderr go (appended). */
  logFile: string;
  /** `--cpu-prof` into this folder (written when the child exits normally). */
  cpuProfDir?: string | null;
  /** How long to wait for `ready`. @defaultValue 60000 */
  readyTimeoutMs?: number;
}

/**
 * A benchmark child process (an orchestrator, a worker, a peer's worker, a broker relay),
 * started with tsx (or from a bundle) and talking over IPC. Its peak memory is read from /proc while it lives.
 */
export class Child {
  readonly proc: ChildProcess;
  readonly ready: Promise<ChildMessage>;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (m: ChildMessage) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Set<(m: ChildMessage) => void>();
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined = undefined;

  constructor(
    readonly name: string,
    script: string,
    private readonly options: SpawnOptions,
  ) {
    mkdirSync(dirname(options.logFile), { recursive: true });
    const log = createWriteStream(options.logFile, { flags: 'a' });
    // A bundle (`.mjs`, see scripts/bundle.ts) is plain JavaScript; sources run under tsx.
    const execArgv = script.endsWith('.mjs') ? [] : ['--import', TSX];
    if (options.cpuProfDir) {
      // A folder per child: Node writes one profile per thread (tsx's loader hooks run in
      // a thread of their own), named CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile.
      const dir = join(options.cpuProfDir, name);
      mkdirSync(dir, { recursive: true });
      execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
    }
    this.proc = fork(isAbsolute(script) ? script : join(CHILDREN_DIR, script), [], {
      execArgv,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.proc.stdout!.pipe(log, { end: false });
    this.proc.stderr!.pipe(log, { end: false });
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code) => {
        this.exitCode = code;
        for (const w of this.waiting.values()) w.reject(new Error(`${name} exited (code ${code})`));
        this.waiting.clear();
        setTimeout(() => log.end(), 50);
        resolve(code);
      });
    });
    this.proc.on('message', (raw) => {
      const m = raw as ChildMessage;
      if (m.type === 'reply' && typeof m.id === 'number') {
        const w = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (m.error) w?.reject(new Error(`${name}: ${String(m.error)}`));
        else w?.resolve(m);
        return;
      }
      for (const l of this.listeners) l(m);
    });
    const timeoutMs = options.readyTimeoutMs ?? 60_000;
    this.ready = new Promise<ChildMessage>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready within ${timeoutMs} ms; see ${options.logFile}`)), timeoutMs);
      const onMessage = (m: ChildMessage) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          this.listeners.delete(onMessage);
          resolve(m);
        } else if (m.type === 'fatal') {
          clearTimeout(timer);
          reject(new Error(`${name} failed to start: ${String(m.error)}; see ${options.logFile}`));
        }
      };
      this.listeners.add(onMessage);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (code ${code}) before it was ready; see ${options.logFile}`));
      });
    });
    this.ready.catch(() => undefined);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  on(listener: (m: ChildMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sends a request and waits for the child's `reply` with the same id. */
  request(type: string, payload: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<ChildMessage> {
    if (!this.alive) return Promise.reject(new Error(`${this.name} is not running`));
    const id = this.nextId++;
    return new Promise<ChildMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.name}: no reply to '${type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.proc.send({ ...payload, type, id });
    });
  }

  send(message: Record<string, unknown>): void {
    if (this.alive) this.proc.send(message);
  }

  /** Peak resident memory (VmHWM) in MB, read from /proc while the child lives; null once it has exited. */
  peakMemoryMb(): number | null {
    return readVmHwmMb(this.pid);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves with the exit code. */
  async stop(graceMs = 15_000): Promise<number | null> {
    if (!this.alive) return this.exitCode ?? null;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (this.alive) this.proc.kill('SIGKILL');
    }, graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** VmHWM (peak resident set) of a process in MB, or null when it is gone. */
export function readVmHwmMb(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(status);
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

/** Every child started by this process, so an interrupted run can stop them all. */
export const allChildren = new Set<Child>();

export function spawnChild(name: string, script: string, options: SpawnOptions): Child {
  const c = new Child(name, script, options);
  allChildren.add(c);
  void c.ready.catch(() => undefined);
  c.proc.once('exit', () => allChildren.delete(c));
  return c;
}

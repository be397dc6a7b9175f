/**
 * The faults of a chaos run: a plan (which fault, when), drawn from a seed so a run can be
 * replayed with `--seed`, and its execution, one fault at a time:
 * - orchestrator_kill: SIGKILL one orchestrator, pause, start it again (same port);
 * - worker_kill: SIGKILL one worker, pause, start it again;
 * - rabbitmq_restart / postgres_restart: stop the service, pause, start it again.
 * Whatever fails in a fault, the services are brought back up before the next one.
 */
import type { Child } from './children.ts';
import { say, sleep, waitUntil } from './exec.ts';
import type { Services } from './services.ts';

export type FaultKind = 'orchestrator_kill' | 'worker_kill' | 'rabbitmq_restart' | 'postgres_restart';

export interface Fault {
  kind: FaultKind;
  /** Planned moment, in ms after the load started. */
  plannedAtMs: number;
  /** What was hit: a child's name, or the service. */
  target: string;
  /** Pid that got SIGKILL (kills only). */
  pid?: number;
  pauseMs: number;
  /** When the fault was inflicted (epoch ms). */
  at: number;
  /** When the killed process or the service was back (started, answering), epoch ms. */
  backAt: number | null;
  /** Tasks in progress just before the fault: it hit live work. */
  tasksInProgress: number | null;
  error?: string;
}

/** Small seeded PRNG (mulberry32), so the plan of a run can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface PlanOptions {
  orchestratorKills: number;
  workerKills: number;
  rabbitmqRestarts: number;
  postgresRestarts: number;
  /** Faults happen in [fromMs, toMs] after the load started. */
  fromMs: number;
  toMs: number;
}

/**
 * The faults in a random order, each at a random moment of its own slot of the window
 * (so they are spread over the load, never all at once).
 */
export function planFaults(o: PlanOptions, random: () => number): Array<{ kind: FaultKind; plannedAtMs: number }> {
  const kinds: FaultKind[] = [
    ...Array<FaultKind>(o.orchestratorKills).fill('orchestrator_kill'),
    ...Array<FaultKind>(o.workerKills).fill('worker_kill'),
    ...Array<FaultKind>(o.rabbitmqRestarts).fill('rabbitmq_restart'),
    ...Array<FaultKind>(o.postgresRestarts).fill('postgres_restart'),
  ];
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }
  const slot = (o.toMs - o.fromMs) / Math.max(1, kinds.length);
  return kinds.map((kind, k) => ({ kind, plannedAtMs: Math.round(o.fromMs + slot * (k + 0.15 + 0.7 * random())) }));
}

export interface ChaosDeps {
  orchestrators: Child[];
  workers: Child[];
  services: Services;
  /** Resolves when the orchestrator answers its HTTP health check. */
  orchestratorUp: (c: Child) => Promise<boolean>;
  /** Tasks in progress now (null if the database does not answer). */
  tasksInProgress: () => Promise<number | null>;
  random: () => number;
  signal: AbortSignal;
}

const between = (random: () => number, lo: number, hi: number): number => Math.round(lo + random() * (hi - lo));

/**
 * Runs the plan; every fault is pushed to `done` as it starts (so a report written at any
 * moment has them). `loadStartedAt` is the plan's origin.
 */
export async function runFaults(
  plan: Array<{ kind: FaultKind; plannedAtMs: number }>,
  loadStartedAt: number,
  d: ChaosDeps,
  done: Fault[],
): Promise<Fault[]> {
  for (const p of plan) {
    const wait = loadStartedAt + p.plannedAtMs - Date.now();
    if (wait > 0) await sleep(wait, d.signal);
    if (d.signal.aborted) break;
    const tasksInProgress = await d.tasksInProgress();
    const f: Fault = { kind: p.kind, plannedAtMs: p.plannedAtMs, target: '', pauseMs: 0, at: Date.now(), backAt: null, tasksInProgress };
    done.push(f);
    try {
      await inflict(f, d);
    } catch (err) {
      f.error = (err as Error).message;
      say(`fault ${f.kind} on ${f.target} failed: ${f.error}; bringing everything back up`);
      await d.services.ensureUp().catch((e: Error) => say(`could not bring the services back up: ${e.message}`));
      for (const c of [...d.orchestrators, ...d.workers]) if (!c.running) c.start();
    }
  }
  return done;
}

async function inflict(f: Fault, d: ChaosDeps): Promise<void> {
  switch (f.kind) {
    case 'orchestrator_kill': {
      const c = pickRunning(d.orchestrators, d.random);
      f.target = c.name;
      f.pid = c.pid;
      f.pauseMs = between(d.random, 500, 3000);
      f.at = Date.now();
      await c.kill();
      say(`SIGKILL ${c.name} (pid ${f.pid}); back in ${f.pauseMs} ms`);
      await sleep(f.pauseMs);
      c.start();
      if (!(await d.orchestratorUp(c))) throw new Error(`${c.name} did not answer /health/live within 60 s of its restart`);
      f.backAt = Date.now();
      say(`${c.name} is back (pid ${c.pid}) after ${f.backAt - f.at} ms`);
      return;
    }
    case 'worker_kill': {
      const c = pickRunning(d.workers, d.random);
      f.target = c.name;
      f.pid = c.pid;
      f.pauseMs = between(d.random, 300, 2000);
      f.at = Date.now();
      await c.kill();
      say(`SIGKILL ${c.name} (pid ${f.pid}); back in ${f.pauseMs} ms`);
      await sleep(f.pauseMs);
      const consuming = c.waitForLine((l) => l.includes('worker consuming'), 60_000);
      c.start();
      if (!(await consuming)) throw new Error(`${c.name} did not consume within 60 s of its restart`);
      f.backAt = Date.now();
      say(`${c.name} is back (pid ${c.pid}) after ${f.backAt - f.at} ms`);
      return;
    }
    case 'rabbitmq_restart': {
      f.target = 'rabbitmq';
      f.pauseMs = between(d.random, 1000, 3000);
      say(`restarting RabbitMQ (down for ${f.pauseMs} ms + stop and boot time)`);
      const o = await d.services.restartRabbitmq(f.pauseMs);
      f.at = o.downAt;
      f.backAt = o.upAt;
      say(`RabbitMQ is back after ${f.backAt - f.at} ms`);
      return;
    }
    case 'postgres_restart': {
      f.target = 'postgres';
      f.pauseMs = between(d.random, 1000, 3000);
      say(`restarting PostgreSQL (stop -m immediate, down for ${f.pauseMs} ms)`);
      const o = await d.services.restartPostgres(f.pauseMs);
      f.at = o.downAt;
      f.backAt = o.upAt;
      say(`PostgreSQL is back after ${f.backAt - f.at} ms`);
      return;
    }
  }
}

function pickRunning(children: Child[], random: () => number): Child {
  const running = children.filter((c) => c.running);
  const pool = running.length > 0 ? running : children;
  return pool[Math.floor(random() * pool.length)]!;
}

/** Resolves true once `GET <url>/health/live` answers 200, false after `timeoutMs`. */
export function httpUp(url: string, timeoutMs: number): Promise<boolean> {
  return waitUntil(async () => {
    const r = await fetch(`${url}/health/live`, { signal: AbortSignal.timeout(1000) });
    return r.ok;
  }, timeoutMs, 250);
}

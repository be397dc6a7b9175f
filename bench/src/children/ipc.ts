// The child side of the bench's IPC: ready, requests with replies, progress, and a
// shutdown that always ends in process.exit (so --cpu-prof writes its profile).

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

type Handler = (message: Record<string, unknown>) => unknown;
const handlers = new Map<string, Handler>();
let stopping = false;
let stopFn: () => Promise<void> = async () => undefined;

function send(message: Record<string, unknown>): void {
  if (process.connected) process.send!(message);
}

process.on('message', (raw) => {
  const m = raw as Record<string, unknown> & { type: string; id?: number };
  const h = handlers.get(m.type);
  if (!h) {
    if (m.id !== undefined) send({ type: 'reply', id: m.id, error: `no handler for '${m.type}'` });
    return;
  }
  Promise.resolve()
    .then(() => h(m))
    .then(
      (data) => m.id !== undefined && send({ type: 'reply', id: m.id, data: data ?? null }),
      (err: Error) => m.id !== undefined && send({ type: 'reply', id: m.id, error: err?.message ?? String(err) }),
    );
});

export function onRequest(type: string, handler: Handler): void {
  handlers.set(type, handler);
}

export function ready(data: Record<string, unknown> = {}): void {
  send({ type: 'ready', pid: process.pid, ...data });
}

export function progress(data: Record<string, unknown>): void {
  send({ type: 'progress', ...data });
}

export function fatal(err: unknown): never {
  const message = err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err);
  process.stderr.write(`fatal: ${message}\n`);
  send({ type: 'fatal', error: err instanceof Error ? err.message : String(err) });
  setTimeout(() => process.exit(1), 100);
  throw err;
}

/** What to do on SIGTERM, on a `stop` request, or when the bench goes away. Exits 0 afterwards. */
export function onStop(fn: () => Promise<void>): void {
  stopFn = fn;
}

async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(2), 10_000);
  hard.unref();
  try {
    await stopFn();
  } catch (err) {
    process.stderr.write(`stop failed: ${(err as Error).message}\n`);
  }
  process.exit(0);
}

process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
process.on('disconnect', () => void shutdown());
// --profile-window: V8's sampling profiler over a window the bench chooses (the measured runs
// after a warm-up), where --cpu-prof covers the process's whole life.
let profiler: Session | null = null;
onRequest('profile-start', async () => {
  if (profiler) throw new Error('a profile is already being taken');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  profiler = session;
  return null;
});
onRequest('profile-stop', async (m) => {
  const session = profiler;
  if (!session) throw new Error('no profile is being taken');
  profiler = null;
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  writeFileSync(String(m.file), JSON.stringify(profile));
  return { file: m.file };
});

onRequest('stop', () => {
  setImmediate(() => void shutdown());
  return null;
});

/** The clock the handlers stamp their results with (util.ts). */
export { nowMs } from '../util.ts';

/** Calls `flush` at most once per turn of the event loop after `mark()`. */
export function coalesce(flush: () => void): () => void {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flush();
    });
  };
}

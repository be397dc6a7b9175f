import { Socket } from 'node:net';

/** Connection URLs for tests: the environment, or the local services' defaults. */
export const DATABASE_URL = () => process.env.TASKER_DATABASE_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/tasker';
export const AMQP_URL = () => process.env.TASKER_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Whether something accepts TCP connections at the URL's host and port. */
export function reachable(url: string, defaultPort: number, timeoutMs = 1500): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('error', () => done(false));
    s.connect(Number(u.port || defaultPort), u.hostname, () => done(true));
  });
}

/** A random lower-case suffix for schema, prefix and queue names. */
export function uniqueSuffix(): string {
  return Math.random().toString(36).slice(2, 10).replace(/[^a-z0-9]/g, 'x');
}

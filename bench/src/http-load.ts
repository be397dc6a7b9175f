import { Pool } from 'undici';

/**
 * A small keep-alive HTTP client for the load: one undici pool of `maxSockets` connections
 * per origin. The bench shares the machine's two cores with what it measures, so its client
 * should cost as little CPU a request as it can: undici's pool costs less than node:http's
 * agent, which costs less than fetch.
 */
export class HttpLoad {
  private readonly pools = new Map<string, Pool>();
  /** Each URL's pool and path, parsed once. */
  private readonly targets = new Map<string, { pool: Pool; path: string }>();
  private readonly headers: Record<string, string>;

  constructor(
    private readonly maxSockets: number,
    token: string | null = null,
  ) {
    this.headers = { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  }

  /** POSTs a JSON body; resolves with the status and the body text. */
  async post(url: string, body: string, timeoutMs = 30_000): Promise<{ status: number; text: string }> {
    const { pool, path } = this.target(url);
    const res = await pool.request({
      method: 'POST',
      path,
      headers: this.headers,
      body,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    return { status: res.statusCode, text: await res.body.text() };
  }

  private target(url: string): { pool: Pool; path: string } {
    let t = this.targets.get(url);
    if (!t) {
      const u = new URL(url);
      let pool = this.pools.get(u.origin);
      if (!pool) {
        pool = new Pool(u.origin, { connections: this.maxSockets, pipelining: 1 });
        this.pools.set(u.origin, pool);
      }
      t = { pool, path: u.pathname + u.search };
      this.targets.set(url, t);
    }
    return t;
  }

  close(): void {
    for (const pool of this.pools.values()) void pool.close();
    this.pools.clear();
    this.targets.clear();
  }
}

/** One benchmark task as `POST /v1/tasks` takes it (and each of `POST /v1/tasks/batch`'s `tasks`). */
export function taskInput(namespace: string, name: string, i: number): { namespace: string; name: string; context: { i: number } } {
  return { namespace, name, context: { i } };
}

/** The body of POST /v1/tasks for one benchmark task. */
export function taskBody(namespace: string, name: string, i: number): string {
  return JSON.stringify(taskInput(namespace, name, i));
}

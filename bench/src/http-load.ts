import http from 'node:http';

/**
 * A small keep-alive HTTP client for the load: node:http with a bounded socket pool costs
 * the bench process less CPU than fetch, and the bench shares the machine's two cores
 * with what it measures.
 */
export class HttpLoad {
  private readonly agent: http.Agent;

  constructor(
    maxSockets: number,
    private readonly token: string | null = null,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  }

  /** POSTs a JSON body; resolves with the status and the body text. */
  post(url: string, body: string, timeoutMs = 30_000): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        url,
        {
          method: 'POST',
          agent: this.agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`POST ${url}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
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

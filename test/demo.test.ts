/**
 * The README's first command, run as a user would: `examples/refunds/src/demo.ts` starts an
 * orchestrator and two workers against the REAL local PostgreSQL and RabbitMQ
 * (TASKER_DATABASE_URL, TASKER_AMQP_URL or their defaults), runs the refund scenario and
 * prints a checklist. Isolated by a schema, a queue prefix and a port of its own, all
 * removed afterwards (the schema is kept with TEST_KEEP_SCHEMA=1).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { AMQP_URL, DATABASE_URL, uniqueSuffix } from './support/services.ts';
import { dropSchema, dropTopology } from './support/stack.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
/** One per expected outcome, as the demo prints them: `PASS (a1) ...`. */
const EXPECTED_CHECKS = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'b1', 'c1', 'd1', 'd2', 'e1', 'e2'];

const suffix = uniqueSuffix();
const schema = `demo_${suffix}`;
const prefix = `demo${suffix}`;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

let demo: ChildProcess | null = null;
let demoExited: Promise<number | null> = Promise.resolve(null);

function runDemo(port: number): Promise<{ code: number | null; output: string }> {
  let output = '';
  const proc = spawn(process.execPath, ['--import', 'tsx', 'examples/refunds/src/demo.ts'], {
    cwd: REPO,
    env: {
      ...process.env,
      // As the global setup resolved them (a container where no local service runs).
      TASKER_DATABASE_URL: DATABASE_URL(),
      TASKER_AMQP_URL: AMQP_URL(),
      TASKER_DB_SCHEMA: schema,
      TASKER_AMQP_PREFIX: prefix,
      TASKER_HTTP_PORT: String(port),
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  demo = proc;
  proc.stdout!.on('data', (b: Buffer) => (output += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (output += b.toString()));
  demoExited = new Promise((resolve) => proc.once('close', (code) => resolve(code)));
  return demoExited.then((code) => ({ code, output }));
}

describe('the refunds demo', () => {
  afterAll(async () => {
    // A demo still running (the test timed out) is asked to stop its children first, so
    // nothing re-declares the queues after they are deleted.
    if (demo && demo.exitCode === null && demo.signalCode === null) {
      demo.kill('SIGTERM');
      const timer = setTimeout(() => demo?.kill('SIGKILL'), 15_000);
      await demoExited;
      clearTimeout(timer);
    }
    await dropTopology(AMQP_URL(), prefix, ['customer_success', 'payments']);
    if (process.env['TEST_KEEP_SCHEMA'] !== '1') {
      await dropSchema(DATABASE_URL(), schema).catch((err: { code?: string }) => {
        // 3D000: the demo stopped before creating its database; there is no schema to drop.
        if (err.code !== '3D000') throw err;
      });
    }
  }, 60_000);

  it('exits 0 with every expected outcome PASS against the real Postgres and RabbitMQ', async () => {
    const { code, output } = await runDemo(await freePort());
    for (const id of EXPECTED_CHECKS) expect(output, output).toContain(`PASS (${id})`);
    expect(output, output).not.toContain('FAIL');
    expect(output).toContain(`${EXPECTED_CHECKS.length}/${EXPECTED_CHECKS.length} checks passed`);
    expect(code, output).toBe(0);
  }, 120_000);
});

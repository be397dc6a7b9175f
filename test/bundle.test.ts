import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundle } from '../scripts/bundle.ts';
import { AMQP_URL, DATABASE_URL, uniqueSuffix } from './support/services.ts';
import { dropSchema, dropTopology, eventually } from './support/stack.ts';

// The production form of the orchestrator (`pnpm build`): one ES module that runs on plain
// Node, with no TypeScript loader and no node_modules beside it.
describe('orchestrator bundle', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tasker-bundle-'));
  const suffix = uniqueSuffix();
  const schema = `bundle_${suffix}`;
  const prefix = `bundle${suffix}`;
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await dropSchema(DATABASE_URL(), schema);
    await dropTopology(AMQP_URL(), prefix, ['customer_success', 'payments']);
  });

  it('builds into a folder of its own and serves from there: migrated, connected, ready', async () => {
    const out = join(dir, 'orchestrator.mjs');
    await bundle(new URL('../packages/orchestrator/src/bin/orchestrator.ts', import.meta.url).pathname, out);
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const child = spawn(process.execPath, [out], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        TASKER_DATABASE_URL: DATABASE_URL(),
        TASKER_AMQP_URL: AMQP_URL(),
        TASKER_DB_SCHEMA: schema,
        TASKER_AMQP_PREFIX: prefix,
        TASKER_HTTP_PORT: String(port),
        TASKER_API_INSECURE: 'true',
        TASKER_TEMPLATES_DIR: new URL('../templates', import.meta.url).pathname,
        TASKER_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    try {
      const ready = await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`the bundle exited (${child.exitCode}):\n${output}`);
          const r = await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => null);
          return r?.ok ? ((await r.json()) as { checks: Record<string, string> }) : undefined;
        },
        30_000,
        'the bundled orchestrator to be ready',
      );
      expect(ready.checks).toEqual({ postgres: 'ok', rabbitmq: 'ok' });
      const templates = (await (await fetch(`http://127.0.0.1:${port}/v1/templates`)).json()) as { items: unknown[] };
      expect(templates.items.length).toBeGreaterThan(0);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    expect(child.exitCode ?? child.signalCode).toBe(0);
  });
});

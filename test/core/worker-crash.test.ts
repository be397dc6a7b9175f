import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startStack, eventually, taskWhen, type Stack } from '../support/stack.ts';

const here = dirname(fileURLToPath(import.meta.url));
const TEMPLATE = `
name: slow_job
namespace_name: crash_ns
version: 1.0.0
steps:
  - { name: work, handler: { callable: slow }, retry: { max_attempts: 2 } }
`;

describe('a worker killed in the middle of a step', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
    await stack.register(TEMPLATE);
  });
  afterAll(async () => {
    await stack?.cleanup();
  });

  it('the step runs again on another worker within seconds, as the same attempt, and the audit counts the delivery', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, '..', 'support', 'crash-worker.ts')], {
      env: { ...process.env, TASKER_AMQP_URL: stack.amqpUrl, TASKER_AMQP_PREFIX: stack.prefix, TASKER_NAMESPACE: 'crash_ns' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    try {
      await eventually(async () => (out.includes('ready') ? true : undefined), 20000, 'the crash worker to start');
      const [created] = await stack.orchestrator.createTasks([{ namespace: 'crash_ns', name: 'slow_job', context: {} }]);
      if (!created!.ok) throw created!.error;
      await eventually(async () => (out.includes('started') ? true : undefined), 10000, 'the step to start');
      const runs: number[] = [];
      await stack.worker({ namespace: 'crash_ns', handlers: { slow: (ctx) => (runs.push(ctx.attempt), { by: 'survivor' }) } });
      const killedAt = Date.now();
      child.kill('SIGKILL');
      const task = await taskWhen(stack.orchestrator, created!.task.id, 'complete', 10000);
      expect(Date.now() - killedAt).toBeLessThan(5000);
      expect(runs).toEqual([1]);
      expect(task.steps[0]).toMatchObject({ state: 'complete', attempt: 1, result: { by: 'survivor' } });
      const { rows } = await sql<{ reason: string }>`
        SELECT reason FROM transitions WHERE step_id = ${task.steps[0]!.id} AND to_state = 'complete'`.execute(stack.orchestrator.db);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.reason).toMatch(/delivery 2 of attempt 1/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

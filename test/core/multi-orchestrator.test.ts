import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import type { Orchestrator } from '@tasker/orchestrator';
import { startStack, eventually, type Stack } from '../support/stack.ts';
import { startRecordingWorker, type Execution } from '../support/recording-worker.ts';

const DIAMOND = `
name: diamond
namespace_name: multi
version: 1.0.0
steps:
  - { name: a, handler: { callable: a } }
  - { name: b, handler: { callable: b }, dependencies: [a] }
  - { name: c, handler: { callable: c }, dependencies: [a] }
  - { name: d, handler: { callable: d }, dependencies: [b, c] }
`;

describe('several orchestrators on the same database and queues', () => {
  let stack: Stack;
  let second: Orchestrator;
  const executions: Execution[] = [];
  beforeAll(async () => {
    stack = await startStack({ batchSize: 20 });
    const templates = await stack.register(DIAMOND);
    second = await stack.another({ batchSize: 20 });
    await startRecordingWorker(stack, 'multi', templates, executions, { concurrency: 50, maxPauseMs: 2 });
  });
  afterAll(async () => {
    await stack?.cleanup();
  });

  it('share the work without double transitions: every step completes exactly once', async () => {
    const half = Array.from({ length: 100 }, () => ({ namespace: 'multi', name: 'diamond', context: {} }));
    const [x, y] = await Promise.all([stack.orchestrator.createTasks(half), second.createTasks(half)]);
    const ids = [...x, ...y].map((o) => (o.ok ? o.task.id : 'refused'));
    expect(ids).not.toContain('refused');
    const db = stack.orchestrator.db;
    await eventually(async () => {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM tasks WHERE state = 'complete'`.execute(db);
      return rows[0]!.n === 200 ? true : undefined;
    }, 30000, '200 tasks complete');
    const { rows: dup } = await sql<{ step_id: string; n: number }>`
      SELECT step_id, count(*)::int AS n FROM transitions WHERE to_state = 'complete' AND step_id IS NOT NULL
      GROUP BY step_id HAVING count(*) <> 1`.execute(db);
    expect(dup).toEqual([]);
    const { rows: steps } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM steps WHERE state = 'complete'`.execute(db);
    expect(steps[0]!.n).toBe(800);
    const { rows: taskDone } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM transitions WHERE step_id IS NULL AND to_state = 'complete'`.execute(db);
    expect(taskDone[0]!.n).toBe(200);
  });

  it("each turns its task cache off while the other consumes the same results, and on again once alone", async () => {
    // Copies the other orchestrator's writes make stale would cost more round trips than
    // they save; each asks the broker how many consume the results queue.
    for (const o of [stack.orchestrator, second]) {
      await eventually(async () => (o.taskCache!.shared ? true : undefined), 5000, 'cache off while shared');
      expect(o.taskCache!.size).toBe(0);
    }
    await second.stop();
    await eventually(async () => (stack.orchestrator.taskCache!.shared ? undefined : true), 5000, 'cache on again once alone');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompiledTemplate } from '@tasker/protocol';
import type { Worker } from '@tasker/worker';
import { startStack, taskWhen, finished, type Stack } from '../support/stack.ts';
import { startRecordingWorker, type Execution } from '../support/recording-worker.ts';

const step = (name: string, deps: string[] = []) =>
  `  - { name: ${name}, handler: { callable: ${name} }, dependencies: [${deps.join(', ')}] }\n`;
const template = (name: string, steps: string) => `name: ${name}\nnamespace_name: shapes\nversion: 1.0.0\nsteps:\n${steps}`;

const FAN = Array.from({ length: 20 }, (_, i) => `fan_${i}`);
const TEMPLATES = [
  template('linear', step('l1') + step('l2', ['l1']) + step('l3', ['l2']) + step('l4', ['l3'])),
  template('diamond', step('a') + step('b', ['a']) + step('c', ['a']) + step('d', ['b', 'c'])),
  template(
    'tree',
    step('root') + step('left', ['root']) + step('right', ['root']) + step('left_a', ['left']) + step('left_b', ['left']) +
      step('right_a', ['right']) + step('right_b', ['right']) + step('converge', ['left_a', 'left_b', 'right_a', 'right_b']),
  ),
  template('fan_out_in', step('split') + FAN.map((f) => step(f, ['split'])).join('') + step('join', FAN)),
];

describe('DAG shapes run to completion in dependency order', () => {
  let stack: Stack;
  let templates: CompiledTemplate[];
  let worker: Worker;
  const executions: Execution[] = [];

  beforeAll(async () => {
    stack = await startStack();
    templates = await stack.register(...TEMPLATES);
    worker = await startRecordingWorker(stack, 'shapes', templates, executions, { concurrency: 25, maxPauseMs: 15 });
  });
  afterAll(async () => {
    await worker?.stop();
    await stack?.cleanup();
  });

  for (const name of ['linear', 'diamond', 'tree', 'fan_out_in']) {
    it(`${name}: every step completes, none starts before all its dependencies finished`, async () => {
      const [o] = await stack.orchestrator.createTasks([{ namespace: 'shapes', name, context: {} }]);
      if (!o!.ok) throw o!.error;
      const task = await taskWhen(stack.orchestrator, o!.task.id, finished, 20000);
      expect(task.state).toBe('complete');
      const t = templates.find((x) => x.name === name)!;
      const mine = executions.filter((e) => e.taskId === task.id);
      expect(mine.map((e) => e.step).sort()).toEqual(t.steps.map((s) => s.name).sort());
      const byStep = new Map(mine.map((e) => [e.step, e]));
      const dbStep = new Map(task.steps.map((s) => [s.name, s]));
      for (const s of t.steps) {
        for (const d of s.dependencies) {
          // From the handlers' own clock...
          expect(byStep.get(s.name)!.start).toBeGreaterThanOrEqual(byStep.get(d)!.end);
          // ...and from the times the orchestrator recorded.
          expect(Date.parse(dbStep.get(s.name)!.started_at!)).toBeGreaterThanOrEqual(Date.parse(dbStep.get(d)!.finished_at!));
        }
        // Each handler saw the results of exactly its ancestors.
        expect((dbStep.get(s.name)!.result as { saw: string[] }).saw).toEqual([...s.ancestors].sort());
      }
      if (name === 'fan_out_in') {
        // Independent branches are dispatched together: several fan steps overlapped.
        const fans = mine.filter((e) => e.step.startsWith('fan_'));
        const overlapping = Math.max(...fans.map((f) => fans.filter((g) => g.start < f.end && g.end > f.start).length));
        expect(overlapping).toBeGreaterThan(1);
      }
    });
  }
});

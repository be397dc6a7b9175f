/**
 * TASKER_STEPS_PER_MESSAGE above 1 (issue 7): steps released together for one namespace
 * travel in one `steps` message; the worker runs each on its own; a `steps` message that
 * reaches the delivery limit is split rather than failed whole.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import type { StepMessage, StepResult } from '@tasker/protocol';
import { ManualWorker, resultFor } from '../support/manual-worker.ts';
import { eventually, startStack, taskWhen, tasksWhen, type Stack } from '../support/stack.ts';

const FAN = (ns: string) => `
name: fan
namespace_name: ${ns}
version: 1.0.0
steps:
  - { name: a, handler: { callable: step } }
  - { name: b, handler: { callable: step }, dependencies: [a] }
  - { name: c, handler: { callable: step }, dependencies: [a] }
  - { name: d, handler: { callable: step }, dependencies: [a] }
  - { name: e, handler: { callable: step }, dependencies: [b, c, d] }
`;

const ONE = (ns: string) => `
name: one
namespace_name: ${ns}
version: 1.0.0
steps:
  - { name: only, handler: { callable: step } }
`;

describe('several steps in one message (TASKER_STEPS_PER_MESSAGE)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ stepsPerMessage: 16, queueType: 'quorum', deliveryLimit: 3 });
    await stack.register(FAN('spm_manual'), FAN('spm_worker'), FAN('spm_poison'), FAN('spm_keys'), ONE('spm_share'));
  });
  afterAll(async () => stack?.cleanup());

  it('first steps of tasks created together share one message, and so do the steps one result releases', async () => {
    const o = stack.orchestrator;
    const w = await ManualWorker.start(o, 'spm_manual');
    const created = await o.createTasks([0, 1, 2].map((i) => ({ namespace: 'spm_manual', name: 'fan', context: { i } })));
    expect(created.every((c) => c.ok)).toBe(true);
    const firsts = await w.waitFor(3);
    expect(w.deliveries).toEqual([{ type: 'steps', steps: firsts.map((m) => m.step_id) }]);
    expect(new Set(firsts.map((m) => m.task_id)).size).toBe(3);

    // One result releases b, c and d of its task: one message with three steps.
    const a = firsts[0]!;
    await w.succeed(a, { from: 'a' });
    const released = (await w.waitFor(6)).slice(3);
    expect(w.deliveries[1]).toEqual({ type: 'steps', steps: released.map((m) => m.step_id) });
    expect(released.map((m) => m.step_name).sort()).toEqual(['b', 'c', 'd']);
    // Each step of the message is exactly a step message: its own ids and its ancestors' results.
    for (const m of released) {
      expect(m).toMatchObject({ message_type: 'step', task_id: a.task_id, attempt: 1, dependency_results: { a: { from: 'a' } } });
      expect(m.idempotency_key).toBe(`${m.step_id}:1`);
    }
  });

  it('a worker runs every step of the messages it gets and the tasks complete', async () => {
    const o = stack.orchestrator;
    const ran: string[] = [];
    await stack.worker({
      namespace: 'spm_worker',
      concurrency: 4,
      handlers: { step: (ctx) => (ran.push(`${ctx.taskId}:${ctx.stepName}`), { step: ctx.stepName }) },
    });
    const created = await o.createTasks(Array.from({ length: 10 }, (_, i) => ({ namespace: 'spm_worker', name: 'fan', context: { i } })));
    const ids = created.map((c) => (c.ok ? c.task.id : ''));
    const tasks = await tasksWhen(o, ids, 'complete', 20000);
    expect(tasks.flatMap((t) => t!.steps.map((s) => s.state))).toEqual(Array(50).fill('complete'));
    expect(ran).toHaveLength(50);
    expect(new Set(ran).size).toBe(50);
    expect(tasks[0]!.steps[4]!.result).toEqual({ step: 'e' });
  });

  it('a worker given steps messages holds fewer of them, so a second worker of the namespace gets the rest', async () => {
    const o = stack.orchestrator;
    const queue = o.names.stepQueue('spm_share');
    let blocked = false;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const ranBy: Record<string, string> = {};
    const worker = (name: string) =>
      stack.worker({
        namespace: 'spm_share',
        concurrency: 4,
        handlers: {
          step: async (ctx) => {
            ranBy[ctx.taskId] = name;
            if (name === 'a' && blocked) await released;
            return { by: name };
          },
        },
      });
    const sixteen = async () => {
      const created = await o.createTasks(Array.from({ length: 16 }, (_, i) => ({ namespace: 'spm_share', name: 'one', context: { i } })));
      return created.map((c) => (c.ok ? c.task.id : ''));
    };
    const a = await worker('a');
    try {
      // Messages of 16 steps: worker a (4 slots) soon asks for ceil(2 × 4 / 16) + 1 = 2 at a time.
      expect(a.prefetch).toBe(4);
      const warm: string[] = [];
      for (let i = 0; i < 4; i++) warm.push(...(await sixteen()));
      await tasksWhen(o, warm, 'complete', 20000);
      await eventually(async () => (a.prefetch === 2 ? true : undefined), 10000, 'worker a to narrow its prefetch');

      // Now a's handlers hang: it takes two messages (32 steps) and leaves three in the queue.
      blocked = true;
      const held: string[] = [];
      for (let i = 0; i < 5; i++) held.push(...(await sixteen()));
      await eventually(async () => ((await o.broker.queueStats(queue))?.messageCount === 3 ? true : undefined), 10000, 'three messages left');
      await new Promise((r) => setTimeout(r, 300));
      expect((await o.broker.queueStats(queue))?.messageCount).toBe(3);

      // A second worker takes and runs those while a still waits on its first four.
      await worker('b');
      const byB = await eventually(async () => {
        const ids = held.filter((id) => ranBy[id] === 'b');
        return ids.length === 48 ? ids : undefined;
      }, 20000, 'worker b to run the 48 steps a left');
      await tasksWhen(o, byB, 'complete', 20000);
      release();
      const all = await tasksWhen(o, held, 'complete', 20000);
      expect(all.filter((t) => (t.steps[0]!.result as { by: string }).by === 'a')).toHaveLength(32);
    } finally {
      release(); // a's held handlers return, so the stack's cleanup stops it at once
    }
  });

  it('a steps message that reaches the delivery limit goes again step by step: only the step that kills workers fails', async () => {
    const o = stack.orchestrator;
    const results: StepResult[] = [];
    let deliveriesOfTheMessage = 0;
    // Stands in for workers that die whenever they are given step c: a message holding c is
    // given back unanswered; any other step is answered.
    const c = await o.broker.consume(o.names.stepQueue('spm_poison'), { prefetch: 10 }, async (d) => {
      const body = JSON.parse(d.body.toString()) as StepMessage | { message_type: 'steps'; steps: StepMessage[] };
      const steps = body.message_type === 'steps' ? body.steps : [body];
      if (steps.some((s) => s.step_name === 'c')) {
        if (steps.length > 1) deliveriesOfTheMessage++;
        d.nack(true);
        return;
      }
      for (const s of steps) {
        const r = resultFor(s, { result: { ok: s.step_name } });
        results.push(r);
        await o.broker.publish(o.names.resultsExchange, s.namespace, Buffer.from(JSON.stringify(r)));
      }
      d.ack();
    });
    try {
      const [created] = await o.createTasks([{ namespace: 'spm_poison', name: 'fan', context: {} }]);
      if (!created!.ok) throw created!.error;
      const task = await taskWhen(o, created!.task.id, 'error', 30000);
      const by = Object.fromEntries(task.steps.map((s) => [s.name, s]));
      expect(by['a']!.state).toBe('complete');
      // b and d came with c in one message; they ran once it was split.
      expect(by['b']!.state).toBe('complete');
      expect(by['d']!.state).toBe('complete');
      expect(by['c']!.state).toBe('error');
      expect(by['c']!.error).toMatchObject({ code: 'POISON_MESSAGE', kind: 'permanent' });
      expect(by['e']!.state).toBe('pending');
      expect(deliveriesOfTheMessage).toBeGreaterThanOrEqual(3);
      const { rows } = await sql<{ step_id: string }>`SELECT step_id FROM transitions
        WHERE task_id = ${task.id} AND reason LIKE 'dispatched again alone%'`.execute(o.db);
      expect(rows.map((r) => r.step_id).sort()).toEqual([by['b']!.id, by['c']!.id, by['d']!.id].sort());
      expect(results.map((r) => r.step_name).sort()).toEqual(['a', 'b', 'd']);
    } finally {
      await c.close();
    }
  });

  it('a task whose idempotency key is taken does not cost the others in its message their first steps', async () => {
    const o = stack.orchestrator;
    const w = await ManualWorker.start(o, 'spm_keys');
    const [first] = await o.createTasks([{ namespace: 'spm_keys', name: 'fan', context: {}, idempotency_key: 'taken' }]);
    if (!first!.ok) throw first!.error;
    await w.waitFor(1);
    const created = await o.createTasks([
      { namespace: 'spm_keys', name: 'fan', context: { n: 1 } },
      { namespace: 'spm_keys', name: 'fan', context: { n: 2 }, idempotency_key: 'taken' },
      { namespace: 'spm_keys', name: 'fan', context: { n: 3 } },
    ]);
    expect(created.map((c) => c.ok && c.created)).toEqual([true, false, true]);
    expect(created[1]!.ok && created[1]!.task.id).toBe(first!.task.id);
    const firsts = (await w.waitFor(3)).slice(1);
    expect(firsts.map((m) => m.input)).toEqual([{ n: 1 }, { n: 3 }]);
    expect(w.deliveries.slice(1)).toEqual([{ type: 'steps', steps: firsts.map((m) => m.step_id) }]);
    // Nothing more comes: the taken key's task got no second first step.
    await new Promise((r) => setTimeout(r, 300));
    expect(w.received).toHaveLength(3);
  });
});

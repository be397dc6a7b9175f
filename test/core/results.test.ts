import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import amqp from 'amqplib';
import type { CreateTaskBody } from '@tasker/protocol';
import { AMQP_URL } from '../support/services.ts';
import { startStack, eventually, taskWhen, type Stack } from '../support/stack.ts';
import { ManualWorker } from '../support/manual-worker.ts';

const TEMPLATE = `
name: two_steps
namespace_name: results_ns
version: 1.0.0
steps:
  - name: first
    handler: { callable: first }
  - name: second
    handler: { callable: second }
    dependencies: [first]
`;

describe('step results', () => {
  let stack: Stack;
  let worker: ManualWorker;
  beforeAll(async () => {
    stack = await startStack();
    await stack.register(TEMPLATE);
    worker = await ManualWorker.start(stack.orchestrator, 'results_ns');
  });
  afterAll(async () => stack?.cleanup());

  /** Creates one two_steps task and waits for its first step; `before`: the step messages received until then. */
  const startTask = async (context: CreateTaskBody['context'] = {}) => {
    const before = worker.received.length;
    const [created] = await stack.orchestrator.createTasks([{ namespace: 'results_ns', name: 'two_steps', context }]);
    expect(created!.ok).toBe(true);
    const [first] = (await worker.waitFor(before + 1)).slice(before);
    return { before, first };
  };

  const transitionsInto = async (stepId: string, state: string) => {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM transitions WHERE step_id = ${stepId} AND to_state = ${state}`.execute(stack.orchestrator.db);
    return rows[0]!.n;
  };

  it('a duplicated result message changes nothing', async () => {
    const { before, first } = await startTask();
    const result = worker.result(first!, { result: { n: 1 } });
    await worker.publish(result);
    await worker.publish(result);
    await worker.publish(result);
    const [second] = (await worker.waitFor(before + 2)).slice(before + 1);
    expect(second!.step_name).toBe('second');
    await new Promise((r) => setTimeout(r, 300));
    expect(await transitionsInto(first!.step_id, 'complete')).toBe(1);
    // The duplicates did not dispatch the dependent twice.
    expect(worker.received.filter((m) => m.step_id === second!.step_id)).toHaveLength(1);
    const task = await stack.orchestrator.getTask(first!.task_id);
    expect(task!.steps.find((s) => s.name === 'first')!.result).toEqual({ n: 1 });
  });

  it('a result for a stale attempt or a finished step changes nothing', async () => {
    const { first } = await startTask();
    await worker.publish({ ...worker.result(first!, { result: 'stale' }), attempt: 2 });
    await new Promise((r) => setTimeout(r, 300));
    let task = await stack.orchestrator.getTask(first!.task_id);
    expect(task!.steps[0]!.state).toBe('enqueued');
    await worker.succeed(first!, 'real');
    await taskWhen(stack.orchestrator, first!.task_id, (t) => t.steps[0]!.state === 'complete');
    await worker.publish(worker.result(first!, { error: { kind: 'permanent', code: 'LATE', message: 'late failure' } }));
    await new Promise((r) => setTimeout(r, 300));
    task = await stack.orchestrator.getTask(first!.task_id);
    expect(task!.steps[0]!.state).toBe('complete');
    expect(task!.steps[0]!.result).toBe('real');
  });

  it('a malformed result is parked with its reason and the orchestrator keeps going', async () => {
    const o = stack.orchestrator;
    await worker.publish('{"protocol_version": 1, "message_type": "step_result", "task_id": ', 'results_ns');
    await worker.publish(JSON.stringify({ protocol_version: 1, message_type: 'step_result', status: 'success' }), 'results_ns');
    const parked: Array<{ code: string; reason: string }> = [];
    const c = await o.broker.consume(o.names.deadLetterQueue, { prefetch: 10 }, (d) => {
      const h = d.message.properties.headers ?? {};
      parked.push({ code: String(h['x-tasker-code']), reason: String(h['x-tasker-reason']) });
      d.ack();
    });
    await eventually(async () => (parked.length >= 2 ? true : undefined), 5000, 'two parked messages');
    await c.close();
    expect(parked[0]!.code).toBe('INVALID_MESSAGE');
    expect(parked[0]!.reason).toMatch(/not valid JSON/);
    expect(parked[1]!.reason).toMatch(/task_id/);
    // Still processing: a fresh task runs its first step to completion.
    const { before, first } = await startTask();
    await worker.succeed(first!);
    await worker.waitFor(before + 2);
  });

  it('a step_results message carrying several results: each is applied on its own, a bad one is parked alone, the message is acked', async () => {
    const o = stack.orchestrator;
    const before = worker.received.length;
    const created = await o.createTasks([1, 2, 3].map(() => ({ namespace: 'results_ns', name: 'two_steps', context: {} })));
    expect(created.every((c) => c.ok)).toBe(true);
    const firsts = (await worker.waitFor(before + 3)).slice(before);
    const marker = `bad${Math.random().toString(36).slice(2, 10)}`;
    // The second result lacks step_name: a schema error in that result alone.
    const { step_name: _dropped, ...broken } = { ...worker.result(firsts[1]!, { result: 'x' }), worker_id: marker };
    const body = {
      protocol_version: 1,
      message_type: 'step_results',
      results: [worker.result(firsts[0]!, { result: { n: 0 } }), broken, worker.result(firsts[2]!, { result: { n: 2 } })],
    };
    const parked: Array<{ code: string; reason: string; body: string }> = [];
    const c = await o.broker.consume(o.names.deadLetterQueue, { prefetch: 10 }, (d) => {
      const h = d.message.properties.headers ?? {};
      if (d.body.toString().includes(marker)) parked.push({ code: String(h['x-tasker-code']), reason: String(h['x-tasker-reason']), body: d.body.toString() });
      d.ack();
    });
    await worker.publish(JSON.stringify(body), 'results_ns');
    // Both valid results complete their steps and dispatch the dependents.
    const seconds = (await worker.waitFor(before + 5)).slice(before + 3);
    expect(new Set(seconds.map((m) => m.task_id))).toEqual(new Set([firsts[0]!.task_id, firsts[2]!.task_id]));
    await eventually(async () => (parked.length >= 1 ? true : undefined), 5000, 'the bad result parked');
    await c.close();
    expect(parked).toHaveLength(1);
    expect(parked[0]!.code).toBe('INVALID_MESSAGE');
    expect(parked[0]!.reason).toMatch(/step result 2 of 3 in a step_results message does not match its schema: step_name/);
    // Only the bad result was parked, not its siblings.
    expect(JSON.parse(parked[0]!.body)).toEqual(broken);
    const task1 = await o.getTask(firsts[1]!.task_id);
    expect(task1!.steps[0]!.state).toBe('enqueued');
    expect((await o.getTask(firsts[0]!.task_id))!.steps[0]!.result).toEqual({ n: 0 });
  });

  it('a step_results message with a broken envelope is parked whole, naming what is wrong', async () => {
    const o = stack.orchestrator;
    const marker = `env${Math.random().toString(36).slice(2, 10)}`;
    const parked: string[] = [];
    const c = await o.broker.consume(o.names.deadLetterQueue, { prefetch: 10 }, (d) => {
      if (d.body.toString().includes(marker)) parked.push(String(d.message.properties.headers?.['x-tasker-reason']));
      d.ack();
    });
    await worker.publish(JSON.stringify({ protocol_version: 1, message_type: 'step_results', results: { marker } }), 'results_ns');
    await worker.publish(JSON.stringify({ protocol_version: 1, message_type: 'step_results', results: [], marker }), 'results_ns');
    await eventually(async () => (parked.length >= 2 ? true : undefined), 5000, 'both parked');
    await c.close();
    expect(parked.sort()).toEqual([
      'step_results message: results must be an array of 1 to 500 step results',
      'step_results message: results must be an array of 1 to 500 step results; it has 0',
    ]);
  });

  it("results for the tasks this orchestrator created are applied from its task cache, in one round trip each", async () => {
    const o = stack.orchestrator;
    const cache = o.taskCache!;
    const { before, first } = await startTask({ k: 'v' });
    const { hits, misses, stale } = cache.stats;
    await worker.succeed(first!, { n: 1 });
    const [second] = (await worker.waitFor(before + 2)).slice(before + 1);
    // The step message built from the cache carries the context and the first step's result.
    expect(second!.input).toEqual({ k: 'v' });
    expect(second!.dependency_results).toEqual({ first: { n: 1 } });
    await worker.succeed(second!, 'done');
    const task = await taskWhen(o, first!.task_id, (t) => t.state === 'complete');
    expect(task.steps.map((s) => [s.name, s.state, s.result])).toEqual([['first', 'complete', { n: 1 }], ['second', 'complete', 'done']]);
    expect(cache.stats).toMatchObject({ hits: hits + 2, misses, stale });
  });

  it('a result the task cache would apply to a task another orchestrator cancelled meanwhile is decided from the database', async () => {
    const o = stack.orchestrator;
    const cache = o.taskCache!;
    const { first } = await startTask();
    // What another orchestrator's cancel writes: this one's cache still holds the task in
    // progress, and the write finds it cancelled and writes nothing.
    await o.db.transaction().execute(async (trx) => {
      await sql`UPDATE tasks SET state = 'cancelled', completed_at = now() WHERE id = ${first!.task_id}`.execute(trx);
      await sql`UPDATE steps SET state = 'cancelled' WHERE task_id = ${first!.task_id}`.execute(trx);
    });
    const stale = cache.stats.stale;
    await worker.succeed(first!, 'too late');
    await eventually(async () => (cache.stats.stale > stale ? true : undefined), 5000, 'the cached batch found stale');
    await new Promise((r) => setTimeout(r, 300));
    const task = await o.getTask(first!.task_id);
    expect(task!.state).toBe('cancelled');
    expect(task!.steps.map((s) => [s.name, s.state, s.result ?? null])).toEqual([['first', 'cancelled', null], ['second', 'cancelled', null]]);
    expect(worker.received.filter((m) => m.task_id === first!.task_id)).toHaveLength(1);
    expect(await transitionsInto(first!.step_id, 'complete')).toBe(0);
  });

  it("an operator's action through this orchestrator drops its copy of the task: the next result is read, not found stale", async () => {
    const o = stack.orchestrator;
    const cache = o.taskCache!;
    const { first } = await startTask();
    await o.cancelTask(first!.task_id, { name: 'test', reason: 'drops the copy' });
    const { misses, stale } = cache.stats;
    await worker.succeed(first!, 'too late');
    await eventually(async () => (cache.stats.misses > misses ? true : undefined), 5000, 'the batch read from the database');
    expect(cache.stats.stale).toBe(stale);
    expect((await o.getTask(first!.task_id))!.steps[0]!.state).toBe('cancelled');
  });

  it("a task whose context the task cache cannot copy (a program's function in it) is created and runs all the same", async () => {
    const o = stack.orchestrator;
    // JSON (the row, the step message) drops the function; a copy of it cannot be made.
    const { before, first } = await startTask({ n: 1, f: () => 1 } as never);
    expect(first!.input).toEqual({ n: 1 });
    await worker.succeed(first!);
    const [second] = (await worker.waitFor(before + 2)).slice(before + 1);
    await worker.succeed(second!);
    const task = await taskWhen(o, first!.task_id, (t) => t.state === 'complete');
    expect(task.context).toEqual({ n: 1 });
  });

  it('every result message above was acked: once the orchestrator stops, none goes back to the results queue', async () => {
    const o = stack.orchestrator;
    await eventually(async () => ((await o.broker.queueDepth(o.names.resultsQueue)) === 0 ? true : undefined), 5000, 'results queue drained');
    // Unacked deliveries return to the queue when the consumer goes away.
    await o.stop();
    const conn = await amqp.connect(AMQP_URL());
    try {
      const ch = await conn.createChannel();
      expect((await ch.checkQueue(o.names.resultsQueue)).messageCount).toBe(0);
    } finally {
      await conn.close();
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import pino from 'pino';
import type { StepMessage } from '@tasker/protocol';
import { startStack, eventually, taskWhen, type Stack } from '../support/stack.ts';
import { ManualWorker } from '../support/manual-worker.ts';
import { createTasks } from '../../packages/orchestrator/src/tasks/create-tasks.ts';
import { ContextValidator } from '../../packages/orchestrator/src/tasks/context-validator.ts';

// a, then b and c after it: b's message carries a's result.
const CHAIN = (ns: string) => `
name: chain
namespace_name: ${ns}
version: 1.0.0
steps:
  - { name: a, handler: { callable: first } }
  - { name: b, handler: { callable: second }, dependencies: [a] }
  - { name: c, handler: { callable: third }, dependencies: [a] }
`;

/** A step message without the moment it was sent, which a message built again has anew. */
const sent = ({ dispatched_at: _, ...m }: StepMessage & { receivedAt?: number }) => ({ ...m, receivedAt: undefined });

/**
 * Step messages' outbox rows keep the steps they carry, not the message (migration 0016): a
 * message whose orchestrator died before the broker confirmed it is built again by the
 * sweeper from the rows of the steps still waiting for it.
 */
describe('outbox rows of step messages', () => {
  let stack: Stack;
  beforeAll(async () => {
    // The stack's sweeper publishes rows older than 1 s, every 200 ms.
    stack = await startStack();
    await stack.register(CHAIN('sweep_ns'), CHAIN('sweep_moved_ns'), CHAIN('sweep_bad_ns'));
  });
  afterAll(async () => stack?.cleanup());

  const deps = () => ({
    db: stack.orchestrator.db,
    registry: stack.orchestrator.registry,
    validator: new ContextValidator(),
    names: stack.orchestrator.names,
    logger: pino({ level: 'silent' }),
    stepsPerMessage: 16,
  });

  it('a creation batch writes the first steps as references, and the sweeper sends their messages when nobody else did', async () => {
    const o = stack.orchestrator;
    const worker = await ManualWorker.start(o, 'sweep_ns');
    // Committed but never published, as when the orchestrator dies right after the commit.
    const { outcomes, outbox } = await createTasks(deps(), [
      { namespace: 'sweep_ns', name: 'chain', context: { n: 1 } },
      { namespace: 'sweep_ns', name: 'chain', context: { n: 2 } },
    ]);
    const ids = outcomes.map((c) => (c.ok ? c.task.id : ''));
    const { rows: firsts } = await sql<{ id: string; task_id: string }>`
      SELECT id, task_id FROM steps WHERE task_id = ANY(${ids}::text[]) AND name = 'a' ORDER BY task_id`.execute(o.db);
    const { rows } = await sql<{ body: string | null; step_refs: unknown }>`
      SELECT body, step_refs FROM outbox WHERE id = ANY(${outbox.map((m) => m.id)}::bigint[])`.execute(o.db);
    // One `steps` message for both tasks' first steps: its row names them, without the body.
    expect(rows).toHaveLength(1);
    expect(rows[0]!.body).toBeNull();
    expect(rows[0]!.step_refs).toEqual(expect.arrayContaining(firsts.map((s) => [s.id, 1])));
    expect(rows[0]!.step_refs).toHaveLength(2);

    const received = await worker.waitFor(2, 10000);
    // The messages built again are the ones the orchestrator held, but for when they were sent.
    const held = (JSON.parse(outbox[0]!.body) as { steps: StepMessage[] }).steps;
    expect(received.map((m) => sent(m)).sort((x, y) => x.step_id.localeCompare(y.step_id))).toEqual(
      held.map((m) => sent(m)).sort((x, y) => x.step_id.localeCompare(y.step_id)),
    );
    // Packed as the sweeping orchestrator packs (the stack's: one step to a message).
    expect(worker.deliveries.map((d) => d.type)).toEqual(['step', 'step']);
    await eventually(async () => ((await sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox`.execute(o.db)).rows[0]!.n === 0 ? true : undefined), 5000, 'the swept row deleted');

    // The tasks go on as usual from there.
    for (const m of received) await worker.succeed(m, { from: m.step_name });
    const next = await worker.waitFor(6, 10000);
    for (const m of next.slice(2)) await worker.succeed(m);
    for (const id of ids) await taskWhen(o, id, 'complete');
  });

  it('a step message built again carries the results of its ancestors; a row whose steps moved on is deleted and sends nothing', async () => {
    const o = stack.orchestrator;
    const [created] = await o.createTasks([{ namespace: 'sweep_moved_ns', name: 'chain', context: { n: 3 } }]);
    if (!created!.ok) throw created!.error;
    const taskId = created!.task.id;
    const worker = await ManualWorker.start(o, 'sweep_moved_ns');
    const [a] = await worker.waitFor(1, 10000);
    await worker.succeed(a!, { total: 42 });
    const [, b1, c1] = await worker.waitFor(3, 10000);
    const b = [b1!, c1!].find((m) => m.step_name === 'b')!;
    const c = [b1!, c1!].find((m) => m.step_name === 'c')!;
    await worker.succeed(c);
    await taskWhen(o, taskId, (t) => t.steps.find((s) => s.name === 'c')!.state === 'complete');

    // Rows a dead orchestrator left: one for b (still enqueued at attempt 1), one for c (complete),
    // one for b's attempt 2 (which does not exist).
    await sql`
      INSERT INTO outbox (exchange, routing_key, body, properties, step_refs, created_at) VALUES
        (${o.names.stepsExchange}, 'sweep_moved_ns', NULL, '{}', ${JSON.stringify([[b.step_id, 1]])}::jsonb, now() - interval '5 seconds'),
        (${o.names.stepsExchange}, 'sweep_moved_ns', NULL, '{}', ${JSON.stringify([[c.step_id, 1], [b.step_id, 2]])}::jsonb, now() - interval '5 seconds')
    `.execute(o.db);
    const [, , , again] = await worker.waitFor(4, 10000);
    expect(again!.step_id).toBe(b.step_id);
    expect(again!.attempt).toBe(1);
    expect(again!.dependency_results).toEqual({ a: { total: 42 } });
    expect(sent(again!)).toEqual(sent(b));
    await eventually(async () => ((await sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox`.execute(o.db)).rows[0]!.n === 0 ? true : undefined), 5000, 'both rows deleted');
    // Nothing more came: c is complete, and b has no attempt 2.
    await new Promise((r) => setTimeout(r, 500));
    expect(worker.received).toHaveLength(4);

    await worker.succeed(again!);
    await taskWhen(o, taskId, 'complete');
  });

  it('a row that cannot be read or built again stays in the outbox, and the rows beside it still go out', async () => {
    const o = stack.orchestrator;
    const [created] = await o.createTasks([{ namespace: 'sweep_bad_ns', name: 'chain', context: { n: 4 } }]);
    if (!created!.ok) throw created!.error;
    const worker = await ManualWorker.start(o, 'sweep_bad_ns');
    const [a] = await worker.waitFor(1, 10000);
    // A step its template does not have: its message cannot be built.
    await sql`
      INSERT INTO steps (id, task_id, name, position, state, attempt, max_attempts, deps_pending)
      VALUES ('stp_not_in_template', ${created!.task.id}, 'nowhere', 9, 'enqueued', 1, 1, 0)`.execute(o.db);
    const { rows: bad } = await sql<{ id: string }>`
      INSERT INTO outbox (exchange, routing_key, body, properties, step_refs, created_at) VALUES
        (${o.names.stepsExchange}, 'sweep_bad_ns', NULL, '{}', '"not references"'::jsonb, now() - interval '5 seconds'),
        (${o.names.stepsExchange}, 'sweep_bad_ns', NULL, '{}', '[["stp_not_in_template", 1]]'::jsonb, now() - interval '5 seconds')
      RETURNING id::text`.execute(o.db);
    await sql`
      INSERT INTO outbox (exchange, routing_key, body, properties, step_refs, created_at) VALUES
        (${o.names.stepsExchange}, 'sweep_bad_ns', NULL, '{}', ${JSON.stringify([[a!.step_id, 1]])}::jsonb, now() - interval '5 seconds')`.execute(o.db);
    // The row after the two that cannot be sent goes out, and only it leaves the outbox.
    const [, again] = await worker.waitFor(2, 10000);
    expect(sent(again!)).toEqual(sent(a!));
    const left = await eventually(async () => {
      const { rows } = await sql<{ id: string }>`SELECT id::text FROM outbox ORDER BY id`.execute(o.db);
      return rows.length === 2 ? rows.map((r) => r.id) : undefined;
    }, 5000, 'only the two rows that cannot be sent left');
    expect(left).toEqual(bad.map((r) => r.id));
    await sql`DELETE FROM outbox WHERE id = ANY(${left}::bigint[])`.execute(o.db);
  });
});

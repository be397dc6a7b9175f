import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpTaskClient } from '@tasker/client';
import type { TaskView } from '@tasker/protocol';
import type { Orchestrator } from '@tasker/orchestrator';
import { eventually, startStack, type Stack } from '../support/stack.ts';

// Each task's second step runs only once the test lets that task go.
const GATED = `
name: gated
namespace_name: wait_ns
version: 1.0.0
steps:
  - { name: first, handler: { callable: first } }
  - { name: gate, handler: { callable: gate }, dependencies: [first] }
`;

describe('GET /v1/tasks/:id?wait_ms: answering as the task ends', () => {
  let stack: Stack;
  let url: string;
  const gates = new Map<string, { started: Promise<void>; go: () => void; wait: Promise<void>; began: () => void }>();
  const gate = (taskId: string) => {
    let g = gates.get(taskId);
    if (!g) {
      let go!: () => void;
      let began!: () => void;
      const wait = new Promise<void>((r) => (go = r));
      const started = new Promise<void>((r) => (began = r));
      g = { started, go, wait, began };
      gates.set(taskId, g);
    }
    return g;
  };

  const create = async (base = url): Promise<string> => {
    const res = await fetch(`${base}/v1/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ namespace: 'wait_ns', name: 'gated', context: {} }),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { task: TaskView }).task.id;
  };
  /** GET with wait_ms; `settled` turns true once it answered. */
  const waitFor = (id: string, waitMs: number | string, base = url) => {
    const out = { settled: false, at: 0, done: undefined as unknown as Promise<{ status: number; body: any }> };
    out.done = fetch(`${base}/v1/tasks/${id}?wait_ms=${waitMs}`).then(async (res) => {
      out.settled = true;
      out.at = Date.now();
      return { status: res.status, body: (await res.json()) as any };
    });
    return out;
  };

  beforeAll(async () => {
    // Polling every minute: an end this orchestrator commits must answer without it.
    stack = await startStack({ taskWaitPollMs: 60_000 });
    url = stack.orchestrator.httpUrl!;
    await stack.register(GATED);
    await stack.worker({
      namespace: 'wait_ns',
      handlers: {
        first: () => ({ ok: true }),
        gate: async (ctx) => {
          const g = gate(ctx.taskId);
          g.began();
          await g.wait;
          return { released: true };
        },
      },
    });
  });
  afterAll(async () => {
    for (const g of gates.values()) g.go();
    await stack?.cleanup();
  });

  it('holds the answer while the task runs and answers as this orchestrator completes it', async () => {
    const id = await create();
    await gate(id).started;
    const w = waitFor(id, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(w.settled).toBe(false);
    const released = Date.now();
    gate(id).go();
    const { status, body } = await w.done;
    expect(status).toBe(200);
    expect(body.state).toBe('complete');
    expect(body.steps.map((s: { state: string }) => s.state)).toEqual(['complete', 'complete']);
    // Answered by the completion itself: not at wait_ms (30 s), nor at the next poll (60 s).
    expect(w.at - released).toBeLessThan(10_000);
  });

  it('answers with the task still in progress once wait_ms has passed', async () => {
    const id = await create();
    await gate(id).started;
    const asked = Date.now();
    const w = waitFor(id, 400);
    const { status, body } = await w.done;
    expect(status).toBe(200);
    expect(body.state).toBe('in_progress');
    expect(w.at - asked).toBeGreaterThanOrEqual(350);
    gate(id).go();
  });

  it('answers at once for a task that has ended, and 404 at once for no such task', async () => {
    const id = await create();
    gate(id).go();
    const client = new HttpTaskClient({ baseUrl: url });
    const done = await client.waitForTask(id, { timeoutMs: 20_000 });
    expect(done.state).toBe('complete');
    const asked = Date.now();
    const w = waitFor(id, 30_000);
    expect((await w.done).body.state).toBe('complete');
    expect(w.at - asked).toBeLessThan(10_000);
    const none = await waitFor('tsk_doesnotexist0000000', 30_000).done;
    expect(none.status).toBe(404);
    expect(none.body.error.code).toBe('UNKNOWN_TASK');
  });

  it('a caller that hangs up stops waiting', async () => {
    const id = await create();
    await gate(id).started;
    const hangUp = new AbortController();
    const asked = fetch(`${url}/v1/tasks/${id}?wait_ms=30000`, { signal: hangUp.signal }).catch((e: unknown) => e);
    await eventually(async () => (stack.orchestrator.tasksWaitedFor === 1 ? true : undefined), 5000, 'the wait to be registered');
    hangUp.abort();
    expect(await asked).toBeInstanceOf(Error);
    await eventually(async () => (stack.orchestrator.tasksWaitedFor === 0 ? true : undefined), 5000, 'the wait to end with the connection');
    gate(id).go();
  });

  it.each(['-1', '1.5', 'soon', '60001'])('refuses wait_ms=%s with 400 naming wait_ms', async (value) => {
    const id = await create();
    gate(id).go();
    const { status, body } = await waitFor(id, value).done;
    expect(status).toBe(400);
    expect(body.error.code).toBe('INVALID_MESSAGE');
    expect(body.error.message).toContain('wait_ms');
  });

  it('HttpTaskClient.waitForTask returns as the task ends, not at its next read', async () => {
    const id = await create();
    await gate(id).started;
    const client = new HttpTaskClient({ baseUrl: url });
    // One read every 20 s if it polled: returning within seconds of the release means the
    // orchestrator answered the held request.
    const waiting = client.waitForTask(id, { timeoutMs: 40_000, pollMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    const released = Date.now();
    gate(id).go();
    const task = await waiting;
    expect(task.state).toBe('complete');
    expect(Date.now() - released).toBeLessThan(10_000);
  });

  describe('with a second orchestrator', () => {
    let other: Orchestrator;
    let otherUrl: string;
    beforeAll(async () => {
      other = await stack.another({ taskWaitPollMs: 100 });
      otherUrl = other.httpUrl!;
    });

    it('answers a wait for a task another orchestrator ended (read every TASKER_TASK_WAIT_POLL_MS)', async () => {
      const id = await create();
      await gate(id).started;
      const w = waitFor(id, 30_000, otherUrl);
      await new Promise((r) => setTimeout(r, 300));
      expect(w.settled).toBe(false);
      const cancelled = Date.now();
      // Cancelled through the first orchestrator: the second only reads it.
      const res = await fetch(`${url}/v1/tasks/${id}/cancel`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'test: ended elsewhere' }),
      });
      expect(res.status).toBe(200);
      const { body } = await w.done;
      expect(body.state).toBe('cancelled');
      expect(w.at - cancelled).toBeLessThan(10_000);
    });

    it('a stopping orchestrator answers its waiting callers with the task as it is', async () => {
      const id = await create();
      await gate(id).started;
      const w = waitFor(id, 30_000, otherUrl);
      await new Promise((r) => setTimeout(r, 300));
      expect(w.settled).toBe(false);
      const stopping = Date.now();
      await other.stop();
      const { status, body } = await w.done;
      expect(status).toBe(200);
      expect(body.state).toBe('in_progress');
      expect(w.at - stopping).toBeLessThan(10_000);
      gate(id).go();
    });
  });
});

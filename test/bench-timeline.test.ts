import { describe, expect, it } from 'vitest';
import { summarizeCreation, summarizeTimeline } from '../bench/src/timeline-summary.ts';

// Events as the children record them: `<ns> <event> <detail>` (bench/src/children/timeline.ts).
const at = (ms: number, event: string, detail = '') => `${BigInt(Math.round(ms * 1e6)) + 10n ** 12n} ${event} ${detail}`;

describe('bench --timeline summary', () => {
  it("cuts each step's path into its legs, leaves out the task's last step and what other statements do meanwhile", () => {
    const worker: string[] = [];
    const orchestrator: string[] = [];
    // Two tasks of two steps (s1 → s4): s1's path to s4 is measured; s4 has no next step. The
    // first task's batches are pipelined texts, the second's the prepared statement that writes
    // a batch planned from the task cache.
    for (const base of [0, 100]) {
      const batch = base === 0 ? 'pipelined' : 'prepared:result_write_checked_kept';
      worker.push(at(base + 0, 'handler', 's1'), at(base + 0.1, 'pub', 'p.results/ns'));
      orchestrator.push(
        at(base + 0.5, 'recv', 'p.results/ns'),
        at(base + 0.8, 'sql>', batch),
        // An outbox clean-up on another connection is not the batch's.
        at(base + 0.9, 'sql>', 'prepared:outbox_delete'),
        at(base + 1.6, 'sql<', batch),
        at(base + 1.7, 'sql<', 'prepared:outbox_delete'),
        at(base + 1.8, 'pub', 'p.steps/ns'),
      );
      worker.push(at(base + 2.2, 'recv', 'p.steps/ns'), at(base + 2.5, 'handler', 's4'), at(base + 2.6, 'pub', 'p.results/ns'));
      // s4's result, then the next task's creation: its statements and first step are not s4's path.
      orchestrator.push(
        at(base + 3, 'recv', 'p.results/ns'),
        at(base + 3.1, 'sql>', batch),
        at(base + 3.9, 'sql<', batch),
        at(base + 50, 'sql>', 'prepared:tasks_create_batch'),
        at(base + 51, 'sql<', 'prepared:tasks_create_batch'),
        at(base + 51.5, 'pub', 'p.steps/ns'),
      );
    }
    const s = summarizeTimeline(orchestrator, worker, 's4');
    expect(s.steps).toBe(2);
    expect(s.statements_per_step).toBe(1);
    expect(s.legs.worker_handler_to_publish.p50).toBeCloseTo(0.1, 6);
    expect(s.legs.broker_result.p50).toBeCloseTo(0.4, 6);
    expect(s.legs.orchestrator_decide.p50).toBeCloseTo(0.3, 6);
    expect(s.legs.postgres.p50).toBeCloseTo(0.8, 6);
    expect(s.legs.orchestrator_publish.p50).toBeCloseTo(0.2, 6);
    expect(s.legs.broker_step.p50).toBeCloseTo(0.4, 6);
    expect(s.legs.worker_receive_to_handler.p50).toBeCloseTo(0.3, 6);
    expect(s.total.p50).toBeCloseTo(2.5, 6);
  });

  it("cuts each task's start into its legs, from the bench's request to the first handler, and leaves out a start it cannot follow", () => {
    const worker: string[] = [];
    const orchestrator: string[] = [];
    const sent: number[] = [];
    for (const base of [0, 100]) {
      sent.push(base + 1e6);
      orchestrator.push(
        // A result batch's statement before the creation's is not the creation's.
        at(base + 0.2, 'sql>', 'pipelined'),
        at(base + 0.3, 'sql<', 'pipelined'),
        at(base + 0.6, 'sql>', 'prepared:tasks_create_batch'),
        at(base + 1.6, 'sql<', 'prepared:tasks_create_batch'),
        at(base + 1.7, 'pub', 'p.steps/ns'),
      );
      worker.push(at(base + 2.1, 'recv', 'p.steps/ns'), at(base + 2.3, 'handler', 's1'));
    }
    // A third request whose first step never reaches the worker.
    sent.push(200 + 1e6);
    orchestrator.push(at(200.5, 'sql>', 'prepared:tasks_create_batch'), at(201, 'sql<', 'prepared:tasks_create_batch'));
    const s = summarizeCreation(sent, orchestrator, worker);
    expect(s.tasks).toBe(2);
    expect(s.legs.http_to_statement.p50).toBeCloseTo(0.6, 6);
    expect(s.legs.postgres.p50).toBeCloseTo(1.0, 6);
    expect(s.legs.orchestrator_publish.p50).toBeCloseTo(0.1, 6);
    expect(s.legs.broker_step.p50).toBeCloseTo(0.4, 6);
    expect(s.legs.worker_receive_to_handler.p50).toBeCloseTo(0.2, 6);
    expect(s.total.p50).toBeCloseTo(2.3, 6);
  });
});

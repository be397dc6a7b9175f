import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coreTopology } from '@tasker/protocol';
import { FakeOrchestrator, deferred } from './support/fake-orchestrator.ts';

let orch: FakeOrchestrator;

beforeAll(async () => {
  orch = await FakeOrchestrator.open();
});
afterAll(async () => {
  await orch?.close();
});

describe('result publishing', () => {
  it('a step whose result the broker refuses is not acked: it comes back and is answered once the broker accepts results', async () => {
    const ns = await orch.namespace();
    const n = orch.rabbit.names;
    let runs = 0;
    const secondRun = deferred();
    await orch.worker({
      namespace: ns,
      handlers: {
        work: () => {
          runs += 1;
          if (runs === 2) secondRun.resolve();
          return { runs };
        },
      },
    }).start();
    // Without the results exchange every publish of a result fails (404 closes the channel).
    await orch.rabbit.withChannel((ch) => ch.deleteExchange(n.resultsExchange));
    const m = orch.step(ns, 'work');
    await orch.dispatch(m);
    await secondRun.promise; // redelivered: the first run was not acked
    await orch.rabbit.declare(coreTopology(n));

    const r = await orch.resultFor(m.step_id, 15_000);
    expect(r).toMatchObject({ status: 'success', attempt: m.attempt });
    expect(runs).toBeGreaterThanOrEqual(2);
    await orch.stopWorkers();
    expect(await orch.depth(ns)).toBe(0);
  });
});

import { afterAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../support/stack.ts';

describe('broker topology', () => {
  let stack: Stack;
  afterAll(async () => stack?.cleanup());

  it('an orchestrator whose queue settings differ from the existing queues refuses to start with a sentence saying what to do', async () => {
    stack = await startStack({ queueType: 'classic' });
    const err = await stack.another({ queueType: 'quorum', httpPort: 0 }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.name).toBe('TopologyMismatchError');
    expect(err?.message).toMatch(/already exists with other settings .*x-queue-type/);
    expect(err?.message).toMatch(/TASKER_AMQP_PREFIX/);
  });
});

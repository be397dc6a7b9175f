import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AMQP_URL } from '../../transport/test/support/rabbit.ts';
import { FakeOrchestrator } from './support/fake-orchestrator.ts';

let orch: FakeOrchestrator;

beforeAll(async () => {
  orch = await FakeOrchestrator.open();
});
afterAll(async () => {
  await orch?.close();
});

/** Resolves with the first stdout line that matches. */
function lineFrom(child: ChildProcess, match: RegExp, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`no line matching ${match} within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString();
      const line = buffered.split('\n').find((l) => match.test(l));
      if (line) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve(line);
      }
    };
    child.stdout!.on('data', onData);
  });
}

describe('installSignalHandlers', () => {
  it('SIGTERM lets the running handler finish and publish, then the process exits with 0', async () => {
    const ns = await orch.namespace();
    const fixture = fileURLToPath(new URL('./fixtures/signal-worker.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
      env: { ...process.env, TASKER_AMQP_URL: AMQP_URL, TEST_PREFIX: orch.prefix, TEST_NAMESPACE: ns },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await lineFrom(child, /^ready$/);
      const m = orch.step(ns, 'slow');
      await orch.dispatch(m);
      await lineFrom(child, new RegExp(`^started ${m.step_id}$`));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(await orch.resultFor(m.step_id, 1000)).toMatchObject({ status: 'success', result: { pid: child.pid } });
      expect(await orch.depth(ns)).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { names } from '@tasker/protocol';
import { describe, expect, it } from 'vitest';
import { measureWorkerOverhead } from '../src/overhead.ts';

// The measurement behind `pnpm bench --only languages`: these check what it reports and
// that it leaves nothing behind, never how fast anything is.
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const AMQP_URL = process.env.TASKER_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const TS_WORKER = [process.execPath, '--import', 'tsx', 'packages/conformance/src/workers/typescript.ts'];

/** Whether the queue exists (a failed passive check closes the channel, so each gets its own). */
async function queueExists(queue: string): Promise<boolean> {
  const conn = await amqp.connect(AMQP_URL);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    return await ch.checkQueue(queue).then(
      () => true,
      () => false,
    );
  } finally {
    await conn.close().catch(() => undefined);
  }
}

describe('measureWorkerOverhead', () => {
  it('times every step of the TypeScript conformance worker and removes its queues afterwards', async () => {
    const prefix = `ovtest${randomBytes(4).toString('hex')}`;
    const r = await measureWorkerOverhead({ command: TS_WORKER, cwd: REPO, amqpUrl: AMQP_URL, prefix, steps: 12, warmup: 2, inFlight: 5, inFlightSteps: 15, queueType: 'classic' });
    expect(r).toMatchObject({ steps: 12, in_flight: 5, in_flight_steps: 15, queue_type: 'classic', timed_out: false });
    for (const v of [r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, r.in_flight_steps_per_sec, r.start_ms]) expect(v).toBeGreaterThan(0);
    expect(r.p50_ms).toBeLessThanOrEqual(r.p95_ms);
    expect(r.p95_ms).toBeLessThanOrEqual(r.p99_ms);
    expect(r.p99_ms).toBeLessThanOrEqual(r.max_ms);
    expect(await queueExists(names(prefix).stepQueue('overhead'))).toBe(false);
    expect(await queueExists(names(prefix).resultsQueue)).toBe(false);
  }, 60_000);

  it('a worker that exits before consuming is reported with its output, and its queues are removed', async () => {
    const prefix = `ovtest${randomBytes(4).toString('hex')}`;
    const command = [process.execPath, '-e', 'console.error("no broker here"); process.exit(3)'];
    await expect(measureWorkerOverhead({ command, cwd: REPO, amqpUrl: AMQP_URL, prefix, queueType: 'classic' })).rejects.toThrow(
      /exited before consuming its queue[\s\S]*no broker here/,
    );
    expect(await queueExists(names(prefix).stepQueue('overhead'))).toBe(false);
  }, 30_000);
});

import { answering, type StepMessage, type StepResult } from '@tasker/protocol';
import type { Orchestrator } from '@tasker/orchestrator';

/**
 * Plays a worker by hand: the test sees each raw step message and decides what to publish,
 * so it can send duplicates, stale attempts and malformed results on purpose.
 */
export class ManualWorker {
  readonly received: Array<StepMessage & { receivedAt: number }> = [];
  /** Each delivery's `type` and how many steps it carried (a `steps` message carries several). */
  readonly deliveries: Array<{ type: string; steps: string[] }> = [];
  private waiters: Array<() => void> = [];

  private constructor(private readonly o: Orchestrator) {}

  static async start(o: Orchestrator, namespace: string): Promise<ManualWorker> {
    const w = new ManualWorker(o);
    await o.broker.consume(o.names.stepQueue(namespace), { prefetch: 100 }, (d) => {
      const body = JSON.parse(d.body.toString()) as StepMessage | { message_type: 'steps'; steps: StepMessage[] };
      const steps = body.message_type === 'steps' ? body.steps : [body];
      w.deliveries.push({ type: String(d.message.properties.type), steps: steps.map((s) => s.step_id) });
      for (const m of steps) w.received.push({ ...m, receivedAt: Date.now() });
      d.ack();
      for (const f of w.waiters.splice(0)) f();
    });
    return w;
  }

  /** Waits until `count` step messages have arrived in all. */
  async waitFor(count: number, timeoutMs = 10000): Promise<StepMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`expected ${count} step messages, got ${this.received.length}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.received.slice(0, count);
  }

  result(m: StepMessage, outcome: Outcome): StepResult {
    return resultFor(m, outcome);
  }

  /** Publishes a result (or any raw body) to the results exchange. */
  async publish(body: StepResult | string | Buffer, routingKey?: string): Promise<void> {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const key = routingKey ?? (typeof body === 'object' && !Buffer.isBuffer(body) ? body.namespace : 'unknown');
    await this.o.broker.publish(this.o.names.resultsExchange, key, buf);
  }

  succeed(m: StepMessage, result: unknown = { ok: true }): Promise<void> {
    return this.publish(this.result(m, { result }));
  }
}

type Outcome = { result: unknown } | { error: Extract<StepResult, { status: 'failure' }>['error'] };

/** A worker's result for a step message, as a test wants it to be. */
export function resultFor(m: StepMessage, outcome: Outcome): StepResult {
  const base = {
    ...answering(m),
    started_at: new Date().toISOString(),
    finished_at: new Date().toISOString(),
  };
  return 'error' in outcome
    ? { ...base, status: 'failure', error: outcome.error }
    : { ...base, status: 'success', result: outcome.result as never };
}

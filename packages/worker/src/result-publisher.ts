import { Limits, STEP_RESULTS_SHAPE, encodeBatch, type StepResult } from '@tasker/protocol';
import type { Broker } from '@tasker/transport';

/** A `step_results` message stays under half the message limit (each result is at most 1 MiB). */
const MAX_BATCH_BYTES = Limits.maxMessageBytes / 2;

interface Pending {
  result: StepResult;
  body: string;
  /** The body's size in bytes (a message's limit is in bytes, not characters). */
  bytes: number;
  correlationId: string;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Publishes a worker's step results, several in one message when several are ready at
 * once (issue 7: each message costs the broker as much as a step's whole database work).
 *
 * While a publish waits for the broker's confirm, results that become ready are held and
 * go out together when it is confirmed, as one `step_results` message; a result ready
 * while nothing is in flight goes out at once, as a plain `step_result`, so a lone step
 * waits for nothing. Each caller's promise settles with the confirm of the message that
 * carried its result: the caller acks its step only then.
 */
export class ResultPublisher {
  private pending: Pending[] = [];
  private inFlight = false;

  constructor(
    private readonly broker: Broker,
    private readonly options: { exchange: string; routingKey: string; userId: string },
  ) {}

  /** Resolves once the broker confirmed the message carrying `result`; rejects if it did not. */
  publish(result: StepResult, correlationId: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const body = JSON.stringify(result);
      this.pending.push({ result, body, bytes: Buffer.byteLength(body), correlationId, resolve, reject });
      if (!this.inFlight) this.flush();
    });
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const batch = this.take();
    this.inFlight = true;
    this.send(batch).then(
      () => batch.forEach((p) => p.resolve()),
      (err: unknown) => batch.forEach((p) => p.reject(err)),
    ).finally(() => {
      this.inFlight = false;
      this.flush();
    });
  }

  /** The next message's results: as many as fit, at least one. */
  private take(): Pending[] {
    let bytes = 0;
    let n = 0;
    while (n < this.pending.length && n < Limits.maxResultsPerMessage) {
      bytes += this.pending[n]!.bytes + 1;
      if (n > 0 && bytes > MAX_BATCH_BYTES) break;
      n += 1;
    }
    return this.pending.splice(0, n);
  }

  private send(batch: Pending[]): Promise<void> {
    const common = { persistent: true, contentType: 'application/json', userId: this.options.userId };
    if (batch.length === 1) {
      const [only] = batch as [Pending];
      return this.broker.publish(this.options.exchange, this.options.routingKey, Buffer.from(only.body), {
        ...common,
        messageId: `${only.result.step_id}:${only.result.attempt}`,
        correlationId: only.correlationId,
        type: 'step_result',
      });
    }
    const body = encodeBatch(STEP_RESULTS_SHAPE, batch.map((p) => p.body));
    const first = batch[0]!.result;
    return this.broker.publish(this.options.exchange, this.options.routingKey, Buffer.from(body), {
      ...common,
      messageId: `${first.step_id}:${first.attempt}+${batch.length - 1}`,
      type: 'step_results',
    });
  }
}

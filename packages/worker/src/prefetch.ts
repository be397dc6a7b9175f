/**
 * The step queue consumer's prefetch, following how many steps the messages carry.
 *
 * Prefetch counts messages, not steps. With one step per message, prefetch = concurrency
 * fills every slot and holds nothing back. With `steps` messages of N steps
 * (TASKER_STEPS_PER_MESSAGE) the same prefetch would let one worker hold concurrency × N
 * steps, waiting for its slots while other workers of the namespace sit idle. So the worker
 * asks for enough messages for twice its slots plus one message: ceil(2 × concurrency / N)
 * + 1, at most concurrency, N being a moving average of the steps per message received.
 * Twice, not once: a smaller window costs the broker more per step (more, smaller credit
 * rounds; measured in the diamond benchmark: RabbitMQ's CPU per step +20–35 % at once, +10–20 %
 * at twice, bench/RESULTS.md, session 7).
 */
export class PrefetchTuner {
  /** Moving average of steps per message (each message weighs WEIGHT). */
  private average = 1;
  private applied: number;
  private changing = false;
  private lastChange = -Infinity;

  constructor(readonly concurrency: number) {
    this.applied = concurrency;
  }

  /** The prefetch the broker was last told. */
  get current(): number {
    return this.applied;
  }

  /** The prefetch for the average so far, before rounding up. */
  private get exact(): number {
    return Math.min(this.concurrency, (2 * this.concurrency) / this.average + 1);
  }

  /**
   * Counts a message of `steps` steps; returns the prefetch to ask the broker for, or null to
   * keep the current one. The value held P stays while the exact one is within
   * (P - 2, P + 1], so an average wobbling across a rounding boundary changes nothing; changes
   * go one at a time, at most once every MIN_INTERVAL_MS (each subscribes again; see
   * Consumer.setPrefetch).
   */
  observe(steps: number, now = Date.now()): number | null {
    this.average += (Math.max(1, steps) - this.average) * WEIGHT;
    const exact = this.exact;
    const within = exact > this.applied - 2 && exact <= this.applied + 1;
    if (this.changing || within || now - this.lastChange < MIN_INTERVAL_MS) return null;
    this.changing = true;
    this.lastChange = now;
    return Math.ceil(exact);
  }

  /** The broker accepted `prefetch` (or, with `null`, the change failed and may be tried again). */
  settled(prefetch: number | null): void {
    this.changing = false;
    if (prefetch !== null) this.applied = prefetch;
  }
}

const WEIGHT = 0.25;
const MIN_INTERVAL_MS = 1000;

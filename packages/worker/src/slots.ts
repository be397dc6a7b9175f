/**
 * Counts handlers that are running. The consumer's prefetch equals the slot count, so a
 * lone step message waits here only while a slot is held by a handler that outlived its
 * deadline (its step was answered and acked, but the function still runs; such a slot is
 * freed when the function returns, or after the worker's overrun grace period, whichever
 * comes first); the steps of a `steps` message beyond the slot count wait here too.
 */
export class Slots {
  private busy = 0;
  private readonly waiting: Array<(release: () => void) => void> = [];

  constructor(readonly size: number) {}

  get inUse(): number {
    return this.busy;
  }

  get available(): number {
    return this.size - this.busy;
  }

  /** Resolves with the release function once a slot is free; rejects with `signal.reason` if aborted first. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.busy < this.size) {
      this.busy += 1;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const grant = (release: () => void): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(release);
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(grant);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(grant);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, so `busy` does not change.
      if (next) next(this.releaser());
      else this.busy -= 1;
    };
  }
}

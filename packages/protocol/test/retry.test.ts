import { describe, expect, it } from 'vitest';
import {
  computeBackoffMs,
  DEFAULT_RETRY_POLICY,
  JITTER_FRACTION,
  retryDelayBoundsMs,
  retryDelayMs,
  type RetryPolicy,
} from '../src/index.ts';

const policy = (p: Partial<RetryPolicy>): RetryPolicy => ({ ...DEFAULT_RETRY_POLICY, ...p });

describe('computeBackoffMs', () => {
  it('doubles from the base delay for exponential backoff', () => {
    const p = policy({ backoff: 'exponential', baseDelayMs: 100 });
    expect([1, 2, 3, 4, 5].map((n) => computeBackoffMs(p, n))).toEqual([100, 200, 400, 800, 1600]);
  });

  it('uses the multiplier for exponential backoff', () => {
    const p = policy({ backoff: 'exponential', baseDelayMs: 100, multiplier: 3 });
    expect([1, 2, 3].map((n) => computeBackoffMs(p, n))).toEqual([100, 300, 900]);
  });

  it('grows by the base delay per failed attempt for linear backoff', () => {
    const p = policy({ backoff: 'linear', baseDelayMs: 250 });
    expect([1, 2, 3, 4].map((n) => computeBackoffMs(p, n))).toEqual([250, 500, 750, 1000]);
  });

  it('always waits the base delay for fixed backoff', () => {
    const p = policy({ backoff: 'fixed', baseDelayMs: 700 });
    expect([1, 2, 9].map((n) => computeBackoffMs(p, n))).toEqual([700, 700, 700]);
  });

  it('never waits for backoff none', () => {
    const p = policy({ backoff: 'none', baseDelayMs: 700 });
    expect([1, 2, 9].map((n) => computeBackoffMs(p, n))).toEqual([0, 0, 0]);
  });

  it('caps every kind at maxDelayMs', () => {
    expect(computeBackoffMs(policy({ backoff: 'exponential', baseDelayMs: 1000, maxDelayMs: 5000 }), 4)).toBe(5000);
    expect(computeBackoffMs(policy({ backoff: 'linear', baseDelayMs: 1000, maxDelayMs: 2500 }), 3)).toBe(2500);
    expect(computeBackoffMs(policy({ backoff: 'fixed', baseDelayMs: 1000, maxDelayMs: 600 }), 1)).toBe(600);
  });

  it('stays at the cap for very late attempts instead of overflowing', () => {
    expect(computeBackoffMs(policy({ baseDelayMs: 1000, maxDelayMs: 300_000 }), 5000)).toBe(300_000);
  });

  it('treats attempt numbers below 1 as the first attempt', () => {
    const p = policy({ baseDelayMs: 100 });
    expect(computeBackoffMs(p, 0)).toBe(100);
    expect(computeBackoffMs(p, -3)).toBe(100);
  });

  it('rounds a fractional delay to whole milliseconds', () => {
    expect(computeBackoffMs(policy({ baseDelayMs: 100, multiplier: 1.5 }), 3)).toBe(225);
    expect(computeBackoffMs(policy({ baseDelayMs: 10, multiplier: 1.55 }), 2)).toBe(16);
  });
});

describe('retryDelayMs', () => {
  const p = policy({ backoff: 'exponential', baseDelayMs: 1000, maxDelayMs: 60_000 });

  it('uses the full computed delay when the random draw is 0', () => {
    expect(retryDelayMs(p, 3, null, () => 0)).toBe(4000);
  });

  it('shortens the delay to 75% when the random draw is 1', () => {
    expect(JITTER_FRACTION).toBe(0.25);
    expect(retryDelayMs(p, 3, null, () => 1)).toBe(3000);
  });

  it('interpolates between the two for a draw in between', () => {
    expect(retryDelayMs(p, 3, undefined, () => 0.5)).toBe(3500);
  });

  it('uses a handler retry-after as given, without jitter', () => {
    expect(retryDelayMs(p, 1, 12_345, () => 1)).toBe(12_345);
    expect(retryDelayMs(p, 1, 0, () => 1)).toBe(0);
  });

  it('caps a handler retry-after at maxDelayMs', () => {
    expect(retryDelayMs(p, 1, 3_600_000, () => 0)).toBe(60_000);
  });

  it('never returns a negative delay for a negative retry-after', () => {
    expect(retryDelayMs(p, 1, -5, () => 0)).toBe(0);
  });

  it('stays within retryDelayBoundsMs for many draws', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (const backoff of ['exponential', 'linear', 'fixed', 'none'] as const) {
      const q = policy({ backoff, baseDelayMs: 333, maxDelayMs: 10_000 });
      for (let attempt = 1; attempt <= 8; attempt++) {
        const [low, high] = retryDelayBoundsMs(q, attempt);
        for (let i = 0; i < 50; i++) {
          const d = retryDelayMs(q, attempt, null, random);
          expect(d).toBeGreaterThanOrEqual(low);
          expect(d).toBeLessThanOrEqual(high);
        }
      }
    }
  });
});

describe('retryDelayBoundsMs', () => {
  it('spans 75% to 100% of the computed delay', () => {
    expect(retryDelayBoundsMs(policy({ baseDelayMs: 1000 }), 2)).toEqual([1500, 2000]);
  });

  it('rounds the lower bound down', () => {
    expect(retryDelayBoundsMs(policy({ backoff: 'fixed', baseDelayMs: 333 }), 1)).toEqual([249, 333]);
  });

  it('has the cap as its upper bound once the cap is reached', () => {
    expect(retryDelayBoundsMs(policy({ baseDelayMs: 1000, maxDelayMs: 3000 }), 10)).toEqual([2250, 3000]);
  });

  it('is [0, 0] for backoff none', () => {
    expect(retryDelayBoundsMs(policy({ backoff: 'none' }), 4)).toEqual([0, 0]);
  });
});

import { describe, expect, it } from 'vitest';
import { PrefetchTuner } from '../src/prefetch.ts';

let clock = 0;
/** When feed last applied a change. */
let lastChangeAt = 0;

/** Feeds messages of `steps` steps, `every` ms apart, applying every change asked for; returns the changes. */
function feed(t: PrefetchTuner, steps: number, count: number, every = 100): number[] {
  const asked: number[] = [];
  for (let i = 0; i < count; i++) {
    clock += every;
    const want = t.observe(steps, clock);
    if (want !== null) {
      asked.push(want);
      lastChangeAt = clock;
      t.settled(want);
    }
  }
  return asked;
}

describe('PrefetchTuner', () => {
  it('keeps prefetch = concurrency while messages carry one step each', () => {
    const t = new PrefetchTuner(50);
    expect(feed(t, 1, 100)).toEqual([]);
    expect(t.current).toBe(50);
  });

  it('with 16 steps per message asks for twice the slots in messages, plus one', () => {
    const t = new PrefetchTuner(50);
    feed(t, 16, 60);
    // ceil(2 × 50 / 16) + 1 = 8 messages: 128 steps held at most, not 50 × 16 = 800.
    expect(t.current).toBe(8);
    const small = new PrefetchTuner(4);
    feed(small, 16, 60);
    expect(small.current).toBe(2); // one message running, one waiting
  });

  it('moves in a few steps, not on every message, and goes back to concurrency when packing stops', () => {
    const t = new PrefetchTuner(50);
    const down = feed(t, 16, 60);
    expect(down).toEqual([23, 8]); // 100 ms apart: a change a second at most
    // Sizes alternating around the same average: no change is asked for.
    expect(Array.from({ length: 40 }, (_, i) => feed(t, i % 2 ? 12 : 20, 1)).flat()).toEqual([]);
    const up = feed(t, 1, 60);
    expect(up.at(-1)).toBe(50);
    expect(t.current).toBe(50);
  });

  it('asks for one change at a time; a failed change is asked for again', () => {
    const t = new PrefetchTuner(50);
    let want: number | null = null;
    for (let i = 0; i < 20 && want === null; i++) want = t.observe(16, (clock += 100));
    expect(want).not.toBeNull();
    expect(t.observe(16, (clock += 5000))).toBeNull(); // in flight
    t.settled(null); // the channel was closed
    expect(t.current).toBe(50);
    expect(t.observe(16, (clock += 5000))).not.toBeNull();
  });

  it('asks for at most one change a second', () => {
    const t = new PrefetchTuner(50);
    expect(feed(t, 16, 50, 10)).toHaveLength(1); // 50 messages in half a second
    expect(t.observe(16, lastChangeAt + 1000)).not.toBeNull(); // a second after the first change
  });

  it('never asks for less than one message, whatever the messages carry', () => {
    const t = new PrefetchTuner(1);
    expect(feed(t, 100, 50)).toEqual([]);
    expect(t.current).toBe(1);
  });
});

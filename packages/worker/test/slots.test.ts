import { describe, expect, it } from 'vitest';
import { Slots } from '../src/slots.ts';

describe('Slots', () => {
  it('grants up to size at once and hands a released slot to the oldest waiter', async () => {
    const slots = new Slots(2);
    const r1 = await slots.acquire();
    await slots.acquire();
    const order: number[] = [];
    const w3 = slots.acquire().then((r) => (order.push(3), r));
    const w4 = slots.acquire().then((r) => (order.push(4), r));
    expect(slots.available).toBe(0);
    r1();
    r1(); // releasing twice frees one slot only
    await w3;
    expect(order).toEqual([3]);
    expect(slots.inUse).toBe(2);
    (await w3)();
    await w4;
    expect(order).toEqual([3, 4]);
  });

  it('a waiter whose signal aborts leaves the queue with the abort reason', async () => {
    const slots = new Slots(1);
    const release = await slots.acquire();
    const ac = new AbortController();
    const waiting = slots.acquire(ac.signal);
    ac.abort(new Error('stopping'));
    await expect(waiting).rejects.toThrow('stopping');
    release();
    expect(slots.inUse).toBe(0);
  });
});

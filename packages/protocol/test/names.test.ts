import { describe, expect, it } from 'vitest';
import {
  coreTopology,
  DEFAULT_TOPOLOGY_OPTIONS,
  DELAY_LEVELS,
  delayRoutingKey,
  MAX_DELAY_MS,
  names,
  namespaceTopology,
  type Topology,
} from '../src/index.ts';

const n = names('tasker.test');

function words(key: string): string[] {
  return key.split('.');
}

describe('delayRoutingKey', () => {
  it('has one word per delay level, then the namespace', () => {
    const w = words(delayRoutingKey(5, 'payments'));
    expect(w).toHaveLength(DELAY_LEVELS + 1);
    expect(DELAY_LEVELS).toBe(28);
    expect(w[DELAY_LEVELS]).toBe('payments');
  });

  it('writes the bits most significant first', () => {
    const key = delayRoutingKey(5, 'payments');
    expect(key).toBe(`${'0.'.repeat(DELAY_LEVELS - 3)}1.0.1.payments`);
    expect(delayRoutingKey(6, 'payments').endsWith('.1.1.0.payments')).toBe(true);
    expect(delayRoutingKey(2 ** 27, 'ns')).toBe(`1.${'0.'.repeat(DELAY_LEVELS - 1)}ns`);
  });

  it('encodes 0 ms as all zero bits', () => {
    expect(delayRoutingKey(0, 'ns')).toBe(`${'0.'.repeat(DELAY_LEVELS)}ns`);
  });

  it('reads back as the delay it encodes', () => {
    for (const d of [1, 2, 3, 77, 1000, 123_456, 86_400_000, MAX_DELAY_MS]) {
      const bits = words(delayRoutingKey(d, 'ns')).slice(0, DELAY_LEVELS).join('');
      expect(parseInt(bits, 2)).toBe(d);
    }
  });

  it('clamps a delay above MAX_DELAY_MS to MAX_DELAY_MS', () => {
    expect(MAX_DELAY_MS).toBe(2 ** 28 - 1);
    expect(delayRoutingKey(MAX_DELAY_MS + 1, 'ns')).toBe(`${'1.'.repeat(DELAY_LEVELS)}ns`);
    expect(delayRoutingKey(10 * MAX_DELAY_MS, 'ns')).toBe(delayRoutingKey(MAX_DELAY_MS, 'ns'));
  });

  it('clamps a negative delay to 0 and rounds fractions', () => {
    expect(delayRoutingKey(-50, 'ns')).toBe(delayRoutingKey(0, 'ns'));
    expect(delayRoutingKey(4.6, 'ns')).toBe(delayRoutingKey(5, 'ns'));
  });
});

describe('names', () => {
  it('uses the tasker prefix by default', () => {
    const d = names();
    expect(d.prefix).toBe('tasker');
    expect(d.stepQueue('payments')).toBe('tasker.steps.payments');
    expect(d.delayLevel(3)).toBe('tasker.delay.03');
  });

  it.each(['', 'Tasker', 'tasker.', '.tasker', 'tasker..x', 'tasker-x', 'tasker.1x', 'tasker x', 'tasker.#'])(
    'refuses the prefix %j',
    (prefix) => {
      expect(() => names(prefix)).toThrow(/prefix/);
    },
  );

  it.each(['tasker', 'ci', 'test.run_1', 'a.b.c'])('accepts the prefix %j', (prefix) => {
    expect(names(prefix).prefix).toBe(prefix);
  });

  it('starts every exchange and queue name with the prefix, and never reuses a name across kinds', () => {
    const t = coreTopology(n);
    for (const x of [...t.exchanges, ...t.queues]) expect(x.name.startsWith('tasker.test.')).toBe(true);
    const exchanges = new Set(t.exchanges.map((e) => e.name));
    const queues = new Set(t.queues.map((q) => q.name));
    expect(exchanges.size).toBe(t.exchanges.length);
    expect(queues.size).toBe(t.queues.length);
  });
});

describe('coreTopology delay levels', () => {
  const t = coreTopology(n);
  const queue = (name: string) => t.queues.find((q) => q.name === name);

  it('declares one topic exchange and one queue per level', () => {
    for (let k = 0; k < DELAY_LEVELS; k++) {
      expect(t.exchanges).toContainEqual({ name: n.delayLevel(k), type: 'topic' });
      expect(queue(n.delayLevel(k)), `queue of level ${k}`).toBeDefined();
    }
  });

  it('holds messages in level k for 2^k ms, then dead-letters them to level k-1, and level 0 to the due exchange', () => {
    for (let k = 0; k < DELAY_LEVELS; k++) {
      const args = queue(n.delayLevel(k))!.arguments;
      expect(args['x-message-ttl'], `TTL of level ${k}`).toBe(2 ** k);
      expect(args['x-dead-letter-exchange'], `dead-letter exchange of level ${k}`).toBe(
        k === 0 ? n.delayDueExchange : n.delayLevel(k - 1),
      );
      // Keeping the routing key on dead-lettering is what carries the remaining bits on.
      expect(args['x-dead-letter-routing-key']).toBeUndefined();
    }
  });

  it('makes level k look at word DELAY_LEVELS-1-k of the key: 1 into its queue, 0 straight to the next level', () => {
    for (let k = 0; k < DELAY_LEVELS; k++) {
      const from = t.bindings.filter((b) => b.source === n.delayLevel(k));
      expect(from, `bindings of level ${k}`).toHaveLength(2);
      const next = k === 0 ? n.delayDueExchange : n.delayLevel(k - 1);
      const toQueue = from.find((b) => b.kind === 'queue');
      const toNext = from.find((b) => b.kind === 'exchange');
      expect(toQueue?.destination).toBe(n.delayLevel(k));
      expect(toNext?.destination).toBe(next);
      const expectWord = (pattern: string, bit: string) => {
        const w = words(pattern);
        const i = DELAY_LEVELS - 1 - k;
        expect(w.slice(0, i).every((x) => x === '*'), pattern).toBe(true);
        expect(w[i], pattern).toBe(bit);
        expect(w.slice(i + 1), pattern).toEqual(['#']);
      };
      expectWord(toQueue!.pattern, '1');
      expectWord(toNext!.pattern, '0');
    }
  });

  it('routes everything reaching the due exchange to the retries queue', () => {
    expect(t.exchanges).toContainEqual({ name: n.delayDueExchange, type: 'topic' });
    expect(t.bindings).toContainEqual({
      kind: 'queue',
      destination: n.retriesQueue,
      source: n.delayDueExchange,
      pattern: '#',
    });
  });

  it('makes work queues quorum queues by default and classic on request', () => {
    expect(DEFAULT_TOPOLOGY_OPTIONS.queueType).toBe('quorum');
    expect(queue(n.retriesQueue)!.arguments['x-queue-type']).toBe('quorum');
    const classic = coreTopology(n, { queueType: 'classic', deliveryLimit: 5 });
    expect(classic.queues.find((q) => q.name === n.retriesQueue)!.arguments['x-queue-type']).toBe('classic');
  });

  it('gives the results queue its own type when asked, and the work queue type otherwise', () => {
    const typeOf = (tp: ReturnType<typeof coreTopology>, name: string) => tp.queues.find((q) => q.name === name)!.arguments['x-queue-type'];
    const mixed = coreTopology(n, { queueType: 'quorum', resultsQueueType: 'classic', deliveryLimit: 5 });
    expect(mixed.queues.find((q) => q.name === n.resultsQueue)!.arguments).toEqual({ 'x-queue-type': 'classic' });
    for (const name of [n.taskRequestsQueue, n.retriesQueue, n.deadLetterQueue, n.poisonQueue]) expect(typeOf(mixed, name)).toBe('quorum');
    expect(namespaceTopology(n, 'payments', { queueType: 'quorum', resultsQueueType: 'classic', deliveryLimit: 5 }).queues[0]!.arguments['x-queue-type']).toBe('quorum');
    expect(typeOf(coreTopology(n, { queueType: 'classic', resultsQueueType: 'quorum', deliveryLimit: 5 }), n.resultsQueue)).toBe('quorum');
    expect(typeOf(coreTopology(n, { queueType: 'classic', deliveryLimit: 5 }), n.resultsQueue)).toBe('classic');
    expect(typeOf(t, n.resultsQueue)).toBe('quorum');
  });
});

/** AMQP topic matching: `*` is exactly one word, `#` zero or more. */
function topicMatches(pattern: string, key: string): boolean {
  const p = words(pattern);
  const k = words(key);
  const match = (i: number, j: number): boolean => {
    if (i === p.length) return j === k.length;
    if (p[i] === '#') {
      for (let jj = j; jj <= k.length; jj++) if (match(i + 1, jj)) return true;
      return false;
    }
    if (j === k.length) return false;
    return (p[i] === '*' || p[i] === k[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}

interface Arrival {
  queue: string;
  elapsedMs: number;
  path: string[];
}

/**
 * Publishes `key` to `exchange` in a model of the broker built only from `topology`: bindings
 * are followed by their type's matching rule; a queue with a TTL and a dead-letter exchange
 * (nobody consumes delay queues) re-publishes after its TTL with the same routing key; any
 * other queue is where the message arrives. Returns every arrival (fan-out is visible).
 */
function simulate(topology: Topology, exchange: string, key: string): Arrival[] {
  const arrivals: Arrival[] = [];
  const exchangeType = new Map(topology.exchanges.map((e) => [e.name, e.type]));
  const queueArgs = new Map(topology.queues.map((q) => [q.name, q.arguments]));
  const visit = (ex: string, elapsedMs: number, path: string[], hops: number): void => {
    if (hops > 4 * DELAY_LEVELS) throw new Error(`routing loop: ${path.join(' > ')}`);
    const type = exchangeType.get(ex);
    if (!type) throw new Error(`message published to undeclared exchange ${ex}`);
    for (const b of topology.bindings.filter((x) => x.source === ex)) {
      const matches = type === 'topic' ? topicMatches(b.pattern, key) : type === 'fanout' || b.pattern === key;
      if (!matches) continue;
      if (b.kind === 'exchange') {
        visit(b.destination, elapsedMs, [...path, `exchange ${b.destination}`], hops + 1);
        continue;
      }
      const args = queueArgs.get(b.destination);
      if (!args) throw new Error(`binding to undeclared queue ${b.destination}`);
      const ttl = args['x-message-ttl'];
      const dlx = args['x-dead-letter-exchange'];
      if (typeof ttl === 'number' && typeof dlx === 'string') {
        visit(dlx, elapsedMs + ttl, [...path, `queue ${b.destination} (${ttl} ms)`], hops + 1);
      } else {
        arrivals.push({ queue: b.destination, elapsedMs, path: [...path, `queue ${b.destination}`] });
      }
    }
  };
  visit(exchange, 0, [`exchange ${exchange}`], 0);
  return arrivals;
}

describe('routing a delayed message through the delay levels', () => {
  const t = coreTopology(n);

  it.each([0, 1, 2, 5, 77, 1000, 123_456, 60 * 60 * 1000, MAX_DELAY_MS])(
    'delivers a %d ms delay once to the retries queue after exactly that long',
    (delay) => {
      const arrivals = simulate(t, n.delayLevel(DELAY_LEVELS - 1), delayRoutingKey(delay, 'payments'));
      expect(arrivals.map((a) => a.queue)).toEqual([n.retriesQueue]);
      expect(arrivals[0]!.elapsedMs).toBe(delay);
    },
  );

  it('visits only the delay queues of the bits that are set', () => {
    const [a] = simulate(t, n.delayLevel(DELAY_LEVELS - 1), delayRoutingKey(5, 'payments'));
    expect(a!.path.filter((p) => p.startsWith('queue '))).toEqual([
      `queue ${n.delayLevel(2)} (4 ms)`,
      `queue ${n.delayLevel(0)} (1 ms)`,
      `queue ${n.retriesQueue}`,
    ]);
  });
});

describe('namespaceTopology', () => {
  it('binds the namespace step queue to the steps exchange by the namespace name', () => {
    const t = namespaceTopology(n, 'payments');
    expect(t.queues.map((q) => q.name)).toEqual(['tasker.test.steps.payments']);
    expect(t.bindings).toEqual([
      { kind: 'queue', destination: 'tasker.test.steps.payments', source: n.stepsExchange, pattern: 'payments' },
    ]);
    expect(simulate(t, n.stepsExchange, 'payments').map((a) => a.queue)).toEqual([
      'tasker.test.steps.payments',
    ]);
    expect(simulate(t, n.stepsExchange, 'customer_success')).toEqual([]);
  });

  it('dead-letters step messages over the delivery limit on quorum queues to the poison queue, not the parked dead letters', () => {
    const args = namespaceTopology(n, 'payments', { queueType: 'quorum', deliveryLimit: 7 }).queues[0]!.arguments;
    expect(args).toEqual({
      'x-queue-type': 'quorum',
      'x-dead-letter-exchange': n.poisonExchange,
      'x-delivery-limit': 7,
    });
    expect(n.poisonQueue).not.toBe(n.deadLetterQueue);
    expect(simulate(coreTopology(n), n.poisonExchange, 'payments').map((a) => a.queue)).toEqual([n.poisonQueue]);
  });

  it('sets no delivery limit on classic queues, which do not support it', () => {
    const args = namespaceTopology(n, 'payments', { queueType: 'classic', deliveryLimit: 7 }).queues[0]!.arguments;
    expect(args['x-delivery-limit']).toBeUndefined();
    expect(args['x-queue-type']).toBe('classic');
  });
});

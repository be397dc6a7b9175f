import { describe, expect, it } from 'vitest';
import { Limits, PROTOCOL_VERSION, STEP_MESSAGES_SHAPE, StepMessage, StepMessages, decodeMessage, decodeOneOrMany, names } from '@tasker/protocol';
import type { OutgoingMessage } from '../src/outbox/outbox.ts';
import { packStepGroups, packSteps, stepOutgoing } from '../src/tasks/step-messages.ts';

const n = names('pack');

function step(namespace: string, i: number, extra = ''): OutgoingMessage {
  const m: StepMessage = {
    protocol_version: PROTOCOL_VERSION,
    message_type: 'step',
    task_id: `tsk_${String(i).padStart(20, '0')}`,
    namespace,
    task_name: 'fan',
    task_version: '1.0.0',
    correlation_id: `tsk_${String(i).padStart(20, '0')}`,
    step_id: `stp_${String(i).padStart(20, '0')}`,
    step_name: 'a',
    attempt: 1,
    max_attempts: 3,
    timeout_ms: null,
    handler: { callable: 'a', method: null, initialization: {} },
    input: extra ? { extra } : {},
    dependency_results: {},
    idempotency_key: `stp_${String(i).padStart(20, '0')}:1`,
    dispatched_at: new Date(0).toISOString(),
  };
  return stepOutgoing(n, m);
}

const retry: OutgoingMessage = { exchange: n.delayDueExchange, routingKey: 'x', body: '{}', properties: { type: 'retry_due' } };

describe('packing step messages (TASKER_STEPS_PER_MESSAGE)', () => {
  it('puts steps of one namespace together, at most max per message, and leaves other messages alone', () => {
    const input = [step('a', 1), step('b', 2), retry, step('a', 3), step('a', 4), step('a', 5), step('a', 6)];
    const out = packSteps(n, input, 2);
    expect(out).toContain(retry);
    const packed = out.filter((m) => m.properties.type === 'steps');
    expect(packed.map((m) => m.routingKey)).toEqual(['a', 'a']);
    // The fifth step of 'a' and the lone one of 'b' go as they were.
    expect(out.filter((m) => m.properties.type === 'step')).toEqual([input[6], input[1]]);
    for (const m of packed) {
      expect(m).toMatchObject({ exchange: n.stepsExchange, properties: { persistent: true, contentType: 'application/json' } });
      expect(decodeMessage(StepMessages, m.body, 'steps message').ok).toBe(true);
    }
    // Each step inside is exactly the message that would have gone alone.
    const first = decodeOneOrMany(StepMessage, STEP_MESSAGES_SHAPE, packed[0]!.body, 'step message');
    if (!first.ok) throw first.error;
    expect(first.value.map((p) => (p.decoded.ok ? JSON.stringify(p.decoded.value) : null))).toEqual([input[0]!.body, input[3]!.body]);
    expect(packed[0]!.properties.messageId).toBe(`${String(input[0]!.properties.messageId)}+1`);
  });

  it('with max 1 the messages come back unchanged', () => {
    const input = [step('a', 1), step('a', 2)];
    expect(packSteps(n, input, 1)).toBe(input);
    expect(packStepGroups(n, input, 1).map((g) => g.parts)).toEqual([[input[0]], [input[1]]]);
  });

  it('keeps each message under half the message limit: big steps go in fewer to a message', () => {
    const big = 'x'.repeat(Math.floor(Limits.maxMessageBytes / 5));
    const input = [1, 2, 3, 4, 5].map((i) => step('a', i, big));
    const groups = packStepGroups(n, input, 100);
    expect(groups.map((g) => g.parts.length)).toEqual([2, 2, 1]);
    for (const g of groups) expect(Buffer.byteLength(g.message.body)).toBeLessThanOrEqual(Limits.maxMessageBytes / 2);
    expect(groups.flatMap((g) => g.parts)).toEqual(input);
  });
});

import { describe, expect, it } from 'vitest';
import { DEFAULT_AMQP_URL, resolveWorkerOptions } from '../src/index.ts';

const handlers = { validate: () => 1 };

describe('worker options', () => {
  it('fills defaults, and the environment fills what the options leave out', () => {
    const o = resolveWorkerOptions({ namespace: 'payments', handlers }, {});
    expect(o).toMatchObject({ namespace: 'payments', concurrency: 10, shutdownGraceMs: 10_000, amqpUrl: DEFAULT_AMQP_URL });
    expect(o.names.stepQueue('payments')).toBe('tasker.steps.payments');
    expect(o.workerId).toMatch(/^.+:\d+:.{6}$/);

    const env = { TASKER_AMQP_URL: 'amqp://u:p@rabbit:5672/vh', TASKER_AMQP_PREFIX: 'staging.tasker', TASKER_LOG_LEVEL: 'debug' };
    const fromEnv = resolveWorkerOptions({ namespace: 'payments', handlers }, env);
    expect(fromEnv.amqpUrl).toBe('amqp://u:p@rabbit:5672/vh');
    expect(fromEnv.names.stepQueue('payments')).toBe('staging.tasker.steps.payments');
    expect(fromEnv.logger.level).toBe('debug');

    const explicit = resolveWorkerOptions({ namespace: 'payments', handlers, prefix: 'mine', amqpUrl: 'amqp://x' }, env);
    expect(explicit.names.prefix).toBe('mine');
    expect(explicit.amqpUrl).toBe('amqp://x');
  });

  it('refuses bad options with one sentence naming every problem and where it came from', () => {
    expect(() =>
      resolveWorkerOptions(
        { namespace: 'Payments', handlers: { x: 'not a function' as never }, concurrency: 0, workerId: '' },
        { TASKER_AMQP_PREFIX: 'Bad Prefix', TASKER_AMQP_URL: 'http://nope' },
      ),
    ).toThrow(
      /namespace: .*; handlers\.x: must be a function.*; concurrency: .*; amqpUrl \(from TASKER_AMQP_URL\): must be an amqp:\/\/ or amqps:\/\/ URL; prefix \(from TASKER_AMQP_PREFIX\): .*; workerId: /,
    );
    expect(() => resolveWorkerOptions({ namespace: 'payments', handlers: {} }, {})).toThrow(/handlers: needs at least one handler/);
  });
});

import { compileTemplate, type CompiledTemplate } from '@tasker/protocol';
import { MISSING_CALLABLE, type ConformanceCallable } from './contract.ts';

/** The kit's templates, by name; each case creates tasks of one of them. */
export const TEMPLATE_NAMES = [
  'conformance_success',
  'conformance_permanent',
  'conformance_retryable',
  'conformance_missing_handler',
  'conformance_dependencies',
  'conformance_initialization',
  'conformance_large',
  'conformance_unicode',
  'conformance_timeout',
  'conformance_slow',
  'conformance_delegate',
  'conformance_fan_out',
] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

/** The handler initialization of the initialization case: nested objects, arrays, numbers, booleans, null, unicode. */
export const INITIALIZATION = {
  greeting: 'hej',
  limits: { max: 5, ratio: 0.25, negative: -3 },
  flags: [true, false, null],
  nested: { deep: { list: [1, 'two', 3.5] } },
  'naïve ключ': 'ünïcödé 😀',
} as const;

/** Seconds: the timeout case's step limit. Its handler sleeps longer. */
export const TIMEOUT_SECONDS = 1;

type Step = {
  name: string;
  callable: ConformanceCallable | typeof MISSING_CALLABLE;
  dependencies?: string[];
  retry?: Record<string, unknown>;
  timeout_seconds?: number;
  initialization?: Record<string, unknown>;
};

function template(namespace: string, name: TemplateName, steps: Step[]): CompiledTemplate {
  return compileTemplate(
    {
      name,
      namespace_name: namespace,
      version: '1.0.0',
      description: `Tasker worker conformance: ${name}`,
      steps: steps.map((s) => ({
        name: s.name,
        handler: { callable: s.callable, ...(s.initialization ? { initialization: s.initialization } : {}) },
        dependencies: s.dependencies ?? [],
        retry: s.retry ?? { max_attempts: 1 },
        ...(s.timeout_seconds ? { timeout_seconds: s.timeout_seconds } : {}),
      })),
    },
    { origin: `conformance template ${name}` },
  );
}

/** Every template of the kit, in the namespace under test. */
export function conformanceTemplates(namespace: string): CompiledTemplate[] {
  return [
    template(namespace, 'conformance_success', [{ name: 'succeed', callable: 'conformance_succeed' }]),
    // Three attempts allowed: a permanent error must end the step after the first.
    template(namespace, 'conformance_permanent', [
      { name: 'fail_permanent', callable: 'conformance_fail_permanent', retry: { max_attempts: 3, backoff: 'fixed', backoff_base_ms: 100 } },
    ]),
    // A fixed 10 s backoff: a retry that comes after about 1 s shows the handler's retry-after won.
    template(namespace, 'conformance_retryable', [
      {
        name: 'fail_retryable',
        callable: 'conformance_fail_retryable',
        retry: { max_attempts: 2, backoff: 'fixed', initial_delay: 10, max_delay: 60 },
      },
    ]),
    template(namespace, 'conformance_missing_handler', [
      { name: 'missing', callable: MISSING_CALLABLE, retry: { max_attempts: 3, backoff: 'fixed', backoff_base_ms: 100 } },
    ]),
    template(namespace, 'conformance_dependencies', [
      { name: 'produce', callable: 'conformance_produce' },
      { name: 'consume', callable: 'conformance_consume', dependencies: ['produce'] },
    ]),
    template(namespace, 'conformance_initialization', [
      { name: 'configured', callable: 'conformance_initialization', initialization: { ...INITIALIZATION } },
    ]),
    template(namespace, 'conformance_large', [{ name: 'large', callable: 'conformance_large' }]),
    template(namespace, 'conformance_unicode', [{ name: 'unicode', callable: 'conformance_unicode' }]),
    template(namespace, 'conformance_timeout', [
      { name: 'overrun', callable: 'conformance_sleep', timeout_seconds: TIMEOUT_SECONDS, retry: { retryable: false } },
    ]),
    template(namespace, 'conformance_delegate', [{ name: 'delegate', callable: 'conformance_delegate' }]),
    // One result releases left and right together: they reach the worker in one `steps` message.
    template(namespace, 'conformance_fan_out', [
      { name: 'first', callable: 'conformance_succeed' },
      { name: 'left', callable: 'conformance_succeed', dependencies: ['first'] },
      { name: 'right', callable: 'conformance_succeed', dependencies: ['first'] },
    ]),
    template(namespace, 'conformance_slow', [{ name: 'slow', callable: 'conformance_sleep', retry: { max_attempts: 2 } }]),
  ];
}

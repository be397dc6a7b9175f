import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import amqp from 'amqplib';
import pg from 'pg';
import { pino, destination, type Logger } from 'pino';
import {
  ErrorCode,
  PROTOCOL_VERSION,
  coreTopology,
  names as amqpNames,
  namespaceTopology,
  NAMESPACE_PATTERN,
  type Names,
  type TaskView,
} from '@tasker/protocol';
import { Orchestrator } from '@tasker/orchestrator';
import {
  MISSING_CALLABLE,
  PERMANENT_CODE,
  RETRY_CODE,
  UNICODE_PAYLOAD,
  UNICODE_TEXT,
  largeData,
} from './contract.ts';
import { Observer, type Observed } from './observer.ts';
import { resultProblems } from './schema-check.ts';
import { INITIALIZATION, TIMEOUT_SECONDS, conformanceTemplates, type TemplateName } from './templates.ts';
import { WorkerProcess } from './worker-process.ts';

export interface ConformanceOptions {
  /** The namespace the worker serves; the kit registers its templates there. */
  namespace: string;
  /** The worker's command line; it gets TASKER_AMQP_URL, TASKER_AMQP_PREFIX and TASKER_NAMESPACE. */
  command: readonly string[];
  /** @defaultValue `TASKER_AMQP_URL`, else amqp://guest:guest@127.0.0.1:5672 */
  amqpUrl?: string;
  /** @defaultValue `TASKER_DATABASE_URL`, else postgres://postgres:postgres@127.0.0.1:5432/tasker */
  databaseUrl?: string;
  /** Working directory of the worker command. @defaultValue this process's */
  cwd?: string;
  /** More environment for the worker. */
  env?: NodeJS.ProcessEnv;
  /** Where the worker's output and the orchestrator's warnings go. @defaultValue none (kept in memory, last lines shown on failure) */
  logPath?: string | null;
  /** How long the worker may take to consume its queue, on each start. @defaultValue 60000 */
  startTimeoutMs?: number;
  /** Progress lines (case started, finished). @defaultValue none */
  progress?: (line: string) => void;
}

export interface CaseReport {
  id: string;
  title: string;
  pass: boolean;
  /** What was seen, or what was wrong. */
  detail: string;
  ms: number;
}

export interface ConformanceReport {
  namespace: string;
  prefix: string;
  schema: string;
  cases: CaseReport[];
  pass: boolean;
  /** The worker's last output lines. */
  workerTail: string[];
}

/** The cases, in the order they run and are printed. */
export const CASES = {
  start: 'worker starts and consumes the namespace queue',
  success: 'success: returned value is the result',
  permanent_error: 'permanent error with a code: one attempt, step in error',
  retryable_error: "retryable error with retry-after: retried after the handler's delay",
  handler_not_found: 'unknown callable: permanent HANDLER_NOT_FOUND naming callable, namespace, handlers',
  input_and_dependency: "reads the input, a dependency's result and its own ids",
  initialization: "reads the handler's initialization config",
  large_result: 'large result (700,000 characters)',
  unicode_result: 'unicode-heavy input and result survive unchanged',
  timeout: 'handler overrunning its timeout: HANDLER_TIMEOUT at the deadline',
  create_task_and_wait: "creates a task (task request) and waits for it: completes with the child's outcome",
  malformed_parked: 'malformed step messages parked on the dead-letter exchange with x-tasker-* headers',
  steps_message: 'several steps in one message (steps): each answered; a bad one parked alone',
  redelivery: 'redelivered message (worker killed before ack): same attempt, same idempotency key',
  graceful_shutdown: 'SIGTERM: the running step finishes and is answered, then exit 0',
  one_result_per_attempt: 'exactly one result per attempt (none late, none twice)',
} as const;
export type CaseId = keyof typeof CASES;

class CaseFailure extends Error {}

/** Collects what is wrong in one case; `done()` throws with all of it. */
class Expect {
  readonly problems: string[] = [];
  that(ok: boolean, problem: string): boolean {
    if (!ok) this.problems.push(problem);
    return ok;
  }
  envelope(r: Observed | undefined, e: Parameters<typeof resultProblems>[1], label = 'result'): void {
    if (!r) {
      this.problems.push(`no ${label}`);
      return;
    }
    for (const p of resultProblems(r, e)) this.problems.push(`${label}: ${p}`);
  }
  done(detail: string): string {
    if (this.problems.length > 0) throw new CaseFailure(this.problems.join('; '));
    return detail;
  }
}

type Json = Record<string, unknown>;
type JsonValue = Parameters<Orchestrator['createTasks']>[0][number]['context'][string];
const body = (r: Observed | undefined): Json => (r?.json ?? {}) as Json;
const short = (v: unknown, n = 160): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > n ? `${s.slice(0, n)}…` : s;
};

/**
 * Runs the conformance cases against a worker command and returns the report. Starts an
 * orchestrator in this process on a fresh schema and AMQP prefix, and removes both (and
 * stops the worker) whatever happens.
 */
export async function runConformance(options: ConformanceOptions): Promise<ConformanceReport> {
  const namespace = options.namespace;
  if (!NAMESPACE_PATTERN.test(namespace)) throw new Error(`namespace '${namespace}' is not valid: lower snake case, starting with a letter`);
  if (options.command.length === 0) throw new Error('the worker command is empty');
  const amqpUrl = options.amqpUrl ?? process.env['TASKER_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
  const databaseUrl = options.databaseUrl ?? process.env['TASKER_DATABASE_URL'] ?? 'postgres://postgres:postgres@127.0.0.1:5432/tasker';
  const sfx = randomBytes(4).toString('hex');
  const schema = `conformance_${sfx}`;
  const prefix = `conformance${sfx}`;
  const n = amqpNames(prefix);
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const progress = options.progress ?? (() => undefined);
  const logger: Logger = options.logPath
    ? pino({ level: 'warn', base: { component: 'conformance-orchestrator' } }, destination({ dest: options.logPath, append: true, sync: true }))
    : pino({ level: 'silent' });

  const cases: CaseReport[] = [];
  const report: ConformanceReport = { namespace, prefix, schema, cases, pass: false, workerTail: [] };
  let orchestrator: Orchestrator | null = null;
  let observer: Observer | null = null;
  const worker = new WorkerProcess(
    options.command,
    {
      ...process.env,
      TASKER_LOG_LEVEL: process.env['TASKER_LOG_LEVEL'] ?? 'warn',
      ...(options.env ?? {}),
      TASKER_AMQP_URL: amqpUrl,
      TASKER_AMQP_PREFIX: prefix,
      TASKER_NAMESPACE: namespace,
    },
    options.logPath ?? null,
    options.cwd,
  );

  const run = async (id: CaseId, fn: () => Promise<string>): Promise<boolean> => {
    const t0 = Date.now();
    let pass = true;
    let detail: string;
    try {
      detail = await fn();
    } catch (err) {
      pass = false;
      detail = err instanceof CaseFailure ? err.message : `error: ${(err as Error).message ?? String(err)}`;
    }
    cases.push({ id, title: CASES[id], pass, detail, ms: Date.now() - t0 });
    progress(`${pass ? 'PASS' : 'FAIL'} ${CASES[id]}${pass ? '' : `: ${detail}`}`);
    return pass;
  };

  try {
    orchestrator = await Orchestrator.start({
      databaseUrl,
      amqpUrl,
      dbSchema: schema,
      amqpPrefix: prefix,
      httpEnabled: false,
      // Steps released together go in one `steps` message, which every worker must accept.
      stepsPerMessage: 16,
      outboxSweepMs: 200,
      outboxStaleMs: 1000,
      logger,
    });
    const orch = orchestrator;
    await orch.registerTemplates(conformanceTemplates(namespace));
    const obs = await Observer.open(amqpUrl, n, namespace);
    observer = obs;
    const queue = n.stepQueue(namespace);

    const create = async (name: TemplateName, context: Record<string, JsonValue>): Promise<string> => {
      const [out] = await orch.createTasks([{ namespace, name, context }]);
      if (!out?.ok) throw new Error(`the kit could not create a ${name} task: ${out?.error.message}`);
      return out.task.id;
    };
    const terminal = async (taskId: string, timeoutMs = 20_000): Promise<TaskView> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const t = await orch.getTask(taskId);
        if (t && ['complete', 'error', 'cancelled'].includes(t.state)) return t;
        if (Date.now() > deadline) {
          const steps = t?.steps.map((s) => `${s.name} ${s.state} attempt ${s.attempt}`).join(', ');
          throw new CaseFailure(`task did not finish within ${timeoutMs / 1000} s (state ${t?.state}; ${steps})`);
        }
        await sleep(50);
      }
    };
    /** Waits for the task to end and for `count` results of it on the wire. */
    const settle = async (taskId: string, count: number, timeoutMs = 20_000): Promise<{ task: TaskView; results: Observed[] }> => {
      const task = await terminal(taskId, timeoutMs);
      const results = await obs
        .waitFor(() => {
          const rs = obs.resultsForTask(taskId);
          return rs.length >= count ? rs : undefined;
        }, 3000, `${count} result(s) of task ${taskId}`)
        .catch(() => obs.resultsForTask(taskId));
      return { task, results };
    };
    const workerConsuming = async (): Promise<void> => {
      const deadline = Date.now() + startTimeoutMs;
      for (;;) {
        if (!worker.running) {
          const exit = await worker.exited();
          throw new CaseFailure(`the worker exited (code ${exit.code}, signal ${exit.signal}) before consuming ${queue}`);
        }
        const q = await obs.queueState(queue).catch(() => null);
        if (q && q.consumerCount > 0) return;
        if (Date.now() > deadline) throw new CaseFailure(`no consumer on ${queue} within ${startTimeoutMs / 1000} s`);
        await sleep(100);
      }
    };
    /** Waits until the queue has handed its messages to the worker (they are unacked there now). */
    const delivered = async (): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while ((await obs.queueState(queue)).messageCount > 0) {
        if (Date.now() > deadline) throw new CaseFailure(`the step message was not taken from ${queue} within 10 s`);
        await sleep(25);
      }
    };
    const user = decodeURIComponent(new URL(amqpUrl).username || 'guest');
    const envelope = (taskId: string, stepName: string, attempt = 1) => ({ namespace, taskId, stepName, attempt, user });

    // ── start ───────────────────────────────────────────────────────────────────────
    worker.start();
    const started = await run('start', async () => {
      const t0 = Date.now();
      await workerConsuming();
      return `consuming ${queue} after ${((Date.now() - t0) / 1000).toFixed(1)} s`;
    });
    if (!started) return report;

    // ── the independent cases, all at once ─────────────────────────────────────────
    const token = `tok-${sfx}`;
    const ids = {
      success: await create('conformance_success', { value: 'hello' }),
      permanent: await create('conformance_permanent', {}),
      retryable: await create('conformance_retryable', { retry_after_ms: 1000 }),
      missing: await create('conformance_missing_handler', {}),
      dependencies: await create('conformance_dependencies', { token }),
      initialization: await create('conformance_initialization', {}),
      large: await create('conformance_large', { size: 700_000 }),
      unicode: await create('conformance_unicode', { text: UNICODE_TEXT, payload: structuredClone(UNICODE_PAYLOAD) as unknown as JsonValue }),
      timeout: await create('conformance_timeout', { sleep_ms: 2500 }),
      delegate: await create('conformance_delegate', { value: `child-${sfx}` }),
      fanOut: await create('conformance_fan_out', { value: 'fan' }),
    };
    const badJsonId = `conformance-bad-json-${sfx}`;
    const badVersionId = `conformance-bad-version-${sfx}`;
    const badJson = Buffer.from('{"protocol_version": 1, "message_type": "step", this is not JSON');
    const badVersion = Buffer.from(
      JSON.stringify({ protocol_version: 99, message_type: 'step', task_id: 'x', namespace, step_id: 'y', future_field: true }),
    );
    obs.publishStep(namespace, badJson, badJsonId);
    obs.publishStep(namespace, badVersion, badVersionId);
    // A `steps` message whose second step lacks its required fields: parked alone, as its own JSON.
    const badItem = { protocol_version: PROTOCOL_VERSION, message_type: 'step', namespace, task_id: `tsk_badstep${sfx}`, future_field: true };
    const badItemOf = (i: number) => ({ ...badItem, task_id: `${badItem.task_id}${i}` });
    const badSteps = Buffer.from(JSON.stringify({ protocol_version: PROTOCOL_VERSION, message_type: 'steps', steps: [badItemOf(1), badItemOf(2)] }));
    obs.publishStep(namespace, badSteps, `conformance-bad-steps-${sfx}`);

    await Promise.all([
      run('success', async () => {
        const { task, results } = await settle(ids.success, 1);
        const e = new Expect();
        e.envelope(results[0], envelope(ids.success, 'succeed'));
        const r = body(results[0]);
        e.that(r['status'] === 'success', `status ${String(r['status'])}, expected success`);
        e.that(isDeepStrictEqual(r['result'], { ok: true, value: 'hello' }), `result ${short(r['result'])}, expected {"ok":true,"value":"hello"}`);
        e.that(task.state === 'complete', `task ${task.state}, expected complete`);
        return e.done(`result ${short(r['result'])}; task complete`);
      }),
      run('permanent_error', async () => {
        const { task, results } = await settle(ids.permanent, 1);
        const e = new Expect();
        e.envelope(results[0], envelope(ids.permanent, 'fail_permanent'));
        const err = (body(results[0])['error'] ?? {}) as Json;
        e.that(body(results[0])['status'] === 'failure', 'status is not failure');
        e.that(err['kind'] === 'permanent', `kind ${String(err['kind'])}, expected permanent`);
        e.that(err['code'] === PERMANENT_CODE, `code ${String(err['code'])}, expected ${PERMANENT_CODE}`);
        e.that(typeof err['message'] === 'string' && err['message'].length > 0, 'no message');
        e.that(isDeepStrictEqual(err['details'], { reason: 'conformance' }), `details ${short(err['details'])}, expected {"reason":"conformance"}`);
        e.that(results.length === 1, `${results.length} results, expected 1 (no retry after a permanent error)`);
        e.that(task.state === 'error' && task.steps[0]?.attempt === 1, `task ${task.state} at attempt ${task.steps[0]?.attempt}, expected error at 1 of 3`);
        return e.done(`${String(err['code'])}: ${String(err['message'])}; task error after 1 of 3 attempts`);
      }),
      run('retryable_error', async () => {
        const { task, results } = await settle(ids.retryable, 2);
        const e = new Expect();
        const [first, second] = results;
        e.envelope(first, envelope(ids.retryable, 'fail_retryable', 1), 'attempt 1');
        e.envelope(second, envelope(ids.retryable, 'fail_retryable', 2), 'attempt 2');
        const err = (body(first)['error'] ?? {}) as Json;
        e.that(err['kind'] === 'retryable', `attempt 1 kind ${String(err['kind'])}, expected retryable`);
        e.that(err['code'] === RETRY_CODE, `attempt 1 code ${String(err['code'])}, expected ${RETRY_CODE}`);
        e.that(err['retry_after_ms'] === 1000, `attempt 1 retry_after_ms ${String(err['retry_after_ms'])}, expected 1000`);
        e.that(isDeepStrictEqual(body(second)['result'], { attempt: 2 }), `attempt 2 result ${short(body(second)['result'])}, expected {"attempt":2}`);
        const gap = Date.parse(String(body(second)['started_at'])) - Date.parse(String(body(first)['finished_at']));
        // The template's fixed backoff is 10 s: a retry around 1 s means the retry-after was used.
        e.that(gap >= 900 && gap <= 5000, `attempt 2 started ${gap} ms after attempt 1 ended, expected about 1000 (the retry-after), not the 7.5-10 s backoff`);
        e.that(task.state === 'complete', `task ${task.state}, expected complete`);
        return e.done(`attempt 1 ${String(err['code'])} retry_after_ms ${String(err['retry_after_ms'])}; attempt 2 started ${gap} ms later and succeeded`);
      }),
      run('handler_not_found', async () => {
        const { task, results } = await settle(ids.missing, 1);
        const e = new Expect();
        e.envelope(results[0], envelope(ids.missing, 'missing'));
        const err = (body(results[0])['error'] ?? {}) as Json;
        const message = String(err['message'] ?? '');
        e.that(err['kind'] === 'permanent', `kind ${String(err['kind'])}, expected permanent`);
        e.that(err['code'] === ErrorCode.HANDLER_NOT_FOUND, `code ${String(err['code'])}, expected HANDLER_NOT_FOUND`);
        e.that(message.includes(MISSING_CALLABLE), `message does not name the callable: ${message}`);
        e.that(message.includes(namespace), `message does not name the namespace: ${message}`);
        e.that(message.includes('conformance_succeed'), `message does not list the worker's handlers: ${message}`);
        e.that(task.state === 'error' && results.length === 1, `task ${task.state} with ${results.length} results, expected error after 1`);
        return e.done(message);
      }),
      run('input_and_dependency', async () => {
        const { task, results } = await settle(ids.dependencies, 2);
        const e = new Expect();
        const produce = results.find((r) => body(r)['step_name'] === 'produce');
        const consume = results.find((r) => body(r)['step_name'] === 'consume');
        e.envelope(produce, envelope(ids.dependencies, 'produce'), 'produce');
        e.envelope(consume, envelope(ids.dependencies, 'consume'), 'consume');
        const c = body(consume);
        const stepId = String(c['step_id']);
        const expected = {
          input_token: token,
          produced: { token, n: 42 },
          task_id: ids.dependencies,
          step_id: stepId,
          step_name: 'consume',
          namespace,
          task_name: 'conformance_dependencies',
          attempt: 1,
          max_attempts: 1,
          idempotency_key: `${stepId}:1`,
        };
        e.that(isDeepStrictEqual(c['result'], expected), `consume returned ${short(c['result'], 400)}, expected ${short(expected, 400)}`);
        e.that(task.state === 'complete', `task ${task.state}, expected complete`);
        return e.done(`consume saw input token, produce's result {token, n: 42} and its ids`);
      }),
      run('initialization', async () => {
        const { results } = await settle(ids.initialization, 1);
        const e = new Expect();
        e.envelope(results[0], envelope(ids.initialization, 'configured'));
        const got = (body(results[0])['result'] as Json | undefined)?.['initialization'];
        e.that(isDeepStrictEqual(got, INITIALIZATION), `initialization ${short(got, 300)}, expected ${short(INITIALIZATION, 300)}`);
        return e.done(`initialization ${short(got, 80)}`);
      }),
      run('large_result', async () => {
        const { task, results } = await settle(ids.large, 1);
        const e = new Expect();
        e.envelope(results[0], envelope(ids.large, 'large'));
        const r = (body(results[0])['result'] ?? {}) as Json;
        const data = r['data'];
        e.that(r['size'] === 700_000, `size ${String(r['size'])}`);
        e.that(typeof data === 'string' && data.length === 700_000 && data === largeData(700_000), `data is not the expected 700,000 characters (got ${typeof data === 'string' ? data.length : typeof data})`);
        e.that(task.state === 'complete', `task ${task.state}, expected complete`);
        return e.done(`${results[0]?.body.length ?? 0} bytes on the wire; task complete`);
      }),
      run('unicode_result', async () => {
        const { task, results } = await settle(ids.unicode, 1);
        const e = new Expect();
        e.envelope(results[0], envelope(ids.unicode, 'unicode'));
        const r = (body(results[0])['result'] ?? {}) as Json;
        const codePoints = [...UNICODE_TEXT].length;
        e.that(r['text'] === UNICODE_TEXT, `text came back as ${short(r['text'])}`);
        e.that(isDeepStrictEqual(r['payload'], UNICODE_PAYLOAD), `payload came back as ${short(r['payload'])}`);
        e.that(r['code_points'] === codePoints, `code_points ${String(r['code_points'])}, expected ${codePoints}`);
        const stored = task.steps[0]?.result as Json | undefined;
        e.that(stored?.['text'] === UNICODE_TEXT, 'the stored result differs from what was sent');
        return e.done(`${codePoints} code points round-tripped`);
      }),
      run('timeout', async () => {
        const { task, results } = await settle(ids.timeout, 1);
        const e = new Expect();
        e.envelope(results[0], envelope(ids.timeout, 'overrun'));
        const r = body(results[0]);
        const err = (r['error'] ?? {}) as Json;
        e.that(err['kind'] === 'retryable', `kind ${String(err['kind'])}, expected retryable`);
        e.that(err['code'] === ErrorCode.HANDLER_TIMEOUT, `code ${String(err['code'])}, expected HANDLER_TIMEOUT`);
        const took = Date.parse(String(r['finished_at'])) - Date.parse(String(r['started_at']));
        const limit = TIMEOUT_SECONDS * 1000;
        e.that(took >= limit - 100 && took <= limit + 1000, `answered ${took} ms after start, expected at the ${limit} ms deadline (the handler sleeps 2500 ms)`);
        e.that(task.state === 'error', `task ${task.state}, expected error (retryable: false)`);
        return e.done(`HANDLER_TIMEOUT answered ${took} ms after start (timeout ${limit} ms, handler sleeps 2500 ms)`);
      }),
      run('create_task_and_wait', async () => {
        const { task, results } = await settle(ids.delegate, 2);
        const e = new Expect();
        const own = results.filter((r) => body(r)['child_outcome'] !== true);
        e.that(own.length === 1, `${own.length} results from the worker, expected 1 (status waiting)`);
        e.envelope(own[0], envelope(ids.delegate, 'delegate'));
        const r = body(own[0]);
        const childId = String((r['wait_for'] as Json | undefined)?.['task_id'] ?? '');
        e.that(r['status'] === 'waiting' && childId !== '', `status ${String(r['status'])} wait_for ${short(r['wait_for'])}, expected waiting for the task it created`);
        const child = childId ? await orch.getTask(childId) : null;
        e.that(!!child, `the task ${childId} it waits for does not exist`);
        if (child) {
          e.that(child.name === 'conformance_success' && child.parent_task_id === ids.delegate && child.parent_step_id === task.steps[0]?.id,
            `child ${child.namespace}.${child.name} parent ${child.parent_task_id}/${child.parent_step_id}, expected this task and step`);
          e.that(child.correlation_id === task.correlation_id, `child correlation_id ${child.correlation_id}, expected the parent's ${task.correlation_id}`);
        }
        const outcome = task.steps[0]?.result as Json | undefined;
        const expected = { ok: true, value: `child-${sfx}` };
        e.that(task.state === 'complete' && isDeepStrictEqual((outcome?.['results'] as Json | undefined)?.['succeed'], expected),
          `task ${task.state}, step result ${short(outcome)}, expected complete with the child's results`);
        return e.done(`waited for ${childId}; completed with its results`);
      }),
      run('malformed_parked', async () => {
        const parked = await obs
          .waitFor(() => {
            const a = obs.parked.find((p) => p.properties.messageId === badJsonId);
            const b = obs.parked.find((p) => p.properties.messageId === badVersionId);
            return a && b ? [a, b] : undefined;
          }, 10_000, 'both malformed messages on the dead-letter exchange')
          .catch(() => [obs.parked.find((p) => p.properties.messageId === badJsonId), obs.parked.find((p) => p.properties.messageId === badVersionId)]);
        const e = new Expect();
        const check = (p: Observed | undefined, original: Buffer, code: string, label: string): void => {
          if (!e.that(!!p, `${label} was not parked`)) return;
          const h = (p!.properties.headers ?? {}) as Json;
          e.that(h['x-tasker-code'] === code, `${label}: x-tasker-code ${String(h['x-tasker-code'])}, expected ${code}`);
          e.that(typeof h['x-tasker-reason'] === 'string' && String(h['x-tasker-reason']).length > 0, `${label}: no x-tasker-reason`);
          e.that(h['x-tasker-source-queue'] === queue, `${label}: x-tasker-source-queue ${String(h['x-tasker-source-queue'])}, expected ${queue}`);
          e.that(p!.routingKey === `invalid.step.${namespace}`, `${label}: routing key ${p!.routingKey}, expected invalid.step.${namespace}`);
          e.that(p!.body.equals(original), `${label}: body changed`);
        };
        check(parked[0], badJson, ErrorCode.INVALID_MESSAGE, 'non-JSON body');
        check(parked[1], badVersion, ErrorCode.UNSUPPORTED_PROTOCOL_VERSION, 'protocol_version 99');
        return e.done('INVALID_MESSAGE and UNSUPPORTED_PROTOCOL_VERSION, bodies untouched');
      }),
      run('steps_message', async () => {
        const { task, results } = await settle(ids.fanOut, 3);
        const e = new Expect();
        for (const name of ['first', 'left', 'right']) {
          const r = results.find((x) => body(x)['step_name'] === name);
          e.envelope(r, envelope(ids.fanOut, name), name);
          e.that(isDeepStrictEqual(body(r)['result'], { ok: true, value: 'fan' }), `${name} returned ${short(body(r)['result'])}, expected {"ok":true,"value":"fan"}`);
        }
        e.that(results.length === 3, `${results.length} results, expected 3 (one per step)`);
        e.that(task.state === 'complete', `task ${task.state}, expected complete`);
        const alone = await obs
          .waitFor(() => {
            const found = [1, 2].map((i) => obs.parked.find((p) => p.body.toString().includes(`"${badItem.task_id}${i}"`)));
            return found.every(Boolean) ? found : undefined;
          }, 10_000, 'both bad steps of the steps message on the dead-letter exchange')
          .catch(() => [1, 2].map((i) => obs.parked.find((p) => p.body.toString().includes(`"${badItem.task_id}${i}"`))));
        alone.forEach((p, i) => {
          const label = `bad step ${i + 1} of the steps message`;
          if (!e.that(!!p, `${label} was not parked`)) return;
          const h = (p!.properties.headers ?? {}) as Json;
          let parsed: unknown = null;
          try {
            parsed = JSON.parse(p!.body.toString());
          } catch {
            /* checked below */
          }
          e.that(isDeepStrictEqual(parsed, badItemOf(i + 1)), `${label}: body ${short(p!.body.toString())}, expected that step alone as JSON`);
          e.that(h['x-tasker-code'] === ErrorCode.INVALID_MESSAGE, `${label}: x-tasker-code ${String(h['x-tasker-code'])}, expected INVALID_MESSAGE`);
          e.that(String(h['x-tasker-reason'] ?? '').includes(`${i + 1} of 2`), `${label}: reason ${short(h['x-tasker-reason'])} does not name its place (${i + 1} of 2)`);
        });
        return e.done('left and right (one steps message) answered; each bad step of a steps message parked alone');
      }),
    ]);

    // ── redelivery: kill the worker while it holds an unacked step ──────────────────
    await run('redelivery', async () => {
      const taskId = await create('conformance_slow', { sleep_ms: 1500 });
      await delivered();
      await sleep(300);
      const e = new Expect();
      e.that(obs.resultsForTask(taskId).length === 0, 'a result came before the worker was killed (the handler should still be sleeping)');
      await worker.killGroup();
      worker.start();
      await workerConsuming();
      const { task, results } = await settle(taskId, 1);
      e.that(results.length === 1, `${results.length} results, expected 1`);
      e.envelope(results[0], envelope(taskId, 'slow', 1));
      const r = body(results[0]);
      const stepId = String(r['step_id']);
      const value = (r['result'] ?? {}) as Json;
      e.that(r['status'] === 'success', `status ${String(r['status'])}, expected success`);
      e.that(value['idempotency_key'] === `${stepId}:1` && value['attempt'] === 1, `handler saw attempt ${String(value['attempt'])} key ${String(value['idempotency_key'])}, expected 1 and ${stepId}:1`);
      const dc = r['delivery_count'];
      if (dc !== undefined) e.that(typeof dc === 'number' && dc >= 2, `delivery_count ${String(dc)}, expected at least 2`);
      e.that(task.state === 'complete' && task.steps[0]?.attempt === 1, `task ${task.state} at attempt ${task.steps[0]?.attempt}, expected complete at attempt 1`);
      return e.done(`answered by the restarted worker as attempt 1, key ${stepId}:1${dc !== undefined ? `, delivery_count ${String(dc)}` : ''}`);
    });

    // ── graceful shutdown: SIGTERM while a step runs ─────────────────────────────────
    if (worker.running) {
      await run('graceful_shutdown', async () => {
        const taskId = await create('conformance_slow', { sleep_ms: 1500 });
        await delivered();
        await sleep(500);
        const t0 = Date.now();
        worker.signal('SIGTERM');
        const exit = await Promise.race([worker.exited(), sleep(20_000, null)]);
        const e = new Expect();
        if (!exit) {
          await worker.killGroup();
          throw new CaseFailure('the worker did not exit within 20 s of SIGTERM');
        }
        const took = Date.now() - t0;
        const results = await obs
          .waitFor(() => (obs.resultsForTask(taskId).length > 0 ? obs.resultsForTask(taskId) : undefined), 2000, 'the result')
          .catch(() => []);
        e.that(exit.code === 0, `exit code ${exit.code} (signal ${exit.signal}), expected 0`);
        e.that(results.length === 1, `${results.length} results for the running step, expected 1 (it must finish and be answered before exit)`);
        e.envelope(results[0], envelope(taskId, 'slow'));
        e.that(body(results[0])['status'] === 'success', `status ${String(body(results[0])['status'])}, expected success`);
        const task = await terminal(taskId, 5000);
        e.that(task.state === 'complete', `task ${task.state}, expected complete`);
        return e.done(`step finished and answered; exit 0 ${took} ms after SIGTERM`);
      });
    }

    // ── across the whole run ─────────────────────────────────────────────────────────
    await run('one_result_per_attempt', async () => {
      const seen = new Map<string, number>();
      for (const r of obs.results) {
        const b = body(r);
        // The orchestrator's own message completing a waiting step is not a worker's answer.
        if (b['child_outcome'] === true) continue;
        const key = `${String(b['step_name'])} ${String(b['step_id'])} attempt ${String(b['attempt'])}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      const twice = [...seen.entries()].filter(([, c]) => c > 1).map(([k, c]) => `${k}: ${c} results`);
      if (twice.length > 0) throw new CaseFailure(twice.join('; '));
      const fromWorkers = [...seen.values()].reduce((a, b) => a + b, 0);
      return `${fromWorkers} worker results for ${seen.size} attempts`;
    });
  } catch (err) {
    cases.push({ id: 'setup', title: 'the kit itself', pass: false, detail: (err as Error).message, ms: 0 });
  } finally {
    if (worker.running) {
      worker.signal('SIGTERM');
      const exit = await Promise.race([worker.exited(), sleep(10_000, null)]);
      if (!exit) await worker.killGroup();
    }
    report.workerTail = [...worker.tail];
    await worker.closeLog();
    await observer?.close();
    await orchestrator?.stop().catch(() => undefined);
    await dropTopology(amqpUrl, n, namespace).catch(() => undefined);
    await dropSchema(databaseUrl, schema).catch(() => undefined);
  }
  // Parallel cases finish in any order; the table follows CASES.
  const order = Object.keys(CASES);
  cases.sort((a, b) => (order.indexOf(a.id) + 1 || order.length + 1) - (order.indexOf(b.id) + 1 || order.length + 1));
  report.pass = cases.length > 0 && cases.every((c) => c.pass);
  return report;
}

async function dropTopology(url: string, n: Names, namespace: string): Promise<void> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    for (const t of [coreTopology(n), namespaceTopology(n, namespace)]) {
      for (const q of t.queues) await ch.deleteQueue(q.name);
      for (const e of t.exchanges) await ch.deleteExchange(e.name);
    }
    await ch.close();
  } finally {
    await conn.close();
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
}

/**
 * The demo's scenario, run through the orchestrator's HTTP API once everything is up:
 *
 * (a) the support team's refund (TICKET-1234), which delegates to a payments task;
 * (b) a direct payments refund (pay_xyz789), as fraud tooling would ask for it;
 * (c) a request the customer_success input schema refuses;
 * (d) a payments refund whose gateway fails once, retried after the template's backoff;
 * (e) a support refund with a reason the team refuses, failing permanently.
 *
 * All tasks are created first and awaited in order, so the retry's wait overlaps the rest.
 */
import {
  ErrorCode,
  HttpTaskClient,
  TaskerError,
  type FieldIssue,
  type TaskView,
} from '@tasker/client';
import { JITTER_FRACTION } from '@tasker/protocol';
import { bold, dim, errorCode, span, stepByName, taskTable, type Check } from './report.ts';

/** The template's backoff for process_gateway_refund: initial_delay 5 s, jitter shortens by up to 25%. */
const GATEWAY_RETRY_DELAY_MS = 5000;
/** Allowed on top of the backoff between attempt 1's end and attempt 2's start: delay queue, dispatch, pickup. */
const DISPATCH_SLACK_MS = 2000;

/** Every expected outcome, by the id printed next to its verdict (`PASS (a1) ...`). */
export const EXPECTED_OUTCOMES = {
  a1: 'customer_success.process_refund (TICKET-1234) completes',
  a2: 'its payments.process_refund child (from execute_refund_workflow) completes',
  a3: "child's parent_task_id is the CS task (parent_step_id its execute_refund_workflow step)",
  a6: 'execute_refund_workflow waited for the payments task; update_ticket_status recorded the real refund',
  a4: 'correlation id links them (child correlation_id and context.correlation_id = CS task)',
  a5: "every step result names its team's namespace",
  b1: 'payments.process_refund (pay_xyz789, fraud) completes',
  c1: 'invalid request refused with HTTP 400 INVALID_CONTEXT naming ticket_id and refund_amount',
  d1: 'gateway failure retried: task completes, process_gateway_refund at attempt 2/2',
  d2: "retry waited the template's backoff: 3.75–5 s (initial_delay 5 s, jitter up to −25%) plus dispatch",
  e1: "refund_reason 'bored': task in error, validate_refund_request in error with INVALID_REASON (not retried)",
  e2: 'its dependents never ran (pending)',
} as const;
export type OutcomeId = keyof typeof EXPECTED_OUTCOMES;

function record(checks: Check[], c: { id: OutcomeId; pass: boolean; detail?: string | undefined }): void {
  checks.push({ id: c.id, label: EXPECTED_OUTCOMES[c.id], pass: c.pass, ...(c.detail ? { detail: c.detail } : {}) });
}

/** The outcomes a run cut short never reached, as failures. */
export function unreached(checks: Check[]): Check[] {
  const seen = new Set(checks.map((c) => c.id));
  return (Object.keys(EXPECTED_OUTCOMES) as OutcomeId[])
    .filter((id) => !seen.has(id))
    .map((id) => ({ id, label: EXPECTED_OUTCOMES[id], pass: false, detail: 'not reached' }));
}

export interface ScenarioOptions {
  baseUrl: string;
  /** API token for the orchestrator's HTTP API. */
  token: string;
  /** Aborted at the demo's deadline or on Ctrl-C. */
  signal: AbortSignal;
  /** Milliseconds left before the deadline. */
  remainingMs: () => number;
  /** What the demo is waiting for, for the timeout message. */
  waitingFor: (what: string) => void;
}

const print = (s = ''): void => console.log(s);

function section(title: string): void {
  print();
  print(bold(title));
}

/**
 * Runs the scenario, adding one check per expected outcome to `checks` as it goes (so a
 * run cut short still shows what it saw).
 */
export async function runScenario(o: ScenarioOptions, checks: Check[]): Promise<void> {
  const client = new HttpTaskClient({ baseUrl: o.baseUrl, token: o.token });
  const http = { signal: o.signal };
  /** Waits for the task to be terminal (complete, error, cancelled): the orchestrator answers as it ends. */
  const wait = (id: string, what: string): Promise<TaskView> => {
    o.waitingFor(what);
    return client.waitForTask(id, { timeoutMs: Math.max(1, o.remainingMs()), pollMs: 100, signal: o.signal });
  };

  // ── create everything ────────────────────────────────────────────────────────────────
  o.waitingFor('the task creations');
  const csRequest = {
    ticket_id: 'TICKET-1234',
    customer_id: 'cust_abc123',
    refund_amount: 49.99,
    refund_reason: 'defective',
    customer_email: 'customer@example.com',
  };
  const a = await client.createTask({ namespace: 'customer_success', name: 'process_refund', context: csRequest }, http);
  const b = await client.createTask(
    {
      namespace: 'payments',
      name: 'process_refund',
      context: { payment_id: 'pay_xyz789', refund_amount: 49.99, refund_reason: 'fraud', customer_email: 'customer@example.com' },
      requestedBy: 'fraud-detection',
    },
    http,
  );
  const d = await client.createTask(
    {
      namespace: 'payments',
      name: 'process_refund',
      context: {
        payment_id: 'pay_flaky001',
        refund_amount: 19.99,
        refund_reason: 'duplicate_charge',
        customer_email: 'customer@example.com',
        simulate_gateway_failures: 1,
      },
    },
    http,
  );
  const e = await client.createTask(
    { namespace: 'customer_success', name: 'process_refund', context: { ...csRequest, ticket_id: 'TICKET-1235', refund_reason: 'bored' } },
    http,
  );
  // (d)'s gateway step sits in waiting_retry for about 4-5 s: watch it from now on, so the
  // first attempt's end and the scheduled retry are seen before the second attempt replaces them.
  let waitingRetry: TaskView | null = null;
  const dDone = client.waitForTask(d.task.id, {
    timeoutMs: Math.max(1, o.remainingMs()),
    pollMs: 100,
    signal: o.signal,
    until: (t) => {
      if (!waitingRetry && stepByName(t, 'process_gateway_refund').state === 'waiting_retry') waitingRetry = t;
      return false;
    },
  });
  // Read by the time (d) is printed; a rejection is reported there.
  dDone.catch(() => undefined);

  // ── (a) support refund delegating to payments ───────────────────────────────────────
  section('(a) customer_success.process_refund: TICKET-1234, 49.99, defective');
  const aTask = await wait(a.task.id, '(a) the customer_success task');
  print(taskTable(aTask));
  record(checks, {
    id: 'a1',
    pass: aTask.state === 'complete',
    detail: `state ${aTask.state}`,
  });
  const executeStep = stepByName(aTask, 'execute_refund_workflow');
  const childId = executeStep.waiting_for_task_id;
  let child: TaskView | null = null;
  if (childId) {
    child = await wait(childId, '(a) its payments child task');
    print(taskTable(child, dim('created by execute_refund_workflow:')));
    print();
    print(
      `  link: ${bold(`customer_success.process_refund ${aTask.id}`)} ─ execute_refund_workflow ▶ ` +
        `${bold(`payments.process_refund ${child.id}`)}\n` +
        `        child.parent_task_id=${child.parent_task_id}  child.parent_step_id=${child.parent_step_id}\n` +
        `        correlation_id: CS task ${aTask.correlation_id}, child ${child.correlation_id}, ` +
        `child context ${String(child.context['correlation_id'])}`,
    );
  }
  record(checks, {
    id: 'a2',
    pass: child?.state === 'complete',
    detail: child ? `child ${child.id} state ${child.state}` : 'execute_refund_workflow did not wait for a task',
  });
  const executeStepId = stepByName(aTask, 'execute_refund_workflow').id;
  record(checks, {
    id: 'a3',
    pass: child?.parent_task_id === aTask.id && child.parent_step_id === executeStepId,
    detail: child ? `parent_task_id ${child.parent_task_id}, parent_step_id ${child.parent_step_id}` : 'no child',
  });
  record(checks, {
    id: 'a4',
    pass:
      !!child &&
      child.correlation_id === aTask.correlation_id &&
      child.context['correlation_id'] === aTask.id,
    detail: child ? `CS ${aTask.correlation_id}, child ${child.correlation_id} / ${String(child.context['correlation_id'])}` : 'no child',
  });
  const wrongNamespace = [
    // execute_refund_workflow completes with the payments task's outcome (a6 checks it).
    ...aTask.steps.filter((s) => s.name !== 'execute_refund_workflow' && (s.result as { namespace?: string } | null)?.namespace !== 'customer_success'),
    ...(child?.steps ?? []).filter((s) => (s.result as { namespace?: string } | null)?.namespace !== 'payments'),
  ].map((s) => s.name);
  record(checks, {
    id: 'a5',
    pass: !!child && wrongNamespace.length === 0,
    detail: wrongNamespace.length > 0 ? `without it: ${wrongNamespace.join(', ')}` : undefined,
  });

  const payout = executeStep.result as { task_id?: string; results?: { notify_customer?: { refund_id?: string } } } | null;
  const ticket = stepByName(aTask, 'update_ticket_status').result as { refund_id?: string; new_status?: string } | null;
  const refundId = payout?.results?.notify_customer?.refund_id;
  record(checks, {
    id: 'a6',
    pass: !!child && payout?.task_id === child.id && !!refundId && ticket?.refund_id === refundId && ticket?.new_status === 'refunded',
    detail: `execute_refund_workflow waited for ${payout?.task_id ?? '?'}; ticket ${ticket?.new_status ?? '?'} with refund ${ticket?.refund_id ?? '?'}`,
  });

  // ── (b) direct payments refund ───────────────────────────────────────────────────────
  section('(b) payments.process_refund: pay_xyz789, 49.99, fraud');
  const bTask = await wait(b.task.id, '(b) the payments task');
  print(taskTable(bTask));
  record(checks, {
    id: 'b1',
    pass: bTask.state === 'complete',
    detail: `state ${bTask.state}`,
  });

  // ── (c) refused request ──────────────────────────────────────────────────────────────
  section('(c) customer_success.process_refund without ticket_id and with refund_amount -5');
  let status: number | null = null;
  const recording = new HttpTaskClient({
    baseUrl: o.baseUrl,
    token: o.token,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      status = res.status;
      return res;
    },
  });
  let refusal: TaskerError | null = null;
  let createdInstead: string | null = null;
  try {
    const { ticket_id: _omitted, ...rest } = csRequest;
    const r = await recording.createTask(
      { namespace: 'customer_success', name: 'process_refund', context: { ...rest, refund_amount: -5 } },
      http,
    );
    createdInstead = r.task.id;
  } catch (err) {
    if (!(err instanceof TaskerError)) throw err;
    refusal = err;
  }
  const issues: FieldIssue[] = refusal?.issues ?? [];
  if (refusal) {
    print(`  refused: HTTP ${status} ${refusal.code}`);
    for (const i of issues) print(`    ${i.path}: ${i.message}`);
  } else {
    print(`  not refused: task ${createdInstead} was created`);
  }
  const named = new Set(issues.map((i) => i.path));
  record(checks, {
    id: 'c1',
    pass: status === 400 && refusal?.code === ErrorCode.INVALID_CONTEXT && named.has('ticket_id') && named.has('refund_amount'),
    detail: refusal ? `HTTP ${status} ${refusal.code}: ${[...named].join(', ')}` : `created ${createdInstead}`,
  });

  // ── (d) transient gateway failure ────────────────────────────────────────────────────
  section('(d) payments.process_refund with simulate_gateway_failures: 1');
  o.waitingFor('(d) the payments task with a retried gateway step');
  const dTask = await dDone;
  const snapshot = waitingRetry as TaskView | null;
  const seen = snapshot ? stepByName(snapshot, 'process_gateway_refund') : null;
  if (snapshot) {
    print(dim('  while waiting for the retry:'));
    print(taskTable(snapshot));
  }
  print(dim('  at the end:'));
  print(taskTable(dTask));
  const gateway = stepByName(dTask, 'process_gateway_refund');
  record(checks, {
    id: 'd1',
    pass: dTask.state === 'complete' && gateway.state === 'complete' && gateway.attempt === 2 && gateway.max_attempts === 2,
    detail: `task ${dTask.state}, gateway step ${gateway.state} at attempt ${gateway.attempt}/${gateway.max_attempts}`,
  });
  const low = GATEWAY_RETRY_DELAY_MS * (1 - JITTER_FRACTION);
  let gapText = 'the waiting_retry state was never observed';
  let gapOk = false;
  if (seen?.finished_at && gateway.started_at) {
    const gap = Date.parse(gateway.started_at) - Date.parse(seen.finished_at);
    const scheduled = seen.next_retry_at ? Date.parse(seen.next_retry_at) - Date.parse(seen.finished_at) : null;
    gapText =
      `attempt 1 (${errorCode(seen.error) ?? '?'}) finished ${seen.finished_at.slice(11, 23)}, ` +
      `attempt 2 started ${gateway.started_at.slice(11, 23)}: gap ${span(gap)}` +
      (scheduled !== null ? ` (retry scheduled ${span(scheduled)} after attempt 1 ended)` : '');
    gapOk = gap >= low && gap <= GATEWAY_RETRY_DELAY_MS + DISPATCH_SLACK_MS;
  }
  print(`  ${gapText}`);
  record(checks, {
    id: 'd2',
    pass: gapOk,
    detail: gapText,
  });

  // ── (e) permanent failure ────────────────────────────────────────────────────────────
  section("(e) customer_success.process_refund with refund_reason 'bored'");
  const eTask = await wait(e.task.id, '(e) the customer_success task refused by its handler');
  print(taskTable(eTask));
  const validate = stepByName(eTask, 'validate_refund_request');
  const message = (validate.error as { message?: string } | null)?.message;
  if (message) print(`  validate_refund_request: ${message}`);
  record(checks, {
    id: 'e1',
    pass:
      eTask.state === 'error' && validate.state === 'error' && errorCode(validate.error) === 'INVALID_REASON' && validate.attempt === 1,
    detail: `task ${eTask.state}, step ${validate.state} ${errorCode(validate.error) ?? ''} at attempt ${validate.attempt}/${validate.max_attempts}`,
  });
  const ran = eTask.steps.filter((s) => s.name !== validate.name && (s.state !== 'pending' || s.attempt !== 0));
  record(checks, {
    id: 'e2',
    pass: ran.length === 0,
    detail: ran.length > 0 ? `ran: ${ran.map((s) => `${s.name} ${s.state}`).join(', ')}` : undefined,
  });
}

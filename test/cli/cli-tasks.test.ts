import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiTokenConfig, TaskView } from '@tasker/protocol';
import { HttpTaskClient } from '@tasker/client';
import { startStack, type Stack } from '../support/stack.ts';
import { startRecordingWorker, type Execution } from '../support/recording-worker.ts';
import { CliProcess, FIXTURES, json, runCli, runHere, type CliResult } from './run-cli.ts';

/**
 * The `tasker` task and step commands, spawned as a user runs them, against a real
 * orchestrator (fresh schema and AMQP prefix) with API tokens, a recording worker for
 * `cli_shop` and a worker started by `tasker worker start` for `cli_ops`.
 */
const ADMIN = 'admin-token-0123456789';
const SHOP = 'shop-token-0123456789';
const READER = 'reader-token-0123456789';
const tokens: ApiTokenConfig[] = [
  { name: 'cli-admin', token: ADMIN, namespaces: ['*'], actions: ['admin'] },
  { name: 'shop-team', token: SHOP, namespaces: ['cli_shop'], actions: ['read', 'create', 'operate'] },
  { name: 'reader', token: READER, namespaces: ['*'], actions: ['read'] },
];

let stack: Stack;
let url: string;
let cliWorker: CliProcess;
const executions: Execution[] = [];

const template = (p: string) => readFileSync(join(FIXTURES, 'templates', p), 'utf8');
const ctx = (c: unknown) => JSON.stringify(c);

/** Runs the CLI against this file's orchestrator with a token. */
function tasker(args: string[], token: string | null = SHOP, env: Record<string, string> = {}): Promise<CliResult> {
  return runCli([...args, '--url', url, ...(token ? ['--token', token] : [])], env);
}

/** Reads the task until `until` holds (or the time runs out), straight from the API. */
async function waitForTask(id: string, until: (t: TaskView) => boolean): Promise<TaskView> {
  return new HttpTaskClient({ baseUrl: url, token: ADMIN }).waitForTask(id, { timeoutMs: 15_000, pollMs: 50, until });
}

const stepId = (task: TaskView, name: string): string => task.steps.find((s) => s.name === name)!.id;

/** Setup that is not what a test is about goes straight to the API: every CLI spawn costs a second. */
const api = () => new HttpTaskClient({ baseUrl: url, token: ADMIN });

beforeAll(async () => {
  stack = await startStack({ apiTokens: tokens });
  url = stack.orchestrator.httpUrl!;
  const templates = await stack.register(
    template('cli_shop/fulfil_order.yaml'),
    template('cli_ops/charge_order.yaml'),
    template('cli_idle/hold.yaml'),
  );
  await startRecordingWorker(stack, 'cli_shop', templates, executions);
  cliWorker = new CliProcess(['worker', 'start', '--namespace', 'cli_ops', '--handlers', join(FIXTURES, 'handlers.ts'), '--concurrency', '4'], {
    TASKER_AMQP_URL: stack.amqpUrl,
    TASKER_AMQP_PREFIX: stack.prefix,
  });
  await cliWorker.waitFor((p) => (/worker for namespace 'cli_ops' running/.test(p.stderr) ? true : undefined), 20_000, 'worker start');
});

afterAll(async () => {
  await cliWorker?.stop('SIGKILL');
  await stack?.cleanup();
});

describe('tasker task create', () => {
  it('--wait shows progress as plain lines off a terminal, then the steps table; exit 0 when the task completes', async () => {
    const r = await tasker(['task', 'create', 'cli_shop.fulfil_order', '--context', ctx({ order_id: 'o-1', amount: 12.5 }), '--wait']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^created task tsk_\w+ \(cli_shop\.fulfil_order@1\.0\.0\): in_progress, 3 steps$/m);
    expect(r.stdout).toMatch(/waiting for task tsk_\w+ \(cli_shop\.fulfil_order@1\.0\.0\): \d\/3 steps done/);
    expect(r.stdout).toMatch(/ship_order: .*complete \(attempt 1\/3\)\s+\[3\/3 done\]/);
    expect(r.stdout).toMatch(/^STEP\s+STATE\s+ATTEMPTS\s+STARTED\s+FINISHED\s+DURATION\s+STEP ID\s+ERROR$/m);
    for (const step of ['reserve_stock', 'charge_payment', 'ship_order']) {
      expect(r.stdout).toMatch(new RegExp(`^${step}\\s+complete\\s+1/3\\s+\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z\\s+\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z\\s+\\S+\\s+stp_\\w+$`, 'm'));
    }
    expect(r.stdout).toMatch(/task tsk_\w+ complete \(3\/3 steps done, waited [\d.]+s\)/);
    // Not a terminal: no cursor movement, no colors.
    expect(r.stdout).not.toContain('\x1b[');
  });

  it('--wait on a terminal redraws one block in place (steps done of total, each step), then the table', async () => {
    const r = await runHere(
      ['task', 'create', 'cli_shop.fulfil_order', '--context', ctx({ order_id: 'o-tty', amount: 5 }), '--wait', '--url', url, '--token', SHOP],
      { TERM: 'xterm-256color' },
      { tty: true },
    );
    expect(r.code).toBe(0);
    // Every redraw after the first moves the cursor back up over the 4-line block and clears it.
    expect(r.stdout).toContain('\x1b[4F\x1b[J');
    expect(r.stdout).toMatch(/task tsk_\w+ cli_shop\.fulfil_order@1\.0\.0 {2}\S*complete\S* {2}\[#{20}\] 3\/3 steps done/);
    expect(r.stdout).toMatch(/✔ ship_order\s+\S*complete\S*\s+attempt 1\/3/);
    expect(r.stdout).toMatch(/STEP\s+STATE\s+ATTEMPTS/);
    expect(r.stdout).not.toContain('waiting for task'); // the plain-line mode is for pipes only
  });

  it('--json prints one document; the same idempotency key gives back the same task with created: false', async () => {
    const args = ['task', 'create', 'cli_shop.fulfil_order@1.0.0', '--context', ctx({ order_id: 'o-2', amount: 1 }), '--idempotency-key', 'cli-order-2', '--json'];
    const first = await tasker(args);
    expect(first.code).toBe(0);
    const a = json(first);
    expect(a).toMatchObject({ created: true, task: { namespace: 'cli_shop', name: 'fulfil_order', idempotency_key: 'cli-order-2' } });
    const again = json(await tasker(args));
    expect(again).toMatchObject({ created: false, task: { id: a.task.id } });
  });

  it('--context @file reads the JSON from a file; the token may come from TASKER_API_TOKEN', async () => {
    const r = await runCli(['task', 'create', 'cli_shop.fulfil_order', '--context', `@${join(FIXTURES, 'order-context.json')}`, '--json'], {
      TASKER_API_URL: url,
      TASKER_API_TOKEN: SHOP,
    });
    expect(r.code).toBe(0);
    expect(json(r).task.context).toEqual({ order_id: 'from-file', amount: 3 });
  });

  it('an invalid context exits 6 naming every failing field (human and --json)', async () => {
    const args = ['task', 'create', 'cli_shop.fulfil_order', '--context', ctx({ amount: -1 })];
    const [r, j] = await Promise.all([tasker(args), tasker([...args, '--json'])]);
    expect(r.code).toBe(6);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: .*\(INVALID_CONTEXT, HTTP 400\)$/m);
    expect(r.stderr).toMatch(/^ {2}- .*order_id.*$/m);
    expect(r.stderr).toMatch(/^ {2}- .*amount.*$/m);
    expect(j.code).toBe(6);
    const doc = json(j);
    expect(doc).toMatchObject({ exit_code: 6, error: { code: 'INVALID_CONTEXT', status: 400 } });
    const fields = JSON.stringify(doc.error.issues);
    expect(fields).toContain('order_id');
    expect(fields).toContain('amount');
  });

  it('a task that fails exits 1 with --wait and shows the step error', async () => {
    const r = await tasker(['task', 'create', 'cli_ops.charge_order', '--context', ctx({ order_id: 'o-3', decline: true }), '--wait'], ADMIN);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/charge: .*error \(attempt 1\/1\)/);
    expect(r.stdout).toMatch(/^charge\s+error\s+1\/1\s+.*CARD_DECLINED: card declined by the issuer$/m);
    expect(r.stdout).toMatch(/^ship\s+pending\s+0\/3/m);
    expect(r.stdout).toMatch(/task tsk_\w+ error \(0\/2 steps done/);
  });
});

describe('tasker task get and list', () => {
  it('task get shows the steps, the transitions with reasons, and --json the whole view', async () => {
    const created = await api().createTask({ namespace: 'cli_shop', name: 'fulfil_order', context: { order_id: 'o-4', amount: 2 } });
    await waitForTask(created.task.id, (t) => t.state === 'complete');
    const [human, machine] = await Promise.all([tasker(['task', 'get', created.task.id]), tasker(['task', 'get', created.task.id, '--json'])]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^Task ${created.task.id}  cli_shop\\.fulfil_order@1\\.0\\.0  complete$`, 'm'));
    expect(human.stdout).toContain('Steps: 3 of 3 complete');
    expect(human.stdout).toMatch(/^Transitions \(\d+\)$/m);
    expect(human.stdout).toMatch(/^AT\s+OF\s+FROM\s+TO\s+ATTEMPT\s+ACTOR\s+REASON$/m);
    expect(human.stdout).toMatch(/^\S+\s+ship_order\s+enqueued\s+complete\s+1\s+/m);
    const view = json<TaskView>(machine);
    expect(view.id).toBe(created.task.id);
    expect(view.steps.map((s) => s.state)).toEqual(['complete', 'complete', 'complete']);
    expect(view.transitions!.length).toBeGreaterThanOrEqual(6);
    expect(view.parent).toBeNull();
    expect(view.children).toEqual([]);
  });

  it('task list filters by correlation id and pages with --limit/--cursor; --all follows every page', async () => {
    const corr = `cli-list-${Date.now()}`;
    const ids: string[] = [];
    for (const n of [1, 2, 3]) {
      ids.push((await api().createTask({ namespace: 'cli_shop', name: 'fulfil_order', context: { order_id: `l-${n}`, amount: n }, correlationId: corr })).task.id);
    }
    const page1 = json(await tasker(['task', 'list', '--correlation-id', corr, '--limit', '2', '--json']));
    expect(page1.items).toHaveLength(2);
    expect(page1.next_cursor).toEqual(expect.any(String));
    const [page2, all, human, none] = await Promise.all([
      tasker(['task', 'list', '--correlation-id', corr, '--limit', '2', '--cursor', page1.next_cursor, '--json']),
      tasker(['task', 'list', '--correlation-id', corr, '--limit', '2', '--all', '--json']),
      tasker(['task', 'list', '--correlation-id', corr, '--namespace', 'cli_shop']),
      tasker(['task', 'list', '--correlation-id', corr, '--created-before', '2000-01-01']),
    ]);
    expect(json(page2).items).toHaveLength(1);
    expect(json(page2).next_cursor).toBeNull();
    const allIds = json(all).items.map((t: { id: string }) => t.id);
    expect([...allIds].sort()).toEqual([...ids].sort());
    expect([...page1.items, ...json(page2).items].map((t: { id: string }) => t.id)).toEqual(allIds);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^TASK ID\s+TEMPLATE\s+STATE\s+CREATED\s+COMPLETED$/m);
    for (const id of ids) expect(human.stdout).toMatch(new RegExp(`^${id}\\s+cli_shop\\.fulfil_order@1\\.0\\.0\\s+`, 'm'));
    expect(human.stdout).toMatch(/^3 tasks$/m);
    expect(none.stdout).toContain('no tasks match');
  });
});

describe('tasker step retry | resolve | complete, task cancel', () => {
  /** A cli_ops task whose `charge` step failed (CARD_DECLINED). */
  async function failedTask(order: string): Promise<TaskView> {
    const { task } = await api().createTask({ namespace: 'cli_ops', name: 'charge_order', context: { order_id: order, decline: true } });
    return waitForTask(task.id, (t) => t.state === 'error');
  }

  it('step retry runs a failed step again and the task resumes to complete; retrying a complete step is refused with 6', async () => {
    const task = await failedTask('r-1');
    const r = await tasker(['step', 'retry', stepId(task, 'charge'), '--reason', 'issuer approved on the phone'], ADMIN);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^retried step 'charge' ${stepId(task, 'charge')}: now \\w+; task ${task.id} \\(cli_ops\\.charge_order@1\\.0\\.0\\) is in_progress$`, 'm'));
    const done = await waitForTask(task.id, (t) => t.state === 'complete');
    expect(done.steps.find((s) => s.name === 'charge')).toMatchObject({ state: 'complete', attempt: 2, result: { charged: true, attempt: 2 } });
    const audit = (await new HttpTaskClient({ baseUrl: url, token: ADMIN }).getTask(task.id)).transitions!;
    expect(audit).toContainEqual(expect.objectContaining({ step: 'charge', actor: 'cli-admin', reason: expect.stringContaining('issuer approved on the phone') }));

    const again = await tasker(['step', 'retry', stepId(task, 'charge'), '--reason', 'again', '--json'], ADMIN);
    expect(again.code).toBe(6);
    expect(json(again)).toMatchObject({ exit_code: 6, error: { code: 'INVALID_STATE', status: 409 } });
  });

  it('step resolve lets the dependents run; step complete gives them its result', async () => {
    const [a, b] = await Promise.all([failedTask('r-2'), failedTask('r-3')]);
    const [resolved, completed] = await Promise.all([
      tasker(['step', 'resolve', stepId(a, 'charge'), '--reason', 'charged in the console'], ADMIN),
      tasker(['step', 'complete', stepId(b, 'charge'), '--result', ctx({ charged: 'by hand' }), '--reason', 'charged by phone', '--json'], ADMIN),
    ]);
    expect(resolved.code).toBe(0);
    expect(resolved.stdout).toMatch(/^resolved step 'charge' stp_\w+: now complete; task tsk_\w+ \(cli_ops\.charge_order@1\.0\.0\) is in_progress$/m);
    expect(completed.code).toBe(0);
    expect(json(completed).task.steps.find((s: { name: string }) => s.name === 'charge')).toMatchObject({ state: 'complete', result: { charged: 'by hand' } });
    const [doneA, doneB] = await Promise.all([
      waitForTask(a.id, (t) => t.state === 'complete'),
      waitForTask(b.id, (t) => t.state === 'complete'),
    ]);
    expect(doneA.steps.find((s) => s.name === 'ship')!.state).toBe('complete');
    expect(doneB.steps.find((s) => s.name === 'ship')!.result).toEqual({ shipped: true, charge: { charged: 'by hand' } });
  });

  it('step complete with a --result that is not JSON is a usage error (2); a missing --reason too', async () => {
    const bad = await runHere(['step', 'complete', 'stp_x', '--result', '{nope', '--reason', 'x', '--url', url]);
    const missing = await runHere(['step', 'resolve', 'stp_x', '--url', url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--result: the value is not JSON');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '-r, --reason <reason>' not specified");
  });

  it('task cancel cancels a task in progress; cancelling it again is refused with 6', async () => {
    const created = await api().createTask({ namespace: 'cli_idle', name: 'hold', context: {} });
    expect(created.task.state).toBe('in_progress');
    const r = await tasker(['task', 'cancel', created.task.id, '--reason', 'no longer needed'], ADMIN);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^task ${created.task.id} \\(cli_idle\\.hold@1\\.0\\.0\\): cancelled; steps: 2 cancelled$`, 'm'));
    const again = await tasker(['task', 'cancel', created.task.id, '--reason', 'twice'], ADMIN);
    expect(again.code).toBe(6);
    expect(again.stderr).toMatch(/\(INVALID_STATE, HTTP 409\)/);
  });
});

describe('refusals and their exit codes', () => {
  it('bad token 4, no token 4, wrong namespace 4, action not allowed 4', async () => {
    const [bad, none, wrongNs, notAllowed] = await Promise.all([
      tasker(['task', 'list'], 'not-a-valid-token-at-all'),
      tasker(['task', 'list'], null),
      tasker(['task', 'create', 'cli_ops.charge_order', '--context', ctx({ order_id: 'x' }), '--json'], SHOP),
      tasker(['task', 'create', 'cli_shop.fulfil_order', '--context', ctx({ order_id: 'x', amount: 1 })], READER),
    ]);
    expect(bad.code).toBe(4);
    expect(bad.stderr).toMatch(/^error: .*\(UNAUTHENTICATED, HTTP 401\)$/m);
    expect(bad.stderr).toMatch(/^hint: .*--token or TASKER_API_TOKEN/m);
    expect(none.code).toBe(4);
    expect(none.stderr).toContain('UNAUTHENTICATED');
    expect(wrongNs.code).toBe(4);
    expect(json(wrongNs)).toMatchObject({ exit_code: 4, error: { code: 'FORBIDDEN', status: 403, message: expect.stringContaining("namespace 'cli_ops'") } });
    expect(notAllowed.code).toBe(4);
    expect(notAllowed.stderr).toMatch(/token 'reader' may not create.*\(FORBIDDEN, HTTP 403\)/);
  });

  it('unknown task, step, template and version exit 3', async () => {
    const [task, step, tpl, version] = await Promise.all([
      tasker(['task', 'get', 'tsk_doesnotexist0000000'], ADMIN),
      tasker(['step', 'retry', 'stp_doesnotexist0000000', '--reason', 'x', '--json'], ADMIN),
      tasker(['task', 'create', 'cli_shop.no_such_template', '--context', '{}'], ADMIN),
      tasker(['templates', 'show', 'cli_shop.fulfil_order@9.9.9'], ADMIN),
    ]);
    expect(task.code).toBe(3);
    expect(task.stderr).toMatch(/\(UNKNOWN_TASK, HTTP 404\)/);
    expect(step.code).toBe(3);
    expect(json(step).error).toMatchObject({ code: 'UNKNOWN_STEP', status: 404 });
    expect(tpl.code).toBe(3);
    expect(tpl.stderr).toContain('UNKNOWN_TEMPLATE');
    expect(version.code).toBe(3);
    expect(version.stderr).toContain('UNKNOWN_VERSION');
  });

  it('usage errors exit 2; an unreachable API exits 5', async () => {
    // Usage errors need no server: checked in this process (a spawn costs a second); the
    // spawned runs above show the exit code reaches the shell.
    const badJson = await runHere(['task', 'create', 'cli_shop.fulfil_order', '--context', '{not json', '--url', url]);
    const badRef = await runHere(['task', 'create', 'fulfil_order', '--context', '{}', '--url', url]);
    const badState = await runHere(['task', 'list', '--state', 'done', '--json', '--url', url]);
    const unreachable = await runCli(['task', 'get', 'tsk_x', '--url', 'http://127.0.0.1:1', '--json']);
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toContain('--context: the value is not JSON');
    expect(badRef.code).toBe(2);
    expect(badRef.stderr).toContain('expected <namespace>.<name>[@<version>]');
    expect(badState.code).toBe(2);
    expect(json(badState)).toMatchObject({ exit_code: 2, error: { code: 'USAGE', message: expect.stringContaining("'done' is invalid") } });
    expect(unreachable.code).toBe(5);
    expect(json(unreachable)).toMatchObject({
      exit_code: 5,
      error: { code: 'UNREACHABLE', message: expect.stringContaining('cannot reach the Tasker API at http://127.0.0.1:1') },
    });
  });
});

describe('tasker templates, namespaces', () => {
  it('lists templates and namespaces the token may read, and shows one version', async () => {
    const [templates, namespaces, shopNamespaces, show] = await Promise.all([
      tasker(['templates', 'list'], READER),
      tasker(['namespaces', 'list', '--json'], READER),
      tasker(['namespaces', 'list', '--json'], SHOP),
      tasker(['templates', 'show', 'cli_shop.fulfil_order@1.0.0', '--json'], SHOP),
    ]);
    expect(templates.code).toBe(0);
    expect(templates.stdout).toMatch(/^TEMPLATE\s+VERSION\s+STEPS\s+REGISTERED\s+DESCRIPTION$/m);
    expect(templates.stdout).toMatch(/^cli_shop\.fulfil_order\s+1\.0\.0\s+3\s+.*Reserve stock, charge, ship$/m);
    expect(templates.stdout).toMatch(/^cli_ops\.charge_order\s+1\.0\.0\s+2\s+/m);
    expect(json(namespaces).items.map((n: { name: string }) => n.name).sort()).toEqual(['cli_idle', 'cli_ops', 'cli_shop']);
    expect(json(shopNamespaces).items.map((n: { name: string }) => n.name)).toEqual(['cli_shop']);
    expect(json(show)).toMatchObject({ template: { namespace: 'cli_shop', name: 'fulfil_order', version: '1.0.0', steps: 3 } });
  });
});

describe('tasker worker start', () => {
  it('ran the cli_ops steps above and stops on SIGTERM with exit 0', async () => {
    expect(cliWorker.stderr).not.toMatch(/"level":(50|60)/);
    expect(await cliWorker.stop('SIGTERM')).toBe(0);
  });
});

/**
 * The result-origin check (issue 6) with workers of the other languages: an orchestrator
 * reading TASKER_BROKER_ACCESS_FILE applies a namespace's results only when their `user_id`
 * is that namespace's broker user, so the Python and Ruby SDKs must set it from the user of
 * their TASKER_AMQP_URL, and the Rust SDK gets it from the exec bridge's TypeScript runtime.
 * Each conformance worker runs as its namespace's own restricted user; the orchestrator as
 * its own. Own prefix, users, schema and access file, all removed afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import amqp, { type ChannelModel } from 'amqplib';
import { stringify } from 'yaml';
import { parseTemplate } from '@tasker/protocol';
import { Orchestrator } from '@tasker/orchestrator';
import { Broker } from '@tasker/transport';
import { AMQP_URL, DATABASE_URL, uniqueSuffix } from '../support/services.ts';
import { dropSchema, dropTopology, testLogger, taskWhen } from '../support/stack.ts';
import { DeadLetterReader } from '../support/dead-letters.ts';
import { accessFixture, type AccessFixture } from '../support/broker-access.ts';
import { PYTHON, REPO, RUBY, ensureRustBuilt, rustExecWorker } from '../polyglot/support.ts';

const WORKERS = {
  sdk_python: [PYTHON, 'sdks/python/examples/conformance_worker.py'],
  sdk_ruby: [RUBY, 'sdks/ruby/examples/conformance_worker.rb'],
  sdk_rust: rustExecWorker('tasker-conformance-worker'),
} as const;
type Namespace = keyof typeof WORKERS;
const NAMESPACES = Object.keys(WORKERS) as Namespace[];

const template = (namespace: string) => `
name: echo
namespace_name: ${namespace}
version: 1.0.0
steps:
  - { name: only, handler: { callable: conformance_succeed } }
`;

describe('result origin check with the Python, Ruby and Rust workers', () => {
  let fx: AccessFixture;
  let o: Orchestrator;
  let admin: Broker;
  let dead: DeadLetterReader;
  let tap: ChannelModel;
  const schema = `isosdk_${uniqueSuffix()}`;
  const dir = mkdtempSync(join(tmpdir(), 'tasker-sdk-origin-'));
  const children: ChildProcess[] = [];
  const output: Record<string, string> = {};
  /** Every result published on the results exchange, as the broker delivered it. */
  const results: Array<{ routingKey: string; userId: string | undefined; body: { step_id?: string } }> = [];

  /**
   * A namespace user's URL. Its password is what `openssl rand -base64` makes, `+` and `/`
   * included, and the URL keeps the `+` as it is (RFC 3986 allows it there), as an operator
   * pastes it: each SDK must decode it as a plus sign to log in.
   */
  const workerUrl = (ns: Namespace) => fx.urlOf(fx.userOf(ns)).replaceAll('%2B', '+');

  beforeAll(async () => {
    await ensureRustBuilt();
    fx = accessFixture(NAMESPACES);
    for (const ns of NAMESPACES) fx.passwords[fx.userOf(ns)] = `${randomBytes(9).toString('base64')}+/${randomBytes(3).toString('hex')}`;
    await fx.apply();
    // The access file an installation gives TASKER_BROKER_ACCESS_FILE, for this fixture's prefix and users.
    const accessFile = join(dir, 'broker.yaml');
    writeFileSync(
      accessFile,
      stringify({
        vhost: '/',
        prefix: fx.prefix,
        users: { orchestrator: '{prefix}-orchestrator', service: '{prefix}-service', namespace: '{prefix}-ns-{namespace}' },
        namespaces: NAMESPACES,
      }),
    );
    o = await Orchestrator.start({
      databaseUrl: DATABASE_URL(),
      amqpUrl: fx.urlOf(fx.config.users.orchestrator),
      dbSchema: schema,
      amqpPrefix: fx.prefix,
      brokerAccessFile: accessFile,
      httpEnabled: false,
      outboxSweepMs: 200,
      outboxStaleMs: 1000,
      logger: testLogger(),
    });
    await o.registerTemplates(NAMESPACES.map((ns) => parseTemplate(template(ns))));
    // The orchestrator's user may not read the dead letters (people do): read them as the admin.
    admin = await Broker.connect({ url: AMQP_URL(), connectionName: 'sdk origin test admin', logger: testLogger() });
    dead = await DeadLetterReader.start(admin, o.names.deadLetterQueue);
    // A copy of every result, to see the user_id each worker set.
    tap = await amqp.connect(AMQP_URL());
    const ch = await tap.createChannel();
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    await ch.bindQueue(queue, o.names.resultsExchange, '#');
    await ch.consume(queue, (m) => {
      if (m) results.push({ routingKey: m.fields.routingKey, userId: m.properties.userId, body: JSON.parse(m.content.toString()) });
    }, { noAck: true });

    for (const ns of NAMESPACES) {
      const [cmd, ...args] = WORKERS[ns];
      const child = spawn(cmd!, args, {
        cwd: REPO,
        env: { ...process.env, TASKER_AMQP_URL: workerUrl(ns), TASKER_AMQP_PREFIX: fx.prefix, TASKER_NAMESPACE: ns, TASKER_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      output[ns] = '';
      child.stdout!.on('data', (b: Buffer) => (output[ns] += b.toString()));
      child.stderr!.on('data', (b: Buffer) => (output[ns] += b.toString()));
      children.push(child);
    }
  }, 240_000);

  afterAll(async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const kill = setTimeout(() => c.kill('SIGKILL'), 15_000);
            c.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
    await tap?.close().catch(() => undefined);
    await dead?.close();
    await admin?.close();
    await o?.stop().catch(() => undefined);
    await fx?.cleanup();
    if (fx) await dropTopology(AMQP_URL(), fx.prefix, NAMESPACES);
    if (process.env.TEST_KEEP_SCHEMA !== '1') await dropSchema(DATABASE_URL(), schema);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('the orchestrator checks result origins from the access file', () => {
    expect(o.resultOrigin?.userOf('sdk_python')).toBe(fx.userOf('sdk_python'));
  });

  it.each(NAMESPACES)("a result of the %s worker carries its namespace user's user_id and is applied", async (ns) => {
    const [created] = await o.createTasks([{ namespace: ns, name: 'echo', context: { value: ns } }]);
    if (!created!.ok) throw created!.error;
    const id = created!.task.id;
    const task = await taskWhen(o, id, 'complete', 20_000).catch((err: Error) => {
      throw new Error(`${err.message}\nparked: ${JSON.stringify(dead.parked.map((p) => [p.code, p.reason]))}\nworker output: ${output[ns]}`);
    });
    expect(task.steps[0]!.result).toEqual({ ok: true, value: ns });
    const published = results.find((r) => r.body.step_id === task.steps[0]!.id);
    expect(published).toMatchObject({ routingKey: ns, userId: fx.userOf(ns) });
    expect(dead.parked.filter((p) => p.reason.includes(ns))).toEqual([]);
  });
});

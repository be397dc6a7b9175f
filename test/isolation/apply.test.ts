/**
 * Issue 6: `applyBrokerAccess` (`pnpm broker:apply`) is idempotent and refuses before
 * changing anything. Compared through the management API's own listings: users (with their
 * password hashes), permissions, topic permissions, exchanges, queues and bindings of the
 * test's prefix. Own prefix, users and schema, all removed afterwards.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BrokerAccessConflictError,
  ManagementApi,
  MissingPasswordError,
  applyBrokerAccess,
  parseBrokerAccess,
  passwordVariable,
} from '@tasker/orchestrator';
import { AMQP_URL, DATABASE_URL, uniqueSuffix } from '../support/services.ts';
import { dropSchema, dropTopology } from '../support/stack.ts';
import { MANAGEMENT_URL, accessFixture, connectAs, type AccessFixture } from '../support/broker-access.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** Everything the broker holds for a prefix and its users, in a stable order. */
async function snapshot(api: ManagementApi, prefix: string, users: string[]) {
  const mine = (name: string) => name.startsWith(`${prefix}.`);
  const byJson = <T>(list: T[]) => list.map((x) => JSON.stringify(x)).sort();
  const [allUsers, permissions, topics, exchanges, queues, bindings] = await Promise.all([
    api.users(),
    api.vhostPermissions('/'),
    api.vhostTopicPermissions('/'),
    api.exchanges('/'),
    api.queues('/'),
    api.bindings('/'),
  ]);
  return {
    users: byJson(allUsers.filter((u) => users.includes(u.name)).map((u) => ({ name: u.name, hash: u.password_hash, algorithm: u.hashing_algorithm, tags: u.tags }))),
    permissions: byJson(permissions.filter((p) => users.includes(p.user)).map(({ user, configure, write, read }) => ({ user, configure, write, read }))),
    topicPermissions: byJson(topics.filter((t) => users.includes(t.user)).map(({ user, exchange, write, read }) => ({ user, exchange, write, read }))),
    exchanges: byJson(exchanges.filter((e) => mine(e.name)).map(({ name, type, durable, auto_delete, internal, arguments: a }) => ({ name, type, durable, auto_delete, internal, a }))),
    queues: byJson(queues.filter((q) => mine(q.name)).map(({ name, durable, auto_delete, arguments: a }) => ({ name, durable, auto_delete, a }))),
    bindings: byJson(bindings.filter((b) => mine(b.source)).map(({ source, destination, destination_type, routing_key }) => ({ source, destination, destination_type, routing_key }))),
  };
}

describe('broker access apply', () => {
  const schema = `iso_${uniqueSuffix()}`;
  let fx: AccessFixture;
  const extraPrefixes: string[] = [];

  beforeAll(async () => {
    // A namespace registered in the database (as the orchestrator's registry does) gets a user too.
    const c = new pg.Client({ connectionString: DATABASE_URL() });
    await c.connect();
    await c.query(`CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".namespaces (name text PRIMARY KEY); INSERT INTO "${schema}".namespaces VALUES ('ledger')`);
    await c.end();
    fx = accessFixture(['payments'], { database: { url: DATABASE_URL(), schema, namespaces: ['ledger'] } });
  });

  afterAll(async () => {
    await fx?.cleanup();
    if (fx) await dropTopology(AMQP_URL(), fx.prefix, ['payments', 'ledger']);
    for (const p of extraPrefixes) await dropTopology(AMQP_URL(), p, ['payments']).catch(() => undefined);
    await dropSchema(DATABASE_URL(), schema);
  });

  it('run twice, leaves the same users, permissions and topology, and the second run changes nothing', async () => {
    const first = await fx.apply();
    expect(first.created).toBeGreaterThan(0);
    expect(first.namespaces).toEqual([
      { name: 'ledger', from: ['database'] },
      { name: 'payments', from: ['config'] },
    ]);
    expect(first.users.map((u) => u.user).sort()).toEqual([...fx.users].sort());
    const before = await snapshot(fx.api, fx.prefix, fx.users);
    expect(before.users).toHaveLength(4);
    expect(before.queues.some((q) => q.includes(`"${fx.prefix}.steps.ledger"`))).toBe(true);

    const second = await fx.apply();
    expect({ created: second.created, changed: second.changed }).toEqual({ created: 0, changed: 0 });
    expect(second.unchanged).toBe(first.items.length);
    expect(await snapshot(fx.api, fx.prefix, fx.users)).toEqual(before);
  });

  it('puts back a permission widened by hand, a stray topic permission, a new password and a tag, reporting each as changed', async () => {
    const user = fx.userOf('payments');
    await fx.apply();
    const before = await snapshot(fx.api, fx.prefix, fx.users);
    await fx.api.putPermissions('/', user, { configure: '.*', write: '.*', read: '.*' });
    await fx.api.putTopicPermission('/', user, { exchange: `${fx.prefix}.poison`, write: '.*', read: '.*' });
    await fetch(`${fx.api.location}/users/${encodeURIComponent(user)}`, {
      method: 'PUT',
      headers: { authorization: `Basic ${Buffer.from(`${new URL(MANAGEMENT_URL()).username || 'guest'}:${new URL(MANAGEMENT_URL()).password || 'guest'}`).toString('base64')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ password: 'changed-by-hand', tags: 'impersonator' }),
    });

    const report = await fx.apply();
    const changed = report.items.filter((i) => i.outcome === 'changed').map((i) => `${i.kind} ${i.name}: ${i.detail}`);
    expect(changed).toHaveLength(3);
    expect(changed[0]).toMatch(new RegExp(`^user ${user}: namespace payments: password, tags impersonator removed$`));
    expect(changed[1]).toContain(`permissions ${user}: configure .* → ^amq\\.gen-.*$`);
    expect(changed[2]).toContain(`${fx.prefix}.poison removed`);
    const after = await snapshot(fx.api, fx.prefix, fx.users);
    // Same everything; the password hash differs only by its new salt, and the password works.
    expect({ ...after, users: [] }).toEqual({ ...before, users: [] });
    const conn = await connectAs(fx.urlOf(user));
    await conn.close();
    const again = await fx.apply();
    expect({ created: again.created, changed: again.changed }).toEqual({ created: 0, changed: 0 });
  });

  it('refuses to run with a missing password, naming its variable, and changes nothing', async () => {
    const prefix = `iso${uniqueSuffix()}`;
    extraPrefixes.push(prefix);
    const config = testConfig(prefix);
    const given = { [`${prefix}-orchestrator`]: 'a', [`${prefix}-service`]: 'b' };
    const err = await applyBrokerAccess({ config, passwords: given, managementUrl: MANAGEMENT_URL(), readDatabase: false, env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingPasswordError);
    expect((err as Error).message).toContain(passwordVariable(`${prefix}-ns-payments`));
    expect(passwordVariable(`${prefix}-ns-payments`)).toBe(`TASKER_BROKER_PASSWORD_${prefix.toUpperCase()}_NS_PAYMENTS`);
    expect(await fx.api.user(`${prefix}-orchestrator`)).toBeNull();
    expect((await fx.api.exchanges('/')).filter((e) => e.name.startsWith(`${prefix}.`))).toEqual([]);
  });

  it('refuses, changing nothing, when a queue exists with other arguments', async () => {
    const prefix = `iso${uniqueSuffix()}`;
    extraPrefixes.push(prefix);
    await fx.api.declareQueue('/', `${prefix}.results`, { 'x-queue-type': 'classic' });
    const config = testConfig(prefix);
    const passwords = Object.fromEntries([`${prefix}-orchestrator`, `${prefix}-service`, `${prefix}-ns-payments`].map((u) => [u, 'pw']));
    const err = await applyBrokerAccess({ config, passwords, managementUrl: MANAGEMENT_URL(), readDatabase: false, env: {}, topology: { queueType: 'quorum' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerAccessConflictError);
    expect((err as Error).message).toContain(`queue '${prefix}.results' exists with arguments {"x-queue-type":"classic"}`);
    expect(await fx.api.user(`${prefix}-orchestrator`)).toBeNull();
    expect((await fx.api.exchanges('/')).filter((e) => e.name.startsWith(`${prefix}.`))).toEqual([]);
  });

  it('declares the results queue with TASKER_RESULTS_QUEUE_TYPE and the other work queues with TASKER_QUEUE_TYPE (plan only)', async () => {
    const prefix = `iso${uniqueSuffix()}`;
    extraPrefixes.push(prefix);
    await fx.api.declareQueue('/', `${prefix}.results`, { 'x-queue-type': 'classic' });
    const config = testConfig(prefix);
    const passwords = Object.fromEntries([`${prefix}-orchestrator`, `${prefix}-service`, `${prefix}-ns-payments`].map((u) => [u, 'pw']));
    const env = { TASKER_QUEUE_TYPE: 'quorum', TASKER_RESULTS_QUEUE_TYPE: 'classic' };
    const report = await applyBrokerAccess({ config, passwords, managementUrl: MANAGEMENT_URL(), readDatabase: false, env, dryRun: true });
    const queues = Object.fromEntries(report.items.filter((i) => i.kind === 'queue').map((i) => [i.name, `${i.outcome} ${i.detail}`]));
    expect(queues[`${prefix}.results`]).toBe('unchanged classic');
    expect(queues[`${prefix}.task_requests`]).toBe('created quorum');
    expect(queues[`${prefix}.steps.payments`]).toBe('created quorum');
    // The same broker, planned with the results queue following TASKER_QUEUE_TYPE: a conflict.
    const err = await applyBrokerAccess({ config, passwords, managementUrl: MANAGEMENT_URL(), readDatabase: false, env: { TASKER_QUEUE_TYPE: 'quorum' }, dryRun: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerAccessConflictError);
    expect((err as Error).message).toContain('TASKER_RESULTS_QUEUE_TYPE');
  });

  it('the pnpm broker:apply command reads the file and the environment, and reports nothing to change on a second run', async () => {
    const prefix = `iso${uniqueSuffix()}`;
    extraPrefixes.push(prefix);
    const dir = mkdtempSync(join(tmpdir(), 'tasker-broker-'));
    const file = join(dir, 'broker.yaml');
    writeFileSync(file, `vhost: /\nprefix: ${prefix}\nusers:\n  orchestrator: "{prefix}-orchestrator"\n  service: "{prefix}-service"\n  namespace: "{prefix}-ns-{namespace}"\nnamespaces: [payments]\n`);
    const secrets = join(dir, 'secrets.yaml');
    writeFileSync(secrets, `${prefix}-orchestrator: one\n${prefix}-service: two\n`);
    const env = {
      ...process.env,
      TASKER_BROKER_ACCESS_FILE: file,
      TASKER_BROKER_SECRETS_FILE: secrets,
      [passwordVariable(`${prefix}-ns-payments`)]: 'three',
      TASKER_AMQP_PREFIX: prefix,
      TASKER_DB_SCHEMA: `${schema}_none`,
      TASKER_RABBITMQ_MANAGEMENT_URL: MANAGEMENT_URL(),
    };
    const run = () => spawnSync(process.execPath, ['--import', 'tsx', 'packages/orchestrator/src/bin/broker-apply.ts'], { cwd: REPO, env, encoding: 'utf8' });
    try {
      const first = run();
      expect(first.status, first.stderr).toBe(0);
      expect(first.stdout).toMatch(/\d+ created, 0 changed, \d+ unchanged/);
      expect(first.stdout).toContain(`created   user ${prefix}-ns-payments`);
      const second = run();
      expect(second.status, second.stderr).toBe(0);
      expect(second.stdout).toMatch(/^nothing to change: \d+ items already as configured$/m);
      const wrongPrefix = spawnSync(process.execPath, ['--import', 'tsx', 'packages/orchestrator/src/bin/broker-apply.ts'], {
        cwd: REPO,
        env: { ...env, TASKER_AMQP_PREFIX: 'another' },
        encoding: 'utf8',
      });
      expect(wrongPrefix.status).toBe(1);
      expect(wrongPrefix.stderr).toContain(`TASKER_AMQP_PREFIX is 'another' but ${file} says prefix '${prefix}'`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      for (const u of ['orchestrator', 'service', 'ns-payments']) await fx.api.deleteUser(`${prefix}-${u}`);
    }
  }, 60_000);
});

function testConfig(prefix: string) {
  return parseBrokerAccess(
    { prefix, users: { orchestrator: '{prefix}-orchestrator', service: '{prefix}-service', namespace: '{prefix}-ns-{namespace}' }, namespaces: ['payments'] },
    'test',
  );
}

/**
 * The pure parts of broker access (issue 6): the grants, the passwords, the file and the
 * origin check. The broker itself is exercised by test/isolation/.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, coreTopology, names, namespaceTopology } from '@tasker/protocol';
import { parseBrokerAccess } from '../src/broker-access/config-file.ts';
import { passwordMatches } from '../src/broker-access/password-hash.ts';
import { MissingPasswordError, passwordVariable, resolvePasswords } from '../src/broker-access/passwords.ts';
import { planGrants, type UserGrant } from '../src/broker-access/permissions.ts';
import { ResultOriginCheck, resolveResultOrigin } from '../src/broker-access/result-origin.ts';

const config = parseBrokerAccess(
  { prefix: 'tasker', users: { orchestrator: '{prefix}-orchestrator', service: '{prefix}-service', namespace: '{prefix}-ns-{namespace}' }, namespaces: ['payments'] },
  'test',
);
const n = names('tasker');
const grants = planGrants(config, n, ['customer_success', 'payments']);
const grant = (user: string): UserGrant => grants.find((g) => g.user === user)!;
const matches = (regex: string, name: string) => new RegExp(regex).test(name);

describe('broker grants', () => {
  it('the orchestrator may configure, write and read every name it declares, and write the default exchange', () => {
    const o = grant('tasker-orchestrator');
    const topo = [coreTopology(n), namespaceTopology(n, 'payments'), namespaceTopology(n, 'a_namespace_registered_later')];
    const all = topo.flatMap((t) => [...t.exchanges.map((e) => e.name), ...t.queues.map((q) => q.name)]);
    for (const name of all) {
      expect(matches(o.configure, name), name).toBe(true);
      expect(matches(o.write, name), name).toBe(true);
      expect(matches(o.read, name), name).toBe(name !== n.deadLetterQueue);
    }
    expect(matches(o.write, 'amq.default')).toBe(true);
    expect(matches(o.configure, 'amq.default')).toBe(false);
    // Nothing of another installation sharing the broker.
    for (const other of ['other.results', 'taskerx.results', 'tasker.results.x', 'tasker', 'tasker.steps.Payments']) {
      expect(matches(o.configure, other), other).toBe(false);
    }
  });

  it("a namespace user reads only its own step queue, the control exchange and server-named queues, and publishes only under its namespace", () => {
    const p = grant('tasker-ns-payments');
    expect(p.role).toBe('namespace');
    for (const ok of ['tasker.steps.payments', 'tasker.control', 'amq.gen-abc']) expect(matches(p.read, ok), ok).toBe(true);
    for (const no of ['tasker.steps.customer_success', 'tasker.steps.payments_x', 'tasker.results', 'tasker.task_requests', 'tasker.poison', 'tasker.steps']) {
      expect(matches(p.read, no), no).toBe(false);
    }
    expect(matches(p.configure, 'amq.gen-abc')).toBe(true);
    for (const no of ['tasker.steps.payments', 'tasker.results', 'anything']) expect(matches(p.configure, no), no).toBe(false);
    expect(matches(p.write, 'amq.default')).toBe(false);
    expect(matches(p.write, 'tasker.steps')).toBe(false);
    const results = p.topics.find((t) => t.exchange === 'tasker.results')!;
    expect(matches(results.write, 'payments')).toBe(true);
    for (const no of ['customer_success', 'payments.x', '#', 'payments_x']) expect(matches(results.write, no), no).toBe(false);
    const dead = p.topics.find((t) => t.exchange === 'tasker.dead')!;
    expect(matches(dead.write, 'invalid.step.payments')).toBe(true);
    expect(matches(dead.write, 'invalid.result')).toBe(false);
  });

  it('a service user only writes task requests and reads nothing', () => {
    const s = grant('tasker-service');
    expect({ configure: s.configure, write: s.write, read: s.read }).toEqual({ configure: '^$', write: '^tasker\\.task_requests$', read: '^$' });
    expect(s.topics).toEqual([{ exchange: 'tasker.task_requests', write: '^[a-z][a-z0-9_]*$', read: '^$' }]);
  });

  it('refuses two roles sharing a user', () => {
    const same = parseBrokerAccess({ prefix: 'tasker', users: { orchestrator: 'o', service: 's', namespace: '{namespace}' } }, 'test');
    expect(() => planGrants(same, n, ['o'])).toThrow("broker user 'o' would serve both orchestrator and namespace o");
  });
});

describe('broker access file', () => {
  it('names every bad field', () => {
    expect(() => parseBrokerAccess({ prefix: 'Bad', users: { orchestrator: 'o', service: 's', namespace: 'ns' }, extra: 1 }, 'f.yaml')).toThrow(
      /broker access file f\.yaml is invalid: .*prefix: .*users\.namespace: must contain \{namespace\}/,
    );
  });
  it('replaces {prefix}, and an explicit prefix wins over the file', () => {
    const c = parseBrokerAccess({ prefix: 'tasker', users: { orchestrator: '{prefix}-o', service: '{prefix}-s', namespace: '{prefix}-ns-{namespace}' } }, 'f', { prefix: 'demo1' });
    expect(c.users).toEqual({ orchestrator: 'demo1-o', service: 'demo1-s', namespacePattern: 'demo1-ns-{namespace}' });
  });
});

describe('broker passwords', () => {
  it('are read from the caller, then TASKER_BROKER_PASSWORD_<USER>, and a missing one is named by its variable', () => {
    expect(passwordVariable('tasker-ns-customer_success')).toBe('TASKER_BROKER_PASSWORD_TASKER_NS_CUSTOMER_SUCCESS');
    const got = resolvePasswords(['a-b', 'c'], { given: { c: 'given' }, env: { TASKER_BROKER_PASSWORD_A_B: 'env', TASKER_BROKER_PASSWORD_C: 'ignored' } });
    expect([...got]).toEqual([['a-b', 'env'], ['c', 'given']]);
    const err = (() => {
      try {
        resolvePasswords(['a-b', 'x.y'], { env: { TASKER_BROKER_PASSWORD_A_B: 'env' } });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(MissingPasswordError);
    expect(err!.message).toBe(
      "no password for broker user 'x.y': set TASKER_BROKER_PASSWORD_X_Y (or name a YAML file of \"user: password\" lines in TASKER_BROKER_SECRETS_FILE)",
    );
  });

  it("are compared with RabbitMQ's salted hash, so an unchanged password is left alone", () => {
    // rabbit_password_hashing_sha256 of 'pw', as the management API shows it.
    const hash = 'HaOGs8EkVfVxi+TLDiOS/cg9oMG+q43r2K5eFJpmqazUUkmn';
    expect(passwordMatches(hash, 'rabbit_password_hashing_sha256', 'pw')).toBe(true);
    expect(passwordMatches(hash, 'rabbit_password_hashing_sha256', 'pw2')).toBe(false);
    expect(passwordMatches(undefined, undefined, 'pw')).toBe(false);
  });
});

describe('result origin check', () => {
  const check = new ResultOriginCheck({ namespaceUser: 'tasker-ns-{namespace}', orchestratorUsers: ['tasker-orchestrator'] });

  it("applies a result published by its namespace's user or an orchestrator", () => {
    expect(check.check({ namespace: 'payments' }, 'tasker-ns-payments')).toBeNull();
    expect(check.check({ namespace: 'payments' }, 'tasker-orchestrator')).toBeNull();
    expect(check.check({ namespace: 'payments', child_outcome: true }, 'tasker-orchestrator')).toBeNull();
  });

  it('refuses another user, no user, and a child outcome from a worker, with FORBIDDEN_ORIGIN', () => {
    for (const [r, user] of [
      [{ namespace: 'payments' }, 'tasker-ns-customer_success'],
      [{ namespace: 'payments' }, undefined],
      [{ namespace: 'payments', child_outcome: true }, 'tasker-ns-payments'],
    ] as const) {
      expect(check.check(r, user)?.code).toBe(ErrorCode.FORBIDDEN_ORIGIN);
    }
  });

  it('is off by default, and refuses being configured twice', () => {
    expect(resolveResultOrigin({ prefix: 'tasker', ownUser: 'guest' })).toBeNull();
    expect(() =>
      resolveResultOrigin({ prefix: 'tasker', ownUser: 'guest', file: 'infra/broker.yaml', given: { namespaceUser: '{namespace}', orchestratorUsers: [] } }),
    ).toThrow('resultOrigin (in code) and TASKER_BROKER_ACCESS_FILE both say who may publish results; give one of them');
  });

  it("reads infra/broker.yaml, and refuses it for another prefix", () => {
    const fromFile = resolveResultOrigin({ prefix: 'tasker', ownUser: 'tasker-orchestrator', file: new URL('../../../infra/broker.yaml', import.meta.url).pathname });
    expect(fromFile!.userOf('payments')).toBe('tasker-ns-payments');
    expect([...fromFile!.orchestratorUsers]).toEqual(['tasker-orchestrator']);
    expect(() => resolveResultOrigin({ prefix: 'other', ownUser: 'x', file: new URL('../../../infra/broker.yaml', import.meta.url).pathname })).toThrow(
      /is for prefix 'tasker' but the orchestrator runs with TASKER_AMQP_PREFIX 'other'/,
    );
  });
});

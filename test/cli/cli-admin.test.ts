import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiTokenConfig } from '@tasker/protocol';
import { buildProgram } from '../../packages/cli/src/index.ts';
import { Runtime } from '../../packages/cli/src/runtime.ts';
import { dropSchema, dropTopology, startStack, type Stack } from '../support/stack.ts';
import { AMQP_URL, DATABASE_URL, uniqueSuffix } from '../support/services.ts';
import { CliProcess, FIXTURES, json, runCli, runHere } from './run-cli.ts';

/**
 * The `tasker` commands for the platform team and template authors: templates validate
 * (local) and publish, migrate, orchestrator start, worker start refusals, and --help.
 */
const ADMIN = 'admin-token-0123456789';
const READER = 'reader-token-0123456789';
const tokens: ApiTokenConfig[] = [
  { name: 'platform', token: ADMIN, namespaces: ['*'], actions: ['admin'] },
  { name: 'reader', token: READER, namespaces: ['*'], actions: ['read'] },
];
const TEMPLATES = join(FIXTURES, 'templates');
const BROKEN = join(FIXTURES, 'broken');

let stack: Stack;
let url: string;

beforeAll(async () => {
  stack = await startStack({ apiTokens: tokens });
  url = stack.orchestrator.httpUrl!;
  for (const ns of ['cli_shop', 'cli_ops', 'cli_idle']) stack.namespaces.add(ns);
});

afterAll(async () => {
  await stack?.cleanup();
});

describe('tasker templates validate (local, no server)', () => {
  it('reports every error with its file and step, and exits 1', async () => {
    const [human, machine] = await Promise.all([runCli(['templates', 'validate', BROKEN]), runCli(['templates', 'validate', BROKEN, '--json'])]);
    expect(human.code).toBe(1);
    const expected: Array<[string, string | null, RegExp]> = [
      ['cycle.yaml', 'second', /dependency cycle: second -> first -> second/],
      ['typo.yaml', 'charge', /unknown field\(s\) 'dependecies'/],
      ['typo.yaml', 'notify', /field 'handler'/],
      ['unknown_dependency.yaml', 'ship', /depends on unknown step 'wrap'/],
      ['unknown_dependency.yaml', 'pack', /duplicate step name/],
      ['unsupported.yaml', 'route', /step type 'decision' is not supported yet/],
      ['not_yaml.yaml', null, /YAML: /],
    ];
    for (const [file, step, message] of expected) {
      const prefix = `error  test/cli/fixtures/broken/${file}: ${step ? `step '${step}': ` : ''}`;
      const line = human.stdout.split('\n').find((l) => l.startsWith(prefix) && message.test(l));
      expect(line, `${prefix}${message}`).toBeDefined();
    }
    expect(human.stdout).toMatch(/^ok {5}test\/cli\/fixtures\/broken\/fine\.yaml: cli_broken\.fine@1\.0\.0 \(1 step\)$/m);
    expect(human.stdout).toMatch(/^8 errors in 5 of 6 files$/m);

    expect(machine.code).toBe(1);
    const doc = json(machine);
    expect(doc.valid).toBe(false);
    expect(doc.problems).toHaveLength(8);
    for (const [file, step] of expected) {
      expect(doc.problems).toContainEqual(expect.objectContaining({ file: `test/cli/fixtures/broken/${file}`, step }));
    }
    expect(doc.templates).toEqual([{ file: 'test/cli/fixtures/broken/fine.yaml', namespace: 'cli_broken', name: 'fine', version: '1.0.0', steps: 1 }]);
  });

  it('exits 0 on valid templates (a folder or one file), 2 on a path that does not exist', async () => {
    const [folder, file, missing] = await Promise.all([
      runCli(['templates', 'validate', TEMPLATES]),
      runCli(['templates', 'validate', join(TEMPLATES, 'cli_shop/fulfil_order.yaml'), '--env', 'production']),
      runCli(['templates', 'validate', join(FIXTURES, 'nope')]),
    ]);
    expect(folder.code).toBe(0);
    expect(folder.stdout).toMatch(/^3 templates valid$/m);
    expect(file.code).toBe(0);
    expect(file.stdout).toMatch(/cli_shop\.fulfil_order@1\.0\.0 \(3 steps\)/);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file or folder');
  });
});

describe('tasker templates publish', () => {
  it('refuses a token without admin (4), publishes with one, changes nothing the second time, and sends nothing when a template is invalid (1)', async () => {
    const [refused, broken] = await Promise.all([
      runCli(['templates', 'publish', TEMPLATES, '--url', url, '--token', READER]),
      runCli(['templates', 'publish', BROKEN, '--url', url, '--token', ADMIN]),
    ]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/token 'reader' may not admin.*\(FORBIDDEN, HTTP 403\)/);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/nothing published: 8 errors/);
    expect(broken.stderr).toMatch(/test\/cli\/fixtures\/broken\/cycle\.yaml: step 'second': dependency cycle/);

    const first = await runCli(['templates', 'publish', TEMPLATES, '--url', url, '--token', ADMIN]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^registered cli_shop\.fulfil_order@1\.0\.0 {2}\(test\/cli\/fixtures\/templates\/cli_shop\/fulfil_order\.yaml\)$/m);
    expect(first.stdout).toMatch(/^3 registered, 0 unchanged$/m);
    const [second, listed] = await Promise.all([
      runCli(['templates', 'publish', TEMPLATES, '--url', url, '--token', ADMIN, '--json']),
      runCli(['templates', 'list', '--url', url, '--token', READER, '--json']),
    ]);
    expect(second.code).toBe(0);
    expect(json(second).published.map((p: { created: boolean }) => p.created)).toEqual([false, false, false]);
    expect(json(listed).items.map((t: { namespace: string; name: string }) => `${t.namespace}.${t.name}`).sort()).toEqual([
      'cli_idle.hold',
      'cli_ops.charge_order',
      'cli_shop.fulfil_order',
    ]);
  });
});

describe('tasker migrate', () => {
  it('creates a fresh schema, then finds it up to date', async () => {
    const schema = `t_cli_${uniqueSuffix()}`;
    const env = { TASKER_DATABASE_URL: DATABASE_URL(), TASKER_DB_SCHEMA: schema };
    try {
      const first = await runCli(['migrate'], env);
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(first.stdout).toMatch(new RegExp(`^schema ${schema}: applied \\d+ migrations? \\(0001_initial`, 'm'));
      const again = await runCli(['migrate', '--json'], env);
      expect(again.code).toBe(0);
      expect(json(again)).toEqual({ schema, applied: [] });
    } finally {
      await dropSchema(DATABASE_URL(), schema);
    }
  });

  it('a bad setting is a usage error (2)', async () => {
    const r = await runHere(['migrate', '--schema', 'Not-A-Schema']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('dbSchema (TASKER_DB_SCHEMA)');
  });
});

describe('tasker orchestrator start', () => {
  it('runs from the environment, serves the API, and stops on SIGTERM with exit 0', async () => {
    const sfx = uniqueSuffix();
    const schema = `t_${sfx}`;
    const prefix = `t${sfx}`;
    const proc = new CliProcess(['orchestrator', 'start', '--templates-dir', TEMPLATES, '--http-port', '0', '--json'], {
      TASKER_DATABASE_URL: DATABASE_URL(),
      TASKER_AMQP_URL: AMQP_URL(),
      TASKER_DB_SCHEMA: schema,
      TASKER_AMQP_PREFIX: prefix,
      TASKER_API_TOKENS: JSON.stringify(tokens),
    });
    try {
      const started = await proc.waitFor(
        (p) => {
          try {
            return JSON.parse(p.stdout) as { status: string; http_url: string };
          } catch {
            return undefined;
          }
        },
        30_000,
        'the start document',
      );
      expect(started).toMatchObject({ status: 'running', http_url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });
      const ns = await runCli(['namespaces', 'list', '--url', started.http_url, '--token', READER]);
      expect(ns.code).toBe(0);
      expect(ns.stdout).toMatch(/^NAMESPACE\s+TEMPLATES\s+CREATED$/m);
      expect(ns.stdout).toMatch(/^cli_shop\s+1\s+/m);
      expect(await proc.stop('SIGTERM')).toBe(0);
    } finally {
      await proc.stop('SIGKILL');
      await dropTopology(AMQP_URL(), prefix, ['cli_shop', 'cli_ops', 'cli_idle']);
      await dropSchema(DATABASE_URL(), schema);
    }
  });

  it('refuses to start without API tokens unless --insecure is given (exit 2)', async () => {
    const r = await runCli(['orchestrator', 'start'], { TASKER_DB_SCHEMA: 'never_created' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no API tokens configured');
  });
});

describe('tasker worker start', () => {
  it('refuses a module without handlers, or one that does not load (exit 2)', async () => {
    const none = await runCli(['worker', 'start', '--namespace', 'cli_ops', '--handlers', join(FIXTURES, 'no-handlers.ts')]);
    const missing = await runHere(['worker', 'start', '--namespace', 'cli_ops', '--handlers', join(FIXTURES, 'missing.ts')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/exports no handlers: export `handlers`/);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--handlers: cannot load/);
  });
});

describe('tasker --help', () => {
  it('every command has --help with an example and the exit codes', async () => {
    const paths: string[][] = [];
    type Command = ReturnType<typeof buildProgram>;
    const walk = (cmd: Command, path: string[]): void => {
      paths.push(path);
      for (const sub of cmd.commands) walk(sub, [...path, sub.name()]);
    };
    walk(buildProgram(new Runtime({ stdout: process.stdout, stderr: process.stderr, env: {} })), []);
    expect(paths.length).toBeGreaterThanOrEqual(20);
    for (const path of paths) {
      const r = await runHere([...path, '--help']);
      expect(r.code, path.join(' ')).toBe(0);
      expect(r.stdout, path.join(' ')).toMatch(/\nExamples?:\n {2}\$ tasker /);
      expect(r.stdout, path.join(' ')).toMatch(/Exit codes:/);
    }
  });

  it('tasker --help (spawned) documents every exit code', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const code of [0, 1, 2, 3, 4, 5, 6]) expect(r.stdout).toMatch(new RegExp(`^ {2}${code} {2}\\S`, 'm'));
  });
});

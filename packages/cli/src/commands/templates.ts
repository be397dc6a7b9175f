import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Command } from 'commander';
import { TemplateError, parseTemplate, qualifiedName, type CompiledTemplate, type TemplateProblem } from '@tasker/protocol';
import { parseTemplateRef } from '../args.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { dateTime, table, templateRef } from '../format.ts';
import { examples, type Runtime } from '../runtime.ts';

interface LoadedTemplate {
  file: string;
  source: string;
  template: CompiledTemplate;
}

interface Checked {
  files: string[];
  templates: LoadedTemplate[];
  problems: TemplateProblem[];
}

/**
 * Reads and compiles every template under `path` (a folder, searched recursively for
 * `*.yaml`/`*.yml`, or one file), locally, collecting every problem of every file, each
 * naming its file and step, and versions defined twice.
 */
async function checkTemplates(path: string, environment: string | null): Promise<Checked> {
  let files: string[];
  try {
    files = (await stat(path)).isDirectory() ? await findTemplateFiles(path) : [path];
  } catch (err) {
    throw new CliError(ExitCode.USAGE, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or folder' : (err as Error).message}`);
  }
  const templates: LoadedTemplate[] = [];
  const problems: TemplateProblem[] = [];
  for (const file of files) {
    const origin = relative(process.cwd(), file) || file;
    const source = await readFile(file, 'utf8');
    try {
      templates.push({ file: origin, source, template: parseTemplate(source, { origin, environment }) });
    } catch (err) {
      if (err instanceof TemplateError) problems.push(...err.problems);
      else throw err;
    }
  }
  const seen = new Map<string, string>();
  for (const t of templates) {
    const key = templateRef(t.template);
    const first = seen.get(key);
    if (first) problems.push({ origin: t.file, step: null, message: `${key} is also defined in ${first}`, code: 'TEMPLATE_INVALID' });
    else seen.set(key, t.file);
  }
  return { files, templates, problems };
}

/**
 * Every `*.yaml` / `*.yml` under a folder, recursively, sorted: the files the orchestrator's
 * TASKER_TEMPLATES_DIR loads. (Not imported from @tasker/orchestrator, so commands that
 * only talk HTTP do not load its database and broker code.)
 */
async function findTemplateFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && /\.ya?ml$/.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/** `file: step 'x': message`; a multi-line message (YAML errors quote the source) is indented under it. */
function problemLine(p: TemplateProblem): string {
  const [first, ...rest] = p.message.split('\n').filter((l) => l.trim() !== '');
  return `${p.origin}${p.step ? `: step '${p.step}'` : ''}: ${first ?? ''}${rest.map((l) => `\n         ${l}`).join('')}`;
}

export function registerTemplateCommands(program: Command, rt: Runtime): void {
  const templates = program.command('templates').description('validate, publish, list and show task templates');
  examples(templates, 'tasker templates validate templates/', 'tasker templates publish templates/payments');

  examples(
    templates
      .command('validate')
      .description('check every template in a folder (or one file) locally, without a server; every error names its file and step; exit 1 when any')
      .argument('<dir>', 'a folder (searched recursively for *.yaml, *.yml) or one template file')
      .option('-e, --env <name>', 'also apply the environments.<name> overrides, as TASKER_ENV does'),
    'tasker templates validate templates/',
    'tasker templates validate templates/payments/process_refund.yaml --env production',
  ).action(async (dir: string, opts: { env?: string }, cmd: Command) => {
    const { out } = rt.begin(cmd);
    const checked = await checkTemplates(dir, opts.env ?? null);
    const bad = new Set(checked.problems.map((p) => p.origin));
    const valid = checked.files.length > 0 && checked.problems.length === 0;
    out.result(
      {
        valid,
        files: checked.files.length,
        templates: checked.templates.map((t) => ({ file: t.file, ...ref(t.template), steps: t.template.steps.length })),
        problems: checked.problems.map((p) => ({ file: p.origin, step: p.step, message: p.message, code: p.code })),
      },
      () => {
        for (const t of checked.templates.filter((x) => !bad.has(x.file))) {
          out.line(`ok     ${t.file}: ${templateRef(t.template)} (${t.template.steps.length} step${t.template.steps.length === 1 ? '' : 's'})`);
        }
        for (const p of checked.problems) out.line(`error  ${problemLine(p)}`);
        out.line('');
        if (checked.files.length === 0) out.line(`no template files (*.yaml, *.yml) in ${dir}`);
        else if (valid) out.line(`${checked.files.length} template${checked.files.length === 1 ? '' : 's'} valid`);
        else {
          out.line(`${checked.problems.length} error${checked.problems.length === 1 ? '' : 's'} in ${bad.size} of ${checked.files.length} files`);
        }
      },
    );
    rt.exitCode = valid ? ExitCode.OK : ExitCode.FAILED;
  });

  examples(
    templates
      .command('publish')
      .description('validate every template in a folder (or one file) locally, then register each with the orchestrator; nothing is sent when one is invalid. A registered version is immutable: publishing it again changes nothing')
      .argument('<dir>', 'a folder (searched recursively for *.yaml, *.yml) or one template file'),
    'tasker templates publish templates/payments --token "$TASKER_ADMIN_TOKEN"',
  ).action(async (dir: string, _opts: unknown, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    const checked = await checkTemplates(dir, null);
    if (checked.files.length === 0) throw new CliError(ExitCode.FAILED, `no template files (*.yaml, *.yml) in ${dir}`, 'NO_TEMPLATES');
    if (checked.problems.length > 0) {
      throw new CliError(
        ExitCode.FAILED,
        `nothing published: ${checked.problems.length} error${checked.problems.length === 1 ? '' : 's'} in the templates:\n${checked.problems.map((p) => `  ${problemLine(p)}`).join('\n')}`,
        'TEMPLATE_INVALID',
        checked.problems.map((p) => ({ path: `${p.origin}${p.step ? `#${p.step}` : ''}`, message: p.message })),
      );
    }
    const api = client();
    const published: Array<{ file: string; created: boolean; template: unknown }> = [];
    for (const t of checked.templates) {
      let res;
      try {
        res = await api.registerTemplate(t.source);
      } catch (err) {
        if (published.length > 0) out.note(`published before the failure: ${published.map((p) => p.file).join(', ')}`);
        out.note(`failed on ${t.file} (${qualifiedName(t.template)}@${t.template.version})`);
        throw err;
      }
      published.push({ file: t.file, created: res.created, template: res.template });
      out.line(`${res.created ? 'registered' : 'unchanged '} ${templateRef(res.template)}  (${t.file}${res.created ? '' : ', already registered'})`);
    }
    out.document({ published });
    out.line('');
    out.line(`${published.filter((p) => p.created).length} registered, ${published.filter((p) => !p.created).length} unchanged`);
    rt.exitCode = ExitCode.OK;
  });

  examples(
    templates
      .command('list')
      .description('list registered template versions')
      .option('-n, --namespace <namespace>', 'only this namespace'),
    'tasker templates list --namespace payments',
  ).action(async (opts: { namespace?: string }, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    const items = await client().listTemplates(opts.namespace);
    out.result({ items }, () => {
      if (items.length === 0) return out.line('no templates registered');
      out.line(
        table(
          ['TEMPLATE', 'VERSION', 'STEPS', 'REGISTERED', 'DESCRIPTION'],
          items.map((t) => [`${t.namespace}.${t.name}`, t.version, String(t.steps), dateTime(t.created_at), t.description ?? '']),
        ),
      );
    });
    rt.exitCode = ExitCode.OK;
  });

  examples(
    templates
      .command('show')
      .description('show one registered template version with its definition')
      .argument('<template>', 'namespace.name@version'),
    'tasker templates show payments.process_refund@1.0.0',
  ).action(async (refArg: string, _opts: unknown, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    const r = parseTemplateRef(refArg, true);
    const detail = await client().getTemplate(r.namespace, r.name, r.version!);
    out.result(detail, () => {
      const t = detail.template;
      out.line(`${templateRef(t)}: ${t.steps} steps, registered ${dateTime(t.created_at)}`);
      if (t.description) out.line(t.description);
      out.line('');
      out.line(JSON.stringify(detail.definition, null, 2));
    });
    rt.exitCode = ExitCode.OK;
  });

  const namespaces = program.command('namespaces').description('list namespaces');
  examples(
    namespaces.command('list').description('list the namespaces that have templates'),
    'tasker namespaces list',
  ).action(async (_opts: unknown, cmd: Command) => {
    const { out, client } = rt.begin(cmd);
    const items = await client().listNamespaces();
    out.result({ items }, () => {
      if (items.length === 0) return out.line('no namespaces');
      out.line(table(['NAMESPACE', 'TEMPLATES', 'CREATED'], items.map((n) => [n.name, String(n.templates), dateTime(n.created_at)])));
    });
    rt.exitCode = ExitCode.OK;
  });
  examples(namespaces, 'tasker namespaces list --json');
}

function ref(t: CompiledTemplate): { namespace: string; name: string; version: string } {
  return { namespace: t.namespace, name: t.name, version: t.version };
}

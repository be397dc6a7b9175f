import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseTemplate, TemplateError, type CompiledTemplate, type TemplateProblem } from '@tasker/protocol';
import { ContextValidator } from '../tasks/context-validator.ts';

/** Every `*.yaml` / `*.yml` under a folder, recursively, in a stable order. */
export async function findTemplateFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && /\.ya?ml$/.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/**
 * Loads and compiles every template in a folder. All problems of all files are collected
 * and thrown together, each naming its file and step.
 */
export async function loadTemplateDir(dir: string, environment: string | null = null): Promise<CompiledTemplate[]> {
  const files = await findTemplateFiles(dir);
  const templates: CompiledTemplate[] = [];
  const problems: TemplateProblem[] = [];
  const validator = new ContextValidator();
  for (const file of files) {
    const origin = relative(process.cwd(), file) || file;
    try {
      const t = parseTemplate(await readFile(file, 'utf8'), { origin, environment });
      if (t.inputSchema) {
        try {
          validator.compile(origin, t.inputSchema);
        } catch (err) {
          problems.push({ origin, step: null, message: (err as Error).message, code: 'TEMPLATE_INVALID' });
          continue;
        }
      }
      templates.push(t);
    } catch (err) {
      if (err instanceof TemplateError) problems.push(...err.problems);
      else throw err;
    }
  }
  const seen = new Map<string, string>();
  for (const t of templates) {
    const key = `${t.namespace}.${t.name}@${t.version}`;
    if (seen.has(key)) {
      problems.push({ origin: dir, step: null, message: `${key} is defined twice`, code: 'TEMPLATE_INVALID' });
    }
    seen.set(key, key);
  }
  if (problems.length > 0) throw new TemplateError(problems);
  return templates;
}

import { readFileSync } from 'node:fs';
import { IDENTIFIER_PATTERN, NAMESPACE_PATTERN } from '@tasker/protocol';
import { CliError, ExitCode } from './exit-codes.ts';

/**
 * A JSON option value: inline JSON, `@path` to read a file, or `@-` to read stdin. A file
 * that cannot be read or text that does not parse is a usage error naming the option.
 */
export function readJsonArg(value: string, option: string): unknown {
  let text = value;
  let from = 'the value';
  if (value.startsWith('@')) {
    const path = value.slice(1);
    from = path === '-' ? 'stdin' : path;
    try {
      text = readFileSync(path === '-' ? 0 : path, 'utf8');
    } catch (err) {
      throw new CliError(ExitCode.USAGE, `${option}: cannot read ${from}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CliError(ExitCode.USAGE, `${option}: ${from} is not JSON: ${(err as Error).message}`);
  }
}

export interface TemplateRef {
  namespace: string;
  name: string;
  version?: string;
}

/** `namespace.name[@version]`, e.g. `payments.process_refund@1.0.0`. */
export function parseTemplateRef(ref: string, requireVersion = false): TemplateRef {
  const m = /^([^.@]+)\.([^.@]+)(?:@(.+))?$/.exec(ref);
  const usage = `expected <namespace>.<name>${requireVersion ? '@<version>' : '[@<version>]'}, e.g. payments.process_refund${requireVersion ? '@1.0.0' : ''}`;
  if (!m) throw new CliError(ExitCode.USAGE, `'${ref}': ${usage}`);
  const [, namespace, name, version] = m as unknown as [string, string, string, string | undefined];
  if (!NAMESPACE_PATTERN.test(namespace)) {
    throw new CliError(ExitCode.USAGE, `'${ref}': namespace '${namespace}' must be lower snake case (a-z, 0-9, _), starting with a letter`);
  }
  if (!IDENTIFIER_PATTERN.test(name)) {
    throw new CliError(ExitCode.USAGE, `'${ref}': template name '${name}' must be an identifier (letters, digits, _)`);
  }
  if (requireVersion && !version) throw new CliError(ExitCode.USAGE, `'${ref}': ${usage}`);
  return { namespace, name, ...(version ? { version } : {}) };
}

/** A positive integer option. */
export function positiveInt(option: string, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new CliError(ExitCode.USAGE, `${option}: '${value}' is not an integer from 1 to ${max}`);
    return n;
  };
}

/** A time option: anything `Date` reads (`2025-01-31`, `2025-01-31T12:00:00Z`), sent as ISO 8601 UTC. */
export function isoTimeArg(option: string) {
  return (value: string): string => {
    const t = Date.parse(value);
    if (Number.isNaN(t)) throw new CliError(ExitCode.USAGE, `${option}: '${value}' is not a date or time (e.g. 2025-01-31T12:00:00Z)`);
    return new Date(t).toISOString();
  };
}

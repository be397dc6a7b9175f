import { z } from 'zod';
import { parseDocument } from 'yaml';
import { IDENTIFIER_PATTERN, MAX_DELAY_MS, NAMESPACE_PATTERN } from './names.ts';
import { BACKOFF_KINDS, DEFAULT_RETRY_POLICY, type RetryPolicy } from './retry.ts';
import { ErrorCode, TaskerError } from './errors.ts';
import { jsonObject } from './json-value.ts';

/**
 * The task template format (YAML). It follows the original Tasker project's format so its
 * templates load unchanged; fields that project uses for features not built here
 * (`system_dependencies`, `domain_events`, `publishes_events`, ...) are accepted and ignored.
 * Any other unknown field is refused, so a typo such as `dependecies` is caught at load.
 */

export const SUPPORTED_STEP_TYPES = ['standard'] as const;
/** Step types of the original project that this version refuses with a clear error. */
export const UNSUPPORTED_STEP_TYPES = ['decision', 'batchable', 'batch_worker', 'deferred_convergence'] as const;

const ignored = z.unknown().optional();

export const RetrySpec = z.strictObject({
  retryable: z.boolean().optional().describe('false: a single attempt. @defaultValue true'),
  max_attempts: z.int().min(0).max(1000).optional().describe('Attempts in all, including the first. @defaultValue 3'),
  backoff: z.enum(BACKOFF_KINDS).optional().describe('@defaultValue exponential'),
  initial_delay: z.number().min(0).optional().describe('Base delay in seconds.'),
  max_delay: z.number().min(0).optional().describe('Cap in seconds.'),
  backoff_base_ms: z.int().min(0).optional().describe('Base delay in milliseconds.'),
  max_backoff_ms: z.int().min(0).optional().describe('Cap in milliseconds.'),
  backoff_multiplier: z.number().min(1).max(100).optional().describe('Exponential factor. @defaultValue 2'),
});
export type RetrySpec = z.infer<typeof RetrySpec>;

export const HandlerSpec = z.strictObject({
  callable: z.string().min(1).max(500),
  method: z.string().min(1).max(200).nullable().optional(),
  initialization: jsonObject.nullable().optional(),
});

export const StepSpec = z.strictObject({
  name: z.string().regex(IDENTIFIER_PATTERN, 'step names are identifiers (letters, digits, _)'),
  description: z.string().nullable().optional(),
  type: z
    .string()
    .optional()
    .describe(`standard (default); ${UNSUPPORTED_STEP_TYPES.join(', ')} are not supported yet`),
  handler: HandlerSpec,
  dependencies: z.array(z.string()).nullable().optional(),
  retry: RetrySpec.nullable().optional(),
  timeout_seconds: z.number().positive().max(7 * 24 * 3600).nullable().optional(),
  // Accepted for compatibility with the original project; not used here.
  system_dependency: ignored,
  publishes_events: ignored,
  batch_config: ignored,
  lifecycle: ignored,
});
export type StepSpec = z.infer<typeof StepSpec>;

/** An environment override with this step name applies to every step. */
export const ALL_STEPS = 'ALL';

export const StepOverride = z.strictObject({
  name: z.string(),
  timeout_seconds: z.number().positive().max(7 * 24 * 3600).nullable().optional(),
  retry: RetrySpec.partial().optional(),
  handler: z.strictObject({ initialization: jsonObject.optional() }).optional(),
});

export const TemplateSpec = z.strictObject({
  name: z.string().regex(IDENTIFIER_PATTERN, 'template names are identifiers (letters, digits, _)'),
  namespace_name: z
    .string()
    .regex(NAMESPACE_PATTERN, 'namespaces are lower snake case (a-z, 0-9, _), starting with a letter'),
  version: z.union([z.string(), z.number()]).transform(String),
  description: z.string().nullable().optional(),
  metadata: z.record(z.string(), z.unknown()).nullable().optional(),
  input_schema: z.record(z.string(), z.unknown()).nullable().optional(),
  steps: z.array(StepSpec).min(1, 'a template needs at least one step'),
  environments: z
    .record(z.string(), z.strictObject({ steps: z.array(StepOverride).optional() }))
    .nullable()
    .optional(),
  // Accepted for compatibility with the original project; not used here.
  system_dependencies: ignored,
  domain_events: ignored,
});
export type TemplateSpec = z.infer<typeof TemplateSpec>;

export const SEMVER_PATTERN = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

export interface CompiledStep {
  name: string;
  description: string | null;
  callable: string;
  method: string | null;
  initialization: Record<string, unknown>;
  /** Direct dependencies, as written. */
  dependencies: string[];
  /** Steps that list this one as a dependency. */
  dependents: string[];
  /** Every step this one depends on, directly or transitively: their results reach the handler. */
  ancestors: string[];
  retry: RetryPolicy;
  timeoutMs: number | null;
}

export interface CompiledTemplate {
  namespace: string;
  name: string;
  version: string;
  description: string | null;
  inputSchema: Record<string, unknown> | null;
  metadata: Record<string, unknown> | null;
  /** In dependency order: every step comes after all its dependencies. */
  steps: CompiledStep[];
}

/** One problem found in a template, with where it is. */
export interface TemplateProblem {
  origin: string;
  step: string | null;
  message: string;
  code: typeof ErrorCode.TEMPLATE_INVALID | typeof ErrorCode.UNSUPPORTED_STEP_TYPE;
}

export class TemplateError extends TaskerError {
  constructor(readonly problems: TemplateProblem[]) {
    super(
      problems.some((p) => p.code === ErrorCode.UNSUPPORTED_STEP_TYPE) &&
        problems.every((p) => p.code === ErrorCode.UNSUPPORTED_STEP_TYPE)
        ? ErrorCode.UNSUPPORTED_STEP_TYPE
        : ErrorCode.TEMPLATE_INVALID,
      problems.map(formatProblem).join('\n'),
      problems.map((p) => ({ path: p.step ? `steps.${p.step}` : '(template)', message: p.message })),
    );
  }
}

export function formatProblem(p: TemplateProblem): string {
  return `${p.origin}${p.step ? `: step '${p.step}'` : ''}: ${p.message}`;
}

export interface CompileOptions {
  /** Where the template came from, used in every error (a file path). */
  origin?: string;
  /** Apply `environments.<name>` overrides. @defaultValue none */
  environment?: string | null;
}

/** Parses YAML text and compiles it. Throws {@link TemplateError} naming the origin and step. */
export function parseTemplate(source: string, options: CompileOptions = {}): CompiledTemplate {
  const origin = options.origin ?? '(template)';
  const doc = parseDocument(source, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new TemplateError(
      doc.errors.map((e) => ({ origin, step: null, message: `YAML: ${e.message}`, code: ErrorCode.TEMPLATE_INVALID })),
    );
  }
  return compileTemplate(doc.toJS(), options);
}

function stepOf(raw: unknown, path: readonly PropertyKey[]): string | null {
  if (path[0] !== 'steps' || typeof path[1] !== 'number') return null;
  const steps = (raw as { steps?: unknown[] } | null)?.steps;
  const step = Array.isArray(steps) ? (steps[path[1]] as { name?: unknown } | undefined) : undefined;
  return typeof step?.name === 'string' ? step.name : `#${path[1] + 1}`;
}

/** Validates and compiles a template object (already parsed from YAML or JSON). */
export function compileTemplate(raw: unknown, options: CompileOptions = {}): CompiledTemplate {
  const origin = options.origin ?? '(template)';
  const problem = (step: string | null, message: string, code: TemplateProblem['code'] = ErrorCode.TEMPLATE_INVALID) => ({
    origin,
    step,
    message,
    code,
  });

  const parsed = TemplateSpec.safeParse(raw);
  if (!parsed.success) {
    throw new TemplateError(
      parsed.error.issues.map((i) => {
        const step = stepOf(raw, i.path);
        const where = step ? i.path.slice(2) : i.path;
        const field = where.length > 0 ? `field '${where.map(String).join('.')}'` : step ? 'step' : 'template';
        const msg =
          i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.map((k) => `'${k}'`).join(', ')}` : i.message;
        return problem(step, `${field}: ${msg}`);
      }),
    );
  }
  const spec = parsed.data;
  const problems: TemplateProblem[] = [];

  if (!SEMVER_PATTERN.test(spec.version)) {
    const hint = typeof (raw as { version?: unknown }).version === 'number' ? "; YAML read it as a number: quote it, e.g. '1.0.0'" : '';
    problems.push(problem(null, `version '${spec.version}' is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)${hint}`));
  }

  // Environment overrides, merged in the order written; `name: ALL` applies to every step
  // (as in the original project).
  const overrides = new Map<string, z.infer<typeof StepOverride>>();
  if (options.environment && spec.environments?.[options.environment]) {
    for (const o of spec.environments[options.environment]!.steps ?? []) {
      for (const s of spec.steps) {
        if (o.name !== ALL_STEPS && o.name !== s.name) continue;
        const prev = overrides.get(s.name);
        overrides.set(s.name, {
          ...prev,
          ...o,
          name: s.name,
          retry: { ...(prev?.retry ?? {}), ...(o.retry ?? {}) },
          handler: { initialization: { ...(prev?.handler?.initialization ?? {}), ...(o.handler?.initialization ?? {}) } },
        });
      }
    }
  }
  for (const [env, body] of Object.entries(spec.environments ?? {})) {
    for (const o of body.steps ?? []) {
      if (o.name !== ALL_STEPS && !spec.steps.some((s) => s.name === o.name)) {
        problems.push(problem(o.name, `environments.${env} overrides a step that does not exist`));
      }
    }
  }

  const seen = new Set<string>();
  for (const s of spec.steps) {
    if (seen.has(s.name)) problems.push(problem(s.name, 'duplicate step name'));
    seen.add(s.name);
    const type = s.type ?? 'standard';
    if ((UNSUPPORTED_STEP_TYPES as readonly string[]).includes(type)) {
      problems.push(
        problem(
          s.name,
          `step type '${type}' is not supported yet (supported: ${SUPPORTED_STEP_TYPES.join(', ')})`,
          ErrorCode.UNSUPPORTED_STEP_TYPE,
        ),
      );
    } else if (type !== 'standard') {
      problems.push(problem(s.name, `unknown step type '${type}' (supported: ${SUPPORTED_STEP_TYPES.join(', ')})`));
    }
    const deps = s.dependencies ?? [];
    if (new Set(deps).size !== deps.length) problems.push(problem(s.name, 'lists the same dependency twice'));
    for (const d of deps) {
      if (d === s.name) problems.push(problem(s.name, 'depends on itself'));
      else if (!spec.steps.some((o) => o.name === d)) problems.push(problem(s.name, `depends on unknown step '${d}'`));
    }
  }

  const steps: CompiledStep[] = [];
  for (const s of spec.steps) {
    const o = overrides.get(s.name);
    const retrySpec: RetrySpec = { ...(s.retry ?? {}), ...(o?.retry ?? {}) };
    const policy = normalizeRetry(retrySpec, (m) => problems.push(problem(s.name, m)));
    const timeout = o?.timeout_seconds !== undefined ? o.timeout_seconds : s.timeout_seconds;
    steps.push({
      name: s.name,
      description: s.description ?? null,
      callable: s.handler.callable,
      method: s.handler.method ?? null,
      initialization: { ...(s.handler.initialization ?? {}), ...(o?.handler?.initialization ?? {}) },
      dependencies: [...new Set(s.dependencies ?? [])],
      dependents: [],
      ancestors: [],
      retry: policy,
      timeoutMs: timeout != null ? Math.round(timeout * 1000) : null,
    });
  }
  if (problems.length > 0) throw new TemplateError(problems);

  const ordered = topologicalOrder(steps);
  if ('cycle' in ordered) {
    throw new TemplateError([
      problem(ordered.cycle[0]!, `dependency cycle: ${[...ordered.cycle, ordered.cycle[0]].join(' -> ')}`),
    ]);
  }
  const byName = new Map(ordered.order.map((s) => [s.name, s]));
  for (const s of ordered.order) {
    for (const d of s.dependencies) byName.get(d)!.dependents.push(s.name);
    const anc = new Set<string>();
    for (const d of s.dependencies) {
      anc.add(d);
      for (const a of byName.get(d)!.ancestors) anc.add(a);
    }
    s.ancestors = ordered.order.filter((x) => anc.has(x.name)).map((x) => x.name);
  }
  return {
    namespace: spec.namespace_name,
    name: spec.name,
    version: spec.version,
    description: spec.description ?? null,
    inputSchema: spec.input_schema ?? null,
    metadata: spec.metadata ?? null,
    steps: ordered.order,
  };
}

function normalizeRetry(r: RetrySpec, report: (message: string) => void): RetryPolicy {
  const conflict = (a: string, b: string) => report(`retry.${a} and retry.${b} disagree; give one of them`);
  if (r.initial_delay != null && r.backoff_base_ms != null && Math.round(r.initial_delay * 1000) !== r.backoff_base_ms) {
    conflict('initial_delay', 'backoff_base_ms');
  }
  if (r.max_delay != null && r.max_backoff_ms != null && Math.round(r.max_delay * 1000) !== r.max_backoff_ms) {
    conflict('max_delay', 'max_backoff_ms');
  }
  const baseDelayMs =
    r.backoff_base_ms ?? (r.initial_delay != null ? Math.round(r.initial_delay * 1000) : DEFAULT_RETRY_POLICY.baseDelayMs);
  let maxDelayMs =
    r.max_backoff_ms ?? (r.max_delay != null ? Math.round(r.max_delay * 1000) : Math.max(DEFAULT_RETRY_POLICY.maxDelayMs, baseDelayMs));
  if (maxDelayMs > MAX_DELAY_MS) report(`retry delay cap ${maxDelayMs} ms is above the longest supported delay (${MAX_DELAY_MS} ms)`);
  if (maxDelayMs < baseDelayMs) maxDelayMs = baseDelayMs;
  const retryable = r.retryable ?? true;
  const maxAttempts = retryable ? Math.max(1, r.max_attempts ?? DEFAULT_RETRY_POLICY.maxAttempts) : 1;
  return {
    maxAttempts,
    backoff: r.backoff ?? DEFAULT_RETRY_POLICY.backoff,
    baseDelayMs,
    maxDelayMs,
    multiplier: r.backoff_multiplier ?? DEFAULT_RETRY_POLICY.multiplier,
  };
}

function topologicalOrder(steps: CompiledStep[]): { order: CompiledStep[] } | { cycle: string[] } {
  const indegree = new Map(steps.map((s) => [s.name, s.dependencies.length]));
  const dependents = new Map<string, string[]>(steps.map((s) => [s.name, []]));
  for (const s of steps) for (const d of s.dependencies) dependents.get(d)!.push(s.name);
  const byName = new Map(steps.map((s) => [s.name, s]));
  // Keep the written order among steps that are ready together.
  const queue = steps.filter((s) => s.dependencies.length === 0).map((s) => s.name);
  const order: CompiledStep[] = [];
  while (queue.length > 0) {
    const name = queue.shift()!;
    order.push(byName.get(name)!);
    for (const d of dependents.get(name)!) {
      const left = indegree.get(d)! - 1;
      indegree.set(d, left);
      if (left === 0) queue.push(d);
    }
  }
  if (order.length === steps.length) return { order };
  // Walk back along unresolved dependencies until a name repeats: that loop is the cycle.
  const stuck = new Set(steps.filter((s) => indegree.get(s.name)! > 0).map((s) => s.name));
  let cur = [...stuck][0]!;
  const path: string[] = [];
  while (!path.includes(cur)) {
    path.push(cur);
    cur = byName.get(cur)!.dependencies.find((d) => stuck.has(d))!;
  }
  return { cycle: path.slice(path.indexOf(cur)).reverse() };
}

/** `namespace.name`: the fully qualified template name. */
export function qualifiedName(t: { namespace: string; name: string }): string {
  return `${t.namespace}.${t.name}`;
}

/** Splits a semantic version into sortable parts. */
export function semverParts(version: string): { major: number; minor: number; patch: number; prerelease: string } {
  const m = SEMVER_PATTERN.exec(version);
  if (!m) throw new TaskerError(ErrorCode.TEMPLATE_INVALID, `version '${version}' is not a semantic version`);
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), prerelease: m[4] ?? '' };
}

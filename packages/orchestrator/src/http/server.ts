import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  CompleteStepBody,
  CreateTaskBody,
  CreateTasksBody,
  CreateTasksResponse,
  ErrorCode,
  ErrorResponse,
  GetTaskQuery,
  ID_PATTERN,
  Limits,
  ListTasksQuery,
  ListTasksResponse,
  NamespaceSummary,
  OperatorActionBody,
  TaskView,
  TaskerError,
  TemplateError,
  TemplateSummary,
  TemplateValidation,
  compileTemplate,
  compiledSchema,
  jsonValueProblem,
  parseTemplate,
  zodIssues,
  type ApiAction,
  type CompiledTemplate,
  type ErrorBody,
} from '@tasker/protocol';
import type { Logger } from 'pino';
import type { Orchestrator } from '../orchestrator.ts';
import { authorize, INSECURE_PRINCIPAL, type Principal, type TokenAuthenticator } from './auth.ts';
import { buildOpenApi, type RouteDoc } from './openapi.ts';

/** HTTP status for each refusal code; anything else is a 500 with no internals. */
const STATUS: Partial<Record<string, number>> = {
  [ErrorCode.INVALID_MESSAGE]: 400,
  [ErrorCode.INVALID_CONTEXT]: 400,
  [ErrorCode.TEMPLATE_INVALID]: 400,
  [ErrorCode.UNSUPPORTED_STEP_TYPE]: 400,
  [ErrorCode.UNAUTHENTICATED]: 401,
  [ErrorCode.FORBIDDEN]: 403,
  [ErrorCode.UNKNOWN_NAMESPACE]: 404,
  [ErrorCode.UNKNOWN_TEMPLATE]: 404,
  [ErrorCode.UNKNOWN_VERSION]: 404,
  [ErrorCode.UNKNOWN_TASK]: 404,
  [ErrorCode.UNKNOWN_STEP]: 404,
  [ErrorCode.INVALID_STATE]: 409,
  [ErrorCode.PAYLOAD_TOO_LARGE]: 413,
  // A refusal of ours to retry (a created task that could not be read back), not the caller's mistake.
  [ErrorCode.INTERNAL]: 500,
};

function errorBody(e: TaskerError): { error: ErrorBody } {
  return { error: e.toJSON() };
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  // Depth and NUL first, as for every message: the error names the place in the body.
  const bad = jsonValueProblem(value);
  if (bad) throw new TaskerError(ErrorCode.INVALID_MESSAGE, `${what}: ${bad.path} ${bad.message}`, [bad]);
  const parsed = compiledSchema(schema).safeParse(value);
  if (!parsed.success) {
    const issues = zodIssues(parsed.error);
    throw new TaskerError(ErrorCode.INVALID_MESSAGE, `${what} is invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, issues);
  }
  return parsed.data;
}

const TaskEnvelope = z.object({ task: TaskView });
const CreatedTask = z.object({ created: z.boolean(), task: TaskView });
const Items = <S extends z.ZodType>(s: S) => z.object({ items: z.array(s) });

/** Every route with its action and shapes: the OpenAPI document is generated from this. */
export const ROUTES: RouteDoc[] = [
  { method: 'post', path: '/v1/tasks', summary: 'Create a task (201), or return the task an idempotency key already made (200)', action: 'create', body: CreateTaskBody, response: CreatedTask },
  { method: 'post', path: '/v1/tasks/batch', summary: 'Create up to 500 tasks in one request (200): each as POST /v1/tasks would, its own status in results, in order', action: 'create', body: CreateTasksBody, response: CreateTasksResponse },
  { method: 'get', path: '/v1/tasks', summary: 'List tasks, newest first, filtered, with cursor pagination', action: 'read', query: ListTasksQuery, response: ListTasksResponse },
  { method: 'get', path: '/v1/tasks/{id}', summary: 'A task with its steps, transitions, parent and children; with wait_ms, once it ends or that time has passed', action: 'read', query: GetTaskQuery, response: TaskView },
  { method: 'post', path: '/v1/tasks/{id}/cancel', summary: 'Cancel a task in progress and the tasks it created', action: 'operate', body: OperatorActionBody, response: TaskEnvelope },
  { method: 'post', path: '/v1/steps/{id}/retry', summary: 'Retry a failed step; the task resumes from there', action: 'operate', body: OperatorActionBody, response: TaskEnvelope },
  { method: 'post', path: '/v1/steps/{id}/resolve', summary: 'Resolve a failed step by hand; its dependents proceed', action: 'operate', body: OperatorActionBody, response: TaskEnvelope },
  { method: 'post', path: '/v1/steps/{id}/complete', summary: 'Complete an unfinished step by hand with a result', action: 'operate', body: CompleteStepBody, response: TaskEnvelope },
  { method: 'get', path: '/v1/namespaces', summary: 'Namespaces and how many templates each has', action: 'read', response: Items(NamespaceSummary) },
  { method: 'get', path: '/v1/templates', summary: 'Registered templates (optionally of one namespace)', action: 'read', query: z.object({ namespace: z.string().optional() }), response: Items(TemplateSummary) },
  { method: 'get', path: '/v1/templates/{namespace}/{name}/{version}', summary: 'One template version with its compiled definition', action: 'read', response: z.object({ template: TemplateSummary, definition: z.unknown() }) },
  { method: 'post', path: '/v1/templates/validate', summary: 'Validate a template (YAML or JSON) without registering it', action: 'read', bodyText: true, response: TemplateValidation },
  { method: 'post', path: '/v1/templates', summary: 'Register a template (YAML or JSON); a registered version is immutable', action: 'admin', bodyText: true, response: z.object({ created: z.boolean(), template: TemplateSummary }) },
  { method: 'get', path: '/v1/diagnostics/stuck', summary: 'What waits without progress, with why', action: 'admin', response: z.object({ items: z.array(z.unknown()) }) },
  { method: 'get', path: '/health/live', summary: 'The process is up', action: null, response: z.object({ status: z.string() }) },
  { method: 'get', path: '/health/ready', summary: 'PostgreSQL and RabbitMQ answer (503 otherwise)', action: null, response: z.object({ status: z.string(), checks: z.record(z.string(), z.string()) }) },
];

/**
 * The HTTP API. Every route but health and the OpenAPI document needs a bearer token whose
 * scope covers the route's action and the namespace concerned (unless the orchestrator runs
 * with TASKER_API_INSECURE=true). Errors are `{error: {code, message, issues?}}` and never
 * carry SQL or stack traces.
 */
export function buildHttpServer(orchestrator: Orchestrator, logger: Logger, auth: TokenAuthenticator | null) {
  // Request logs stay below the default level; errors are logged by the error handler.
  const app = Fastify({ loggerInstance: logger.child({ component: 'http' }, { level: 'warn' }), bodyLimit: Limits.maxMessageBytes });
  const openapi = buildOpenApi(ROUTES);

  // Templates may be posted as YAML.
  for (const type of ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain']) {
    app.addContentTypeParser(type, { parseAs: 'string' }, (_req, body, done) => done(null, body));
  }

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof TaskerError) {
      return reply.status(STATUS[err.code] ?? 400).send(errorBody(err));
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) {
      const code = status === 413 ? ErrorCode.PAYLOAD_TOO_LARGE : ErrorCode.INVALID_MESSAGE;
      return reply.status(status).send({ error: { code, message: (err as Error).message } });
    }
    req.log.error({ err }, 'request failed');
    return reply.status(500).send({ error: { code: ErrorCode.INTERNAL, message: `internal error; see the orchestrator log for request ${req.id}` } });
  });

  const principal = (req: FastifyRequest): Principal =>
    (req as FastifyRequest & { principal?: Principal }).principal ?? (auth ? auth.authenticate(req.headers.authorization) : INSECURE_PRINCIPAL);
  /** Authorizes an already authenticated caller. */
  const allowed = (p: Principal, action: ApiAction, namespace: string | null): Principal => {
    authorize(p, action, namespace);
    return p;
  };
  const allow = (req: FastifyRequest, action: ApiAction, namespace: string | null): Principal => allowed(principal(req), action, namespace);
  // Every protected route authenticates before it reads its body or looks anything up, so an
  // unauthenticated caller learns nothing (not even whether an id exists).
  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0]!;
    if (path.startsWith('/health/') || path === '/openapi.json') return;
    (req as FastifyRequest & { principal?: Principal }).principal = principal(req);
  });
  // An answer sent once stop() has begun (a wait it released, any request in flight) closes
  // its connection: the server's close waits for every open connection, and a client's
  // keep-alive one would hold it until the client lets go.
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (orchestrator.isStopping) void reply.header('connection', 'close');
    done(null, payload);
  });
  const namespaceOfTask = async (id: string): Promise<string> => {
    if (!ID_PATTERN.test(id)) throw new TaskerError(ErrorCode.UNKNOWN_TASK, `no task '${id.slice(0, 80)}'`);
    const row = await orchestrator.db.selectFrom('tasks').select('namespace').where('id', '=', id).executeTakeFirst();
    if (!row) throw new TaskerError(ErrorCode.UNKNOWN_TASK, `no task '${id}'`);
    return row.namespace;
  };
  const namespaceOfStep = async (id: string): Promise<string> => {
    if (!ID_PATTERN.test(id)) throw new TaskerError(ErrorCode.UNKNOWN_STEP, `no step '${id.slice(0, 80)}'`);
    const row = await orchestrator.db
      .selectFrom('steps')
      .innerJoin('tasks', 'tasks.id', 'steps.task_id')
      .select('tasks.namespace')
      .where('steps.id', '=', id)
      .executeTakeFirst();
    if (!row) throw new TaskerError(ErrorCode.UNKNOWN_STEP, `no step '${id}'`);
    return row.namespace;
  };
  const fullTask = async (id: string) => (await orchestrator.getTask(id, { transitions: true, family: true }))!;

  app.post('/v1/tasks', async (req, reply) => {
    const body = parse(CreateTaskBody, req.body, 'request body');
    const p = allow(req, 'create', body.namespace);
    // Set on the parsed body (zod made it for this request), not `{ ...body, requested_by }`:
    // a spread followed by more properties is slow in V8 (see outboxRow).
    body.requested_by ??= p.name;
    const outcome = await orchestrator.submitTask(body);
    if (!outcome.ok) throw outcome.error;
    // The task and its steps: as created (no read-back on the hot path), or, for a repeated
    // idempotency key, as it is now. Transitions and family are for GET /v1/tasks/:id.
    const task = outcome.view ?? (await orchestrator.getTask(outcome.task.id));
    return reply.status(outcome.created ? 201 : 200).send({ created: outcome.created, task });
  });

  app.post('/v1/tasks/batch', async (req) => {
    const body = parse(CreateTasksBody, req.body, 'request body');
    // Every namespace must be allowed before anything is created: a batch is refused whole.
    const p = principal(req);
    for (const namespace of new Set(body.tasks.map((t) => t.namespace))) allowed(p, 'create', namespace);
    for (const t of body.tasks) t.requested_by ??= p.name;
    const outcomes = await orchestrator.createTasks(body.tasks);
    const results = await Promise.all(
      outcomes.map(async (o) => {
        if (!o.ok) return { status: STATUS[o.error.code] ?? 400, ...errorBody(o.error) };
        const task = o.view ?? (await orchestrator.getTask(o.task.id));
        return { status: o.created ? 201 : 200, created: o.created, task };
      }),
    );
    return { results };
  });

  app.get('/v1/tasks', async (req) => {
    const q = parse(ListTasksQuery, req.query, 'query');
    const p = allow(req, 'read', q.namespace ?? null);
    return orchestrator.listTasks(q, p.namespaces);
  });

  app.get<{ Params: { id: string } }>('/v1/tasks/:id', async (req, reply) => {
    const q = parse(GetTaskQuery, req.query ?? {}, 'query');
    allow(req, 'read', await namespaceOfTask(req.params.id));
    if (q.wait_ms) {
      // A caller that goes away stops waiting (and holds nothing).
      const gone = new AbortController();
      const onClose = () => gone.abort();
      reply.raw.once('close', onClose);
      try {
        await orchestrator.awaitTaskEnd(req.params.id, q.wait_ms, gone.signal);
      } finally {
        reply.raw.off('close', onClose);
      }
    }
    return fullTask(req.params.id);
  });

  app.post<{ Params: { id: string } }>('/v1/tasks/:id/cancel', async (req) => {
    const body = parse(OperatorActionBody, req.body ?? {}, 'request body');
    const p = allow(req, 'operate', await namespaceOfTask(req.params.id));
    await orchestrator.cancelTask(req.params.id, { name: p.name, reason: body.reason });
    return { task: await fullTask(req.params.id) };
  });

  const stepAction = (kind: 'retry' | 'resolve' | 'complete') => async (req: FastifyRequest<{ Params: { id: string } }>, _reply: FastifyReply) => {
    const body = kind === 'complete' ? parse(CompleteStepBody, req.body ?? {}, 'request body') : parse(OperatorActionBody, req.body ?? {}, 'request body');
    const p = allow(req, 'operate', await namespaceOfStep(req.params.id));
    const actor = { name: p.name, reason: body.reason };
    const { taskId } =
      kind === 'retry'
        ? await orchestrator.retryStep(req.params.id, actor)
        : await orchestrator.completeStep(req.params.id, actor, kind === 'resolve' ? { kind } : { kind, result: (body as CompleteStepBody).result });
    return { task: await fullTask(taskId) };
  };
  app.post('/v1/steps/:id/retry', stepAction('retry'));
  app.post('/v1/steps/:id/resolve', stepAction('resolve'));
  app.post('/v1/steps/:id/complete', stepAction('complete'));

  app.get('/v1/namespaces', async (req) => {
    const p = allow(req, 'read', null);
    return { items: await orchestrator.registry.namespaces(p.namespaces) };
  });

  app.get<{ Querystring: { namespace?: string } }>('/v1/templates', async (req) => {
    const ns = req.query.namespace ?? null;
    const p = allow(req, 'read', ns);
    return { items: await orchestrator.registry.list(ns, p.namespaces) };
  });

  app.get<{ Params: { namespace: string; name: string; version: string } }>('/v1/templates/:namespace/:name/:version', async (req) => {
    allow(req, 'read', req.params.namespace);
    return orchestrator.registry.describe(req.params.namespace, req.params.name, req.params.version);
  });

  const compileBody = (body: unknown): CompiledTemplate =>
    typeof body === 'string'
      ? parseTemplate(body, { origin: 'request body', environment: orchestrator.config.environment })
      : compileTemplate(body, { origin: 'request body', environment: orchestrator.config.environment });

  app.post('/v1/templates/validate', async (req) => {
    allow(req, 'read', null);
    try {
      const t = compileBody(req.body);
      orchestrator.checkInputSchema(t);
      return { valid: true, template: { namespace: t.namespace, name: t.name, version: t.version }, problems: [] };
    } catch (err) {
      if (err instanceof TemplateError) return { valid: false, template: null, problems: err.problems };
      if (err instanceof TaskerError) return { valid: false, template: null, problems: [{ origin: 'request body', step: null, message: err.message, code: err.code }] };
      throw err;
    }
  });

  app.post('/v1/templates', async (req, reply) => {
    const t = compileBody(req.body);
    allow(req, 'admin', t.namespace);
    const { created } = await orchestrator.registerTemplate(t);
    const { template } = await orchestrator.registry.describe(t.namespace, t.name, t.version);
    return reply.status(created ? 201 : 200).send({ created, template });
  });

  app.get('/v1/diagnostics/stuck', async (req) => {
    const p = allow(req, 'admin', null);
    const items = await orchestrator.stuck();
    return { items: p.namespaces === '*' ? items : items.filter((i) => (p.namespaces as string[]).includes(i.namespace)) };
  });

  app.get('/openapi.json', async () => openapi);
  app.get('/health/live', async () => ({ status: 'ok' }));
  app.get('/health/ready', async (_req, reply) => {
    const checks = await orchestrator.readiness();
    const ok = Object.values(checks).every((c) => c === 'ok');
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', checks });
  });
  void ErrorResponse;
  return app;
}

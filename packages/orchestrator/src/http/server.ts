import Fastify from 'fastify';
import { CreateTaskBody, ErrorCode, Limits, TaskerError, zodIssues, type ErrorBody } from '@tasker/protocol';
import type { Logger } from 'pino';
import type { Orchestrator } from '../orchestrator.ts';

/** HTTP status for each refusal code; anything else is a 500 with no internals. */
const STATUS: Partial<Record<string, number>> = {
  [ErrorCode.INVALID_MESSAGE]: 400,
  [ErrorCode.INVALID_CONTEXT]: 400,
  [ErrorCode.TEMPLATE_INVALID]: 400,
  [ErrorCode.UNSUPPORTED_STEP_TYPE]: 400,
  [ErrorCode.UNKNOWN_NAMESPACE]: 404,
  [ErrorCode.UNKNOWN_TEMPLATE]: 404,
  [ErrorCode.UNKNOWN_VERSION]: 404,
  [ErrorCode.UNKNOWN_TASK]: 404,
  [ErrorCode.UNKNOWN_STEP]: 404,
  [ErrorCode.PAYLOAD_TOO_LARGE]: 413,
};

function errorBody(e: TaskerError): { error: ErrorBody } {
  return { error: e.toJSON() };
}

/** The HTTP API: create a task, read a task with its steps, health. */
export function buildHttpServer(orchestrator: Orchestrator, logger: Logger) {
  // Request logs stay below the default level; errors are logged by the error handler.
  const app = Fastify({ loggerInstance: logger.child({ component: 'http' }, { level: 'warn' }), bodyLimit: Limits.maxMessageBytes });

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
    return reply
      .status(500)
      .send({ error: { code: ErrorCode.INTERNAL, message: `internal error; see the orchestrator log for request ${req.id}` } });
  });

  app.post('/v1/tasks', async (req, reply) => {
    const parsed = CreateTaskBody.safeParse(req.body);
    if (!parsed.success) {
      const issues = zodIssues(parsed.error);
      throw new TaskerError(
        ErrorCode.INVALID_MESSAGE,
        `request body is invalid: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        issues,
      );
    }
    const outcome = await orchestrator.submitTask(parsed.data);
    if (!outcome.ok) throw outcome.error;
    const task = await orchestrator.getTask(outcome.task.id);
    return reply.status(outcome.created ? 201 : 200).send({ created: outcome.created, task });
  });

  app.get<{ Params: { id: string } }>('/v1/tasks/:id', async (req) => {
    const task = await orchestrator.getTask(req.params.id);
    if (!task) throw new TaskerError(ErrorCode.UNKNOWN_TASK, `no task '${req.params.id}'`);
    return task;
  });

  app.get('/v1/diagnostics/stuck', async () => ({ items: await orchestrator.stuck() }));

  app.get('/health/live', async () => ({ status: 'ok' }));
  app.get('/health/ready', async (_req, reply) => {
    const checks = await orchestrator.readiness();
    const ok = Object.values(checks).every((c) => c === 'ok');
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', checks });
  });
  return app;
}

import { TemplateError } from '@tasker/protocol';

/** One sentence for an operator: what failed at start and which setting to look at. */
export function describeStartupError(err: unknown): string {
  const e = err as { code?: string; message?: string; address?: string; port?: number };
  const msg = e?.message ?? String(err);
  if (err instanceof TemplateError) return `templates in TASKER_TEMPLATES_DIR are invalid:\n${msg}`;
  if (e?.code === 'ECONNREFUSED' && e.port === 5672) return `cannot reach RabbitMQ at ${e.address}:${e.port}: check TASKER_AMQP_URL and that the broker runs`;
  if (e?.code === 'ECONNREFUSED') return `cannot reach ${e.address}:${e.port}: check TASKER_DATABASE_URL / TASKER_AMQP_URL and that the service runs`;
  if (e?.code === '28P01' || e?.code === '28000') return `PostgreSQL refused the credentials: check TASKER_DATABASE_URL (${msg})`;
  if (/ACCESS_REFUSED|403/.test(msg)) return `RabbitMQ refused the credentials: check TASKER_AMQP_URL (${msg})`;
  if (e?.code === 'EADDRINUSE') return `the HTTP port is taken: set TASKER_HTTP_PORT (${msg})`;
  if (/invalid orchestrator configuration/.test(msg)) return msg;
  return `orchestrator failed to start: ${msg}`;
}

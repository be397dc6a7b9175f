import { execFileSync } from 'node:child_process';
import { AMQP_URL, DATABASE_URL, reachable } from './support/services.ts';

/**
 * Tests use the real Postgres and RabbitMQ named by TASKER_DATABASE_URL / TASKER_AMQP_URL
 * (defaults: the local services). Where one is not reachable and a Docker engine is, it is
 * started with testcontainers for the run; otherwise the run stops with a sentence saying
 * what is missing.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<unknown>> = [];
  const pgUp = await reachable(DATABASE_URL(), 5432);
  const mqUp = await reachable(AMQP_URL(), 5672);
  if (mqUp) await ensureLocalManagementApi();
  if (pgUp && mqUp) return async () => undefined;

  let docker = false;
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 });
    docker = true;
  } catch {
    docker = false;
  }
  if (!docker) {
    const missing = [!pgUp && `PostgreSQL at ${DATABASE_URL()}`, !mqUp && `RabbitMQ at ${AMQP_URL()}`].filter(Boolean);
    throw new Error(`${missing.join(' and ')} not reachable, and no Docker engine to start them with testcontainers`);
  }
  const { GenericContainer, Wait } = await import('testcontainers');
  if (!pgUp) {
    const c = await new GenericContainer('postgres:15')
      .withEnvironment({ POSTGRES_PASSWORD: 'postgres', POSTGRES_DB: 'tasker' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/ready to accept connections/, 2))
      .start();
    process.env.TASKER_DATABASE_URL = `postgres://postgres:postgres@${c.getHost()}:${c.getMappedPort(5432)}/tasker`;
    stops.push(() => c.stop());
  }
  if (!mqUp) {
    const c = await new GenericContainer('rabbitmq:3.13-management')
      .withExposedPorts(5672, 15672)
      .withWaitStrategy(Wait.forLogMessage(/Server startup complete/))
      .start();
    process.env.TASKER_AMQP_URL = `amqp://guest:guest@${c.getHost()}:${c.getMappedPort(5672)}`;
    // Broker access (test/isolation, the demo) provisions users through the management API.
    process.env.TASKER_RABBITMQ_MANAGEMENT_URL = `http://guest:guest@${c.getHost()}:${c.getMappedPort(15672)}`;
    stops.push(() => c.stop());
  }
  return async () => {
    for (const s of stops) await s();
  };
}

/**
 * Broker access (test/isolation, the demo test) provisions users through RabbitMQ's
 * management API, which a fresh RabbitMQ has off. When the broker is this machine's and its
 * `rabbitmq-plugins` is at hand, the plugin is enabled (as `.ci/run` does); otherwise the
 * tests that need it say what is missing.
 */
async function ensureLocalManagementApi(): Promise<void> {
  const api = new URL(process.env.TASKER_RABBITMQ_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672');
  const amqpHost = new URL(AMQP_URL()).hostname;
  const answers = () =>
    fetch(`${api.protocol}//${api.host}/api/overview`, { signal: AbortSignal.timeout(2000) }).then(
      () => true,
      () => false,
    );
  if (await answers()) return;
  if (!['127.0.0.1', 'localhost', '::1'].includes(amqpHost) || !['127.0.0.1', 'localhost', '::1'].includes(api.hostname)) return;
  try {
    execFileSync('rabbitmq-plugins', ['enable', 'rabbitmq_management'], { stdio: 'ignore', timeout: 60_000 });
  } catch {
    return;
  }
  for (let i = 0; i < 60 && !(await answers()); i++) await new Promise((r) => setTimeout(r, 500));
}

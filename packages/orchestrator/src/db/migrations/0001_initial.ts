import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE namespaces (
      name text PRIMARY KEY,
      created_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE templates (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      namespace text NOT NULL REFERENCES namespaces (name),
      name text NOT NULL,
      version text NOT NULL,
      major int NOT NULL,
      minor int NOT NULL,
      patch int NOT NULL,
      prerelease text NOT NULL DEFAULT '',
      definition jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (namespace, name, version)
    );

    CREATE TABLE tasks (
      id text PRIMARY KEY,
      namespace text NOT NULL,
      name text NOT NULL,
      version text NOT NULL,
      template_id bigint NOT NULL REFERENCES templates (id),
      state text NOT NULL CHECK (state IN ('in_progress', 'complete', 'error', 'cancelled')),
      context jsonb NOT NULL,
      correlation_id text NOT NULL,
      idempotency_key text,
      parent_task_id text REFERENCES tasks (id),
      parent_step_id text,
      requested_by text,
      error jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      completed_at timestamptz,
      UNIQUE (namespace, idempotency_key)
    );
    CREATE INDEX tasks_parent_idx ON tasks (parent_task_id) WHERE parent_task_id IS NOT NULL;
    CREATE INDEX tasks_correlation_idx ON tasks (correlation_id);
    CREATE INDEX tasks_listing_idx ON tasks (namespace, name, created_at DESC);
    CREATE INDEX tasks_live_idx ON tasks (created_at) WHERE state = 'in_progress';

    CREATE TABLE steps (
      id text PRIMARY KEY,
      task_id text NOT NULL REFERENCES tasks (id),
      name text NOT NULL,
      position int NOT NULL,
      state text NOT NULL
        CHECK (state IN ('pending', 'enqueued', 'waiting_retry', 'complete', 'error', 'cancelled')),
      attempt int NOT NULL DEFAULT 0,
      max_attempts int NOT NULL CHECK (max_attempts >= 1),
      deps_pending int NOT NULL CHECK (deps_pending >= 0),
      dependents text[] NOT NULL DEFAULT '{}',
      result jsonb,
      error jsonb,
      enqueued_at timestamptz,
      started_at timestamptz,
      finished_at timestamptz,
      next_retry_at timestamptz,
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (task_id, name),
      CHECK (attempt <= max_attempts)
    );
    CREATE INDEX steps_in_flight_idx ON steps (enqueued_at) WHERE state IN ('enqueued', 'waiting_retry');

    -- The audit: every state change of a task or a step, in order.
    CREATE TABLE transitions (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      task_id text NOT NULL,
      step_id text,
      from_state text,
      to_state text NOT NULL,
      attempt int,
      reason text NOT NULL,
      at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX transitions_task_idx ON transitions (task_id, id);

    -- Transactional outbox: messages a committed state change implies, until the broker confirms them.
    CREATE TABLE outbox (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      exchange text NOT NULL,
      routing_key text NOT NULL,
      body text NOT NULL,
      properties jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now()
    );
  `.execute(db);
}

/**
 * Valid example messages, one per published message shape. messages.test.ts decodes them
 * with the zod schemas; json-schema.test.ts validates them against the generated JSON
 * Schema, so both views of the contract accept the same messages.
 */
import type { RetryDue, StepMessage, StepResult, TaskReply, TaskRequest } from '../src/index.ts';

export const stepMessage: StepMessage = {
  protocol_version: 1,
  message_type: 'step',
  task_id: 'tsk_01HZX3',
  namespace: 'payments',
  task_name: 'process_refund',
  task_version: '1.0.0',
  correlation_id: 'corr-7',
  step_id: 'stp_01HZX4',
  step_name: 'process_gateway_refund',
  attempt: 2,
  max_attempts: 3,
  timeout_ms: 30_000,
  handler: {
    callable: 'team_scaling_payments_process_gateway_refund',
    method: null,
    initialization: { gateway: 'stripe', retries: { connect: 2 } },
  },
  input: { payment_id: 'pay_xyz789', refund_amount: 49.99, tags: ['fraud'], note: null },
  dependency_results: {
    validate_payment_eligibility: { payment_validated: true, refund_amount: 49.99 },
    a_number: 3,
    a_null: null,
  },
  idempotency_key: 'stp_01HZX4:2',
  dispatched_at: '2025-03-01T12:00:00.123Z',
};

export const stepResultSuccess: Extract<StepResult, { status: 'success' }> = {
  protocol_version: 1,
  message_type: 'step_result',
  task_id: 'tsk_01HZX3',
  step_id: 'stp_01HZX4',
  namespace: 'payments',
  step_name: 'process_gateway_refund',
  attempt: 2,
  started_at: '2025-03-01T12:00:00.200Z',
  finished_at: '2025-03-01T13:00:01+01:00',
  worker_id: 'worker-a/1234',
  status: 'success',
  result: { refund_id: 're_123', amounts: [1, 2.5], ok: true },
};

export const stepResultFailure: Extract<StepResult, { status: 'failure' }> = {
  protocol_version: 1,
  message_type: 'step_result',
  task_id: 'tsk_01HZX3',
  step_id: 'stp_01HZX4',
  namespace: 'payments',
  step_name: 'process_gateway_refund',
  attempt: 1,
  started_at: '2025-03-01T12:00:00Z',
  finished_at: '2025-03-01T12:00:02Z',
  status: 'failure',
  error: {
    kind: 'retryable',
    code: 'GATEWAY_TIMEOUT',
    message: 'gateway did not answer in 2 s',
    retry_after_ms: 5000,
    details: { gateway: 'stripe', http_status: 504 },
  },
};

export const taskRequest: TaskRequest = {
  protocol_version: 1,
  message_type: 'task_request',
  namespace: 'payments',
  name: 'process_refund',
  version: '1.0.0',
  context: { payment_id: 'pay_xyz789', refund_amount: 49.99, refund_reason: 'customer_request' },
  idempotency_key: 'cs-task-42:refund',
  correlation_id: 'tsk_cs_42',
  parent: { task_id: 'tsk_cs_42', step_id: 'stp_cs_execute' },
  requested_by: 'customer_success',
};

export const taskReplyOk: TaskReply = {
  protocol_version: 1,
  message_type: 'task_reply',
  ok: true,
  created: true,
  task: {
    id: 'tsk_01HZX3',
    namespace: 'payments',
    name: 'process_refund',
    version: '1.0.0',
    state: 'in_progress',
    correlation_id: 'tsk_cs_42',
    idempotency_key: 'cs-task-42:refund',
    parent_task_id: 'tsk_cs_42',
    parent_step_id: null,
    created_at: '2025-03-01T12:00:00Z',
  },
};

export const taskReplyError: TaskReply = {
  protocol_version: 1,
  message_type: 'task_reply',
  ok: false,
  error: {
    code: 'INVALID_CONTEXT',
    message: 'context does not match input_schema',
    issues: [{ path: 'payment_id', message: 'required' }],
  },
};

export const retryDue: RetryDue = {
  protocol_version: 1,
  message_type: 'retry_due',
  task_id: 'tsk_01HZX3',
  step_id: 'stp_01HZX4',
  attempt: 1,
  delay_ms: 4000,
};

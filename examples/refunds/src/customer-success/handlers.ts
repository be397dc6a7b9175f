/**
 * The Customer Success team's handlers for `customer_success.process_refund`
 * (templates/customer_success/process_refund.yaml), keyed by the template's callables.
 *
 * The team validates the request from the customer's side, applies its refund policy,
 * gets a (simulated) manager's approval when policy asks for one, and hands the money
 * movement to the payments team by creating a `payments.process_refund` task: the two
 * teams share a workflow name, never a queue or a handler.
 *
 * Every result carries `namespace: 'customer_success'`, so whoever reads task data across
 * namespaces can tell which team produced it.
 */
import { PermanentError, type StepContext, type StepHandler } from '@tasker/worker';

const NAMESPACE = 'customer_success';

/** Reasons the support team accepts; anything else is refused before any money moves. */
export const VALID_REASONS = ['defective', 'not_as_described', 'changed_mind', 'late_delivery', 'duplicate_charge'] as const;

/** What `validate_refund_request` returns; later steps read it instead of re-reading the input. */
export interface ValidatedRequest {
  request_validated: true;
  ticket_id: string;
  customer_id: string;
  refund_amount: number;
  reason: string;
  customer_email: string | null;
  /** The payment to refund: the input's, or one derived from the ticket. */
  payment_id: string;
  namespace: typeof NAMESPACE;
  validated_at: string;
}

export interface PolicyDecision {
  policy_checked: true;
  refund_amount: number;
  requires_approval: boolean;
  /** Why approval is (or is not) needed, for whoever reads the step. */
  approval_reason: string;
  auto_approve_limit: number;
  max_refund_amount: number;
  namespace: typeof NAMESPACE;
  checked_at: string;
}

export interface ApprovalDecision {
  approval_obtained: true;
  approval_required: boolean;
  approver: string | null;
  approved_at: string | null;
  namespace: typeof NAMESPACE;
}

/** What execute_refund_workflow completes with: the payments task's outcome. */
export interface PaymentsOutcome {
  task_id: string;
  namespace: 'payments';
  name: 'process_refund';
  results: { notify_customer?: { refund_id?: string; refund_amount?: number; notification_sent?: boolean } };
}

function blank(v: unknown): boolean {
  return v === undefined || v === null || (typeof v === 'string' && v.trim() === '');
}

/** A dependency's result, or a permanent error: the template guarantees it ran first. */
function dependency<T>(ctx: StepContext, step: string): T {
  const r = ctx.getDependencyResult<T>(step);
  if (r === undefined || r === null) {
    throw new PermanentError(`result of step '${step}' is missing; is the template's dependency list intact?`, {
      code: 'MISSING_DEPENDENCY_RESULT',
    });
  }
  return r;
}

/** A number from the step's `handler.initialization`; a template without it is a deployment error. */
function setting(ctx: StepContext, key: string): number {
  const v = ctx.initialization[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new PermanentError(`handler.initialization.${key} must be a number in the template (got ${JSON.stringify(v)})`, {
      code: 'INVALID_CONFIGURATION',
    });
  }
  return v;
}

const validateRefundRequest: StepHandler = (ctx): ValidatedRequest => {
  const ticketId = ctx.getInput<string>('ticket_id');
  const customerId = ctx.getInput<string>('customer_id');
  const amount = ctx.getInput<unknown>('refund_amount');
  const reason = ctx.getInput<string>('refund_reason');

  const missing: string[] = [];
  if (blank(ticketId)) missing.push('ticket_id');
  if (blank(customerId)) missing.push('customer_id');
  if (amount === undefined || amount === null) missing.push('refund_amount');
  if (blank(reason)) missing.push('refund_reason');
  if (missing.length > 0) {
    throw new PermanentError(`Missing required fields: ${missing.join(', ')}`, { code: 'MISSING_FIELDS', details: { missing } });
  }
  if (!(VALID_REASONS as readonly string[]).includes(reason!)) {
    throw new PermanentError(`Invalid reason: ${reason}. Must be one of: ${VALID_REASONS.join(', ')}`, {
      code: 'INVALID_REASON',
      details: { reason, valid_reasons: [...VALID_REASONS] },
    });
  }
  const refundAmount = Number(amount);
  if (!Number.isFinite(refundAmount) || refundAmount <= 0) {
    throw new PermanentError(`refund_amount must be a positive number (got ${JSON.stringify(amount)})`, {
      code: 'INVALID_AMOUNT',
    });
  }
  const paymentId = ctx.getInput<string>('payment_id');
  ctx.logger.info({ ticketId, customerId, refundAmount, reason }, 'refund request validated');
  return {
    request_validated: true,
    ticket_id: ticketId!,
    customer_id: customerId!,
    refund_amount: refundAmount,
    reason: reason!,
    customer_email: ctx.getInput<string>('customer_email') ?? null,
    // A support ticket does not always name the payment; the demo's shop has one payment
    // per ticket, so the id is derived from it.
    payment_id: blank(paymentId) ? `pay_${ticketId}` : paymentId!,
    namespace: NAMESPACE,
    validated_at: new Date().toISOString(),
  };
};

const checkRefundPolicy: StepHandler = (ctx): PolicyDecision => {
  const request = dependency<ValidatedRequest>(ctx, 'validate_refund_request');
  const autoApproveLimit = setting(ctx, 'auto_approve_limit');
  const maxRefundAmount = setting(ctx, 'max_refund_amount');
  const amount = request.refund_amount;

  if (amount > maxRefundAmount) {
    throw new PermanentError(`Refund of ${amount} exceeds the policy maximum of ${maxRefundAmount}`, {
      code: 'POLICY_LIMIT_EXCEEDED',
      details: { refund_amount: amount, max_refund_amount: maxRefundAmount },
    });
  }
  const agentAsked = ctx.getInput<boolean>('requires_approval') === true;
  const overLimit = amount > autoApproveLimit;
  return {
    policy_checked: true,
    refund_amount: amount,
    requires_approval: overLimit || agentAsked,
    approval_reason: overLimit
      ? `amount ${amount} is above the auto-approve limit of ${autoApproveLimit}`
      : agentAsked
        ? 'the agent asked for approval'
        : `amount ${amount} is within the auto-approve limit of ${autoApproveLimit}`,
    auto_approve_limit: autoApproveLimit,
    max_refund_amount: maxRefundAmount,
    namespace: NAMESPACE,
    checked_at: new Date().toISOString(),
  };
};

/**
 * A real team would park the step until a manager answers (a human-in-the-loop step);
 * this simulated manager approves at once, so the example runs unattended.
 */
const getManagerApproval: StepHandler = (ctx): ApprovalDecision => {
  const policy = dependency<PolicyDecision>(ctx, 'check_refund_policy');
  if (!policy.requires_approval) {
    return { approval_obtained: true, approval_required: false, approver: null, approved_at: null, namespace: NAMESPACE };
  }
  const approver = 'manager_sim_01';
  ctx.logger.info({ approver, refundAmount: policy.refund_amount }, 'refund approved by the simulated manager');
  return {
    approval_obtained: true,
    approval_required: true,
    approver,
    approved_at: new Date().toISOString(),
    namespace: NAMESPACE,
  };
};

/**
 * Cross-namespace coordination: asks the orchestrator for a `payments.process_refund`
 * task. The worker SDK sets the parent (this task and step), carries the correlation id and
 * gives the request an idempotency key without the attempt, so a retried or redelivered
 * step gets back the task it created the first time instead of refunding twice.
 */
const executeRefundWorkflow: StepHandler = async (ctx) => {
  dependency<ApprovalDecision>(ctx, 'get_manager_approval');
  const request = dependency<ValidatedRequest>(ctx, 'validate_refund_request');

  const context: Record<string, unknown> = {
    payment_id: request.payment_id,
    refund_amount: request.refund_amount,
    refund_reason: 'customer_request',
    correlation_id: ctx.taskId,
  };
  if (request.customer_email) context['customer_email'] = request.customer_email;
  const paymentMethod = ctx.getInput<string>('payment_method');
  if (paymentMethod !== undefined) context['payment_method'] = paymentMethod;
  // Passed through so a demo can show the payments team's retries under a CS task.
  const failures = ctx.getInput<number>('simulate_gateway_failures');
  if (failures !== undefined) context['simulate_gateway_failures'] = failures;

  const { created, task } = await ctx.createTask({ namespace: 'payments', name: 'process_refund', context });
  ctx.logger.info({ paymentTaskId: task.id, created }, 'refund delegated to payments.process_refund; waiting for it');
  // The step waits for the payments task without holding a worker; it completes with that
  // task's outcome (or fails with its error), so update_ticket_status sees the real refund.
  return ctx.waitFor(task.id);
};

const updateTicketStatus: StepHandler = (ctx) => {
  const request = dependency<ValidatedRequest>(ctx, 'validate_refund_request');
  const payout = dependency<PaymentsOutcome>(ctx, 'execute_refund_workflow');
  const notice = payout.results.notify_customer;
  return {
    ticket_updated: true,
    ticket_id: request.ticket_id,
    new_status: 'refunded',
    note: `Refunded ${notice?.refund_amount ?? request.refund_amount} by payments (task ${payout.task_id}, refund ${notice?.refund_id})`,
    payment_task_id: payout.task_id,
    refund_id: notice?.refund_id ?? null,
    customer_notified: notice?.notification_sent ?? false,
    namespace: NAMESPACE,
    updated_at: new Date().toISOString(),
  };
};

/** The handlers of `customer_success.process_refund`, by `handler.callable`. */
export const customerSuccessHandlers = {
  'CustomerSuccess::StepHandlers::ValidateRefundRequestHandler': validateRefundRequest,
  'CustomerSuccess::StepHandlers::CheckRefundPolicyHandler': checkRefundPolicy,
  'CustomerSuccess::StepHandlers::GetManagerApprovalHandler': getManagerApproval,
  'CustomerSuccess::StepHandlers::ExecuteRefundWorkflowHandler': executeRefundWorkflow,
  'CustomerSuccess::StepHandlers::UpdateTicketStatusHandler': updateTicketStatus,
} satisfies Record<string, StepHandler>;

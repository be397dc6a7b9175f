/**
 * The Payments team's handlers for `payments.process_refund`
 * (templates/payments/process_refund.yaml), keyed by the template's callables.
 *
 * No approval here: whoever created the task (the support team's workflow, fraud tooling)
 * has already decided. The team checks the payment can be refunded, refunds it through a
 * simulated gateway, books it and tells the customer. Every result carries
 * `namespace: 'payments'`.
 */
import { createHash } from 'node:crypto';
import { PermanentError, RetryableError, type StepContext, type StepHandler } from '@tasker/worker';

const NAMESPACE = 'payments';

/** Gift cards are refunded automatically only up to this amount. */
export const GIFT_CARD_REFUND_LIMIT = 500;

export interface Eligibility {
  payment_validated: true;
  payment_id: string;
  refund_amount: number;
  payment_method: string;
  eligibility_status: 'eligible';
  validation_timestamp: string;
  namespace: typeof NAMESPACE;
}

export interface GatewayRefund {
  refund_processed: true;
  refund_id: string;
  payment_id: string;
  refund_amount: number;
  gateway: 'simulated';
  gateway_status: 'succeeded';
  /** The attempt that reached the gateway, to show retries in the demo. */
  attempt: number;
  processed_at: string;
  namespace: typeof NAMESPACE;
}

/** Whether a payment method supports an automated refund of this amount (the team's Rust rule). */
export function refundSupported(paymentMethod: string, amount: number): boolean {
  switch (paymentMethod) {
    case 'credit_card':
    case 'debit_card':
    case 'bank_transfer':
      return true;
    case 'gift_card':
      return amount <= GIFT_CARD_REFUND_LIMIT;
    case 'crypto':
      return false;
    default:
      return true;
  }
}

/** A short stable id: the same input always gives the same id. */
function stableId(prefix: string, ...parts: string[]): string {
  return `${prefix}_${createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 16)}`;
}

function dependency<T>(ctx: StepContext, step: string): T {
  const r = ctx.getDependencyResult<T>(step);
  if (r === undefined || r === null) {
    throw new PermanentError(`result of step '${step}' is missing; is the template's dependency list intact?`, {
      code: 'MISSING_DEPENDENCY_RESULT',
    });
  }
  return r;
}

const validateEligibility: StepHandler = (ctx): Eligibility => {
  const paymentId = ctx.getInput<unknown>('payment_id');
  const amount = ctx.getInput<unknown>('refund_amount');
  const missing: string[] = [];
  if (typeof paymentId !== 'string' || paymentId === '') missing.push('payment_id');
  if (typeof amount !== 'number' || !Number.isFinite(amount)) missing.push('refund_amount');
  if (missing.length > 0) {
    throw new PermanentError(`Missing or invalid fields: ${missing.join(', ')}`, { code: 'MISSING_FIELDS', details: { missing } });
  }
  const refundAmount = amount as number;
  if (refundAmount <= 0) {
    throw new PermanentError(`Refund amount must be positive (got ${refundAmount})`, { code: 'INVALID_AMOUNT' });
  }
  const paymentMethod = ctx.getInput<string>('payment_method') ?? 'credit_card';
  if (!refundSupported(paymentMethod, refundAmount)) {
    throw new PermanentError(`Payment method '${paymentMethod}' does not support automated refunds of ${refundAmount}`, {
      code: 'PAYMENT_METHOD_NOT_REFUNDABLE',
      details: { payment_method: paymentMethod, refund_amount: refundAmount },
    });
  }
  return {
    payment_validated: true,
    payment_id: paymentId as string,
    refund_amount: refundAmount,
    payment_method: paymentMethod,
    eligibility_status: 'eligible',
    validation_timestamp: new Date().toISOString(),
    namespace: NAMESPACE,
  };
};

/**
 * The simulated payment processor. `simulate_gateway_failures: N` in the task's context
 * makes attempts 1..N fail with a transient error; the step's retry policy (exponential,
 * initial_delay 5 s, jittered) decides when the next attempt runs, which is why no
 * `retryAfterMs` is given.
 */
const processGatewayRefund: StepHandler = (ctx): GatewayRefund => {
  const eligibility = dependency<Eligibility>(ctx, 'validate_payment_eligibility');
  const failures = ctx.getInput<number>('simulate_gateway_failures') ?? 0;
  if (ctx.attempt <= failures) {
    throw new RetryableError('gateway timeout', {
      code: 'GATEWAY_UNAVAILABLE',
      details: { simulated: true, attempt: ctx.attempt, failing_attempts: failures },
    });
  }
  return {
    refund_processed: true,
    // A real gateway call would send ctx.idempotencyKey as the gateway's idempotency key
    // and get back the refund it already made for that key; deriving the id from it models
    // that: a redelivery of this attempt (worker crash after the refund, before the ack)
    // yields the same refund, not a second one. The key is per attempt (`<step>:<attempt>`);
    // a gateway whose timeouts can hide a refund that did happen would want a key per step
    // (ctx.stepId), so that a retry finds it too.
    refund_id: stableId('rfnd', ctx.idempotencyKey),
    payment_id: eligibility.payment_id,
    refund_amount: eligibility.refund_amount,
    gateway: 'simulated',
    gateway_status: 'succeeded',
    attempt: ctx.attempt,
    processed_at: new Date().toISOString(),
    namespace: NAMESPACE,
  };
};

const updateRecords: StepHandler = (ctx) => {
  const refund = dependency<GatewayRefund>(ctx, 'process_gateway_refund');
  return {
    records_updated: true,
    payment_id: refund.payment_id,
    refund_id: refund.refund_id,
    record_id: stableId('rec', ctx.taskId, refund.refund_id),
    payment_status: 'refunded',
    refund_reason: ctx.getInput<string>('refund_reason') ?? null,
    correlation_id: ctx.correlationId,
    updated_at: new Date().toISOString(),
    namespace: NAMESPACE,
  };
};

const notifyCustomer: StepHandler = (ctx) => {
  const refund = dependency<GatewayRefund>(ctx, 'process_gateway_refund');
  const email = ctx.getInput<string>('customer_email');
  if (!email) {
    // Internal tooling may refund without an address; there is nobody to tell.
    return {
      notification_sent: false,
      reason: 'no customer_email in the task context',
      refund_id: refund.refund_id,
      refund_amount: refund.refund_amount,
      namespace: NAMESPACE,
    };
  }
  return {
    notification_sent: true,
    customer_email: email,
    message_id: stableId('msg', ctx.taskId, refund.refund_id),
    notification_type: 'refund_confirmation',
    refund_id: refund.refund_id,
    refund_amount: refund.refund_amount,
    sent_at: new Date().toISOString(),
    namespace: NAMESPACE,
  };
};

/** The handlers of `payments.process_refund`, by `handler.callable`. */
export const paymentsHandlers = {
  team_scaling_payments_validate_eligibility: validateEligibility,
  team_scaling_payments_process_gateway_refund: processGatewayRefund,
  team_scaling_payments_update_records: updateRecords,
  team_scaling_payments_notify_customer: notifyCustomer,
} satisfies Record<string, StepHandler>;

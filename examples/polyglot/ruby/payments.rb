# frozen_string_literal: true

# The Payments team's handlers for payments.process_refund, in Ruby
# (templates/payments/process_refund.yaml; the same rules as
# examples/refunds/src/payments/handlers.ts). Their callables are the template's
# `team_scaling_payments_*` names. Every result names its namespace.
require 'digest'
require 'tasker_worker'

module Payments
  NAMESPACE = 'payments'
  GIFT_CARD_REFUND_LIMIT = 500

  module_function

  # Whether a payment method supports an automated refund of this amount.
  def refund_supported?(payment_method, amount)
    case payment_method
    when 'credit_card', 'debit_card', 'bank_transfer' then true
    when 'gift_card' then amount <= GIFT_CARD_REFUND_LIMIT
    when 'crypto' then false
    else true
    end
  end

  # A short stable id: the same input always gives the same id.
  def stable_id(prefix, *parts)
    "#{prefix}_#{Digest::SHA256.hexdigest(parts.join("\u0000"))[0, 16]}"
  end

  class Handler < TaskerWorker::StepHandler
    private

    def dependency(context, step)
      result = context.get_dependency_result(step)
      return result unless result.nil?

      raise TaskerWorker::PermanentError.new("result of step '#{step}' is missing; is the template's dependency list intact?",
                                             error_code: 'MISSING_DEPENDENCY_RESULT')
    end

    def now = TaskerWorker::Messages.now_iso
  end

  class ValidateEligibility < Handler
    def self.callable = 'team_scaling_payments_validate_eligibility'

    def call(context)
      payment_id = context.get_input('payment_id')
      amount = context.get_input('refund_amount')
      missing = []
      missing << 'payment_id' unless payment_id.is_a?(String) && !payment_id.empty?
      missing << 'refund_amount' unless amount.is_a?(Numeric) && amount.finite?
      raise TaskerWorker::PermanentError.new("Missing or invalid fields: #{missing.join(', ')}", error_code: 'MISSING_FIELDS', details: { missing: missing }) unless missing.empty?
      raise TaskerWorker::PermanentError.new("Refund amount must be positive (got #{amount})", error_code: 'INVALID_AMOUNT') unless amount.positive?

      method = context.get_input('payment_method') || 'credit_card'
      unless Payments.refund_supported?(method, amount)
        raise TaskerWorker::PermanentError.new("Payment method '#{method}' does not support automated refunds of #{amount}",
                                               error_code: 'PAYMENT_METHOD_NOT_REFUNDABLE', details: { payment_method: method, refund_amount: amount })
      end
      { payment_validated: true, payment_id: payment_id, refund_amount: amount, payment_method: method,
        eligibility_status: 'eligible', validation_timestamp: now, namespace: NAMESPACE }
    end
  end

  # The simulated processor: simulate_gateway_failures N makes attempts 1..N fail transiently;
  # the step's retry policy decides when the next attempt runs.
  class ProcessGatewayRefund < Handler
    def self.callable = 'team_scaling_payments_process_gateway_refund'

    def call(context)
      eligibility = dependency(context, 'validate_payment_eligibility')
      failures = context.get_input('simulate_gateway_failures') || 0
      if context.attempt <= failures
        raise TaskerWorker::RetryableError.new('gateway timeout', error_code: 'GATEWAY_UNAVAILABLE',
                                                                  details: { simulated: true, attempt: context.attempt, failing_attempts: failures })
      end
      {
        refund_processed: true,
        # Keyed on the idempotency key, as a real gateway call would be.
        refund_id: Payments.stable_id('rfnd', context.idempotency_key),
        payment_id: eligibility['payment_id'],
        refund_amount: eligibility['refund_amount'],
        gateway: 'simulated',
        gateway_status: 'succeeded',
        attempt: context.attempt,
        processed_at: now,
        namespace: NAMESPACE
      }
    end
  end

  class UpdateRecords < Handler
    def self.callable = 'team_scaling_payments_update_records'

    def call(context)
      refund = dependency(context, 'process_gateway_refund')
      { records_updated: true, payment_id: refund['payment_id'], refund_id: refund['refund_id'],
        record_id: Payments.stable_id('rec', context.task_id, refund['refund_id']), payment_status: 'refunded',
        refund_reason: context.get_input('refund_reason'), correlation_id: context.correlation_id, updated_at: now, namespace: NAMESPACE }
    end
  end

  class NotifyCustomer < Handler
    def self.callable = 'team_scaling_payments_notify_customer'

    def call(context)
      refund = dependency(context, 'process_gateway_refund')
      email = context.get_input('customer_email')
      return { notification_sent: false, reason: 'no customer_email in the task context', namespace: NAMESPACE } if blank?(email)

      { notification_sent: true, customer_email: email, message_id: Payments.stable_id('msg', context.task_id, refund['refund_id']),
        notification_type: 'refund_confirmation', refund_id: refund['refund_id'], refund_amount: refund['refund_amount'],
        sent_at: now, namespace: NAMESPACE }
    end
  end

  ALL = [ValidateEligibility, ProcessGatewayRefund, UpdateRecords, NotifyCustomer].freeze
end

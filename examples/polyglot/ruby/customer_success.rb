# frozen_string_literal: true

# The Customer Success team's handlers for customer_success.process_refund, in Ruby, as in
# the mission (templates/customer_success/process_refund.yaml; the same rules as
# examples/refunds/src/customer-success/handlers.ts). Each class is found by its name, which
# is the template's handler.callable. Every result names its namespace.
require 'tasker_worker'

module CustomerSuccess
  NAMESPACE = 'customer_success'

  # Shared helpers of the team's handlers.
  class Handler < TaskerWorker::StepHandler
    def self.callable = name

    private

    def dependency(context, step)
      result = context.get_dependency_result(step)
      return result unless result.nil?

      raise TaskerWorker::PermanentError.new("result of step '#{step}' is missing; is the template's dependency list intact?",
                                             error_code: 'MISSING_DEPENDENCY_RESULT')
    end

    def setting(context, key)
      value = context.initialization[key]
      return value if value.is_a?(Numeric)

      raise TaskerWorker::PermanentError.new("handler.initialization.#{key} must be a number in the template (got #{value.inspect})",
                                             error_code: 'INVALID_CONFIGURATION')
    end

    def now = TaskerWorker::Messages.now_iso
  end

  module StepHandlers
    class ValidateRefundRequestHandler < Handler
      VALID_REASONS = %w[defective not_as_described changed_mind late_delivery duplicate_charge].freeze

      def call(context)
        ticket_id     = context.get_input('ticket_id')
        customer_id   = context.get_input('customer_id')
        refund_amount = context.get_input('refund_amount')
        reason        = context.get_input('refund_reason')

        missing = []
        missing << 'ticket_id' if blank?(ticket_id)
        missing << 'customer_id' if blank?(customer_id)
        missing << 'refund_amount' if refund_amount.nil?
        missing << 'refund_reason' if blank?(reason)

        unless missing.empty?
          raise TaskerWorker::PermanentError.new("Missing required fields: #{missing.join(', ')}",
                                                 error_code: 'MISSING_FIELDS', details: { missing: missing })
        end

        unless VALID_REASONS.include?(reason)
          raise TaskerWorker::PermanentError.new("Invalid reason: #{reason}. Must be one of: #{VALID_REASONS.join(', ')}",
                                                 error_code: 'INVALID_REASON', details: { reason: reason, valid_reasons: VALID_REASONS })
        end

        amount = Float(refund_amount, exception: false)
        unless amount&.finite? && amount.positive?
          raise TaskerWorker::PermanentError.new("refund_amount must be a positive number (got #{refund_amount.inspect})", error_code: 'INVALID_AMOUNT')
        end

        payment_id = context.get_input('payment_id')
        context.logger.info("refund request validated: ticket #{ticket_id}, #{amount}")
        success(result: {
                  request_validated: true,
                  ticket_id: ticket_id,
                  customer_id: customer_id,
                  refund_amount: amount,
                  reason: reason,
                  customer_email: context.get_input('customer_email'),
                  # The demo's shop has one payment per ticket: derived from it when the input has none.
                  payment_id: blank?(payment_id) ? "pay_#{ticket_id}" : payment_id,
                  namespace: NAMESPACE,
                  validated_at: now
                })
      end
    end

    class CheckRefundPolicyHandler < Handler
      def call(context)
        request = dependency(context, 'validate_refund_request')
        auto_approve_limit = setting(context, 'auto_approve_limit')
        max_refund_amount = setting(context, 'max_refund_amount')
        amount = request['refund_amount']
        if amount > max_refund_amount
          raise TaskerWorker::PermanentError.new("Refund of #{amount} exceeds the policy maximum of #{max_refund_amount}",
                                                 error_code: 'POLICY_LIMIT_EXCEEDED',
                                                 details: { refund_amount: amount, max_refund_amount: max_refund_amount })
        end
        agent_asked = context.get_input('requires_approval') == true
        over_limit = amount > auto_approve_limit
        why = if over_limit then "amount #{amount} is above the auto-approve limit of #{auto_approve_limit}"
              elsif agent_asked then 'the agent asked for approval'
              else "amount #{amount} is within the auto-approve limit of #{auto_approve_limit}"
              end
        {
          policy_checked: true,
          refund_amount: amount,
          requires_approval: over_limit || agent_asked,
          approval_reason: why,
          auto_approve_limit: auto_approve_limit,
          max_refund_amount: max_refund_amount,
          namespace: NAMESPACE,
          checked_at: now
        }
      end
    end

    # A real team would wait for a manager; this simulated one approves at once.
    class GetManagerApprovalHandler < Handler
      def call(context)
        policy = dependency(context, 'check_refund_policy')
        unless policy['requires_approval']
          return { approval_obtained: true, approval_required: false, approver: nil, approved_at: nil, namespace: NAMESPACE }
        end

        { approval_obtained: true, approval_required: true, approver: 'manager_sim_01', approved_at: now, namespace: NAMESPACE }
      end
    end

    # Cross-namespace coordination: creates a payments.process_refund task (the SDK sets the
    # parent, carries the correlation id and keys the request on the step, so a retried step
    # gets back the task it created the first time), then waits for it without holding a
    # worker: the step completes with the payments task's outcome.
    class ExecuteRefundWorkflowHandler < Handler
      def call(context)
        dependency(context, 'get_manager_approval')
        validation = dependency(context, 'validate_refund_request')

        payment_context = {
          payment_id: validation['payment_id'],
          refund_amount: validation['refund_amount'],
          refund_reason: 'customer_request',
          correlation_id: context.task_id # link back to the CS workflow
        }
        payment_context[:customer_email] = validation['customer_email'] unless blank?(validation['customer_email'])
        %w[payment_method simulate_gateway_failures].each do |passed_through|
          payment_context[passed_through] = context.get_input(passed_through) unless context.get_input(passed_through).nil?
        end
        payment_task = context.create_task(name: 'process_refund', namespace: 'payments', context: payment_context)
        context.logger.info("refund delegated to payments.process_refund #{payment_task['id']}; waiting for it")
        context.wait_for(payment_task['id'])
      end
    end

    class UpdateTicketStatusHandler < Handler
      def call(context)
        request = dependency(context, 'validate_refund_request')
        # The payments task's outcome: {task_id, namespace, name, results: {step => result}}.
        payout = dependency(context, 'execute_refund_workflow')
        notice = (payout['results'] || {})['notify_customer'] || {}
        {
          ticket_updated: true,
          ticket_id: request['ticket_id'],
          new_status: 'refunded',
          note: "Refunded #{notice['refund_amount'] || request['refund_amount']} by payments (task #{payout['task_id']}, refund #{notice['refund_id']})",
          payment_task_id: payout['task_id'],
          refund_id: notice['refund_id'],
          customer_notified: notice['notification_sent'] || false,
          namespace: NAMESPACE,
          updated_at: now
        }
      end
    end

    ALL = [ValidateRefundRequestHandler, CheckRefundPolicyHandler, GetManagerApprovalHandler, ExecuteRefundWorkflowHandler,
           UpdateTicketStatusHandler].freeze
  end
end

# frozen_string_literal: true

# Tasker worker SDK for Ruby: handler classes with `call(context)`, on RabbitMQ (bunny).
#
#   module CustomerSuccess
#     module StepHandlers
#       class ValidateRefundRequestHandler < TaskerWorker::StepHandler
#         def call(context)
#           raise TaskerWorker::PermanentError.new('Missing ticket_id', error_code: 'MISSING_FIELDS') if blank?(context.get_input('ticket_id'))
#           success(result: { request_validated: true, namespace: 'customer_success' })
#         end
#       end
#     end
#   end
#
#   TaskerWorker::Worker.new(namespace: 'customer_success',
#                            handlers: [CustomerSuccess::StepHandlers::ValidateRefundRequestHandler]).run
#
# A handler class is found by the template's `handler.callable`, which is its class name.
# The wire protocol is docs/protocol.md; the behaviour is the TypeScript worker's.
module TaskerWorker
  VERSION = '0.1.0'
end

require_relative 'tasker_worker/errors'
require_relative 'tasker_worker/messages'
require_relative 'tasker_worker/amqp_url'
require_relative 'tasker_worker/context'
require_relative 'tasker_worker/step_handler'
require_relative 'tasker_worker/prefetch_tuner'
require_relative 'tasker_worker/worker'

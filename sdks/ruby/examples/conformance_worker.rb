#!/usr/bin/env ruby
# frozen_string_literal: true

# The Ruby SDK's conformance worker: the kit's handlers (packages/conformance/README.md).
#
#   pnpm conformance --namespace conf_rb -- ruby sdks/ruby/examples/conformance_worker.rb
$LOAD_PATH.unshift File.expand_path('../lib', __dir__)
require 'tasker_worker'

module Conformance
  class Succeed < TaskerWorker::StepHandler
    def self.callable = 'conformance_succeed'
    def call(context) = { ok: true, value: context.get_input('value') }
  end

  class FailPermanent < TaskerWorker::StepHandler
    def self.callable = 'conformance_fail_permanent'

    def call(_context)
      raise TaskerWorker::PermanentError.new('permanent failure requested', error_code: 'CONFORMANCE_PERMANENT', details: { reason: 'conformance' })
    end
  end

  class FailRetryable < TaskerWorker::StepHandler
    def self.callable = 'conformance_fail_retryable'

    def call(context)
      if context.attempt == 1
        raise TaskerWorker::RetryableError.new('retry requested', error_code: 'CONFORMANCE_RETRY',
                                                                  retry_after_ms: context.get_input('retry_after_ms') || 1000)
      end
      { attempt: context.attempt }
    end
  end

  class Produce < TaskerWorker::StepHandler
    def self.callable = 'conformance_produce'
    def call(context) = { token: context.get_input('token'), n: 42 }
  end

  class Consume < TaskerWorker::StepHandler
    def self.callable = 'conformance_consume'

    def call(context)
      {
        input_token: context.get_input('token'),
        produced: context.get_dependency_result('produce'),
        task_id: context.task_id,
        step_id: context.step_id,
        step_name: context.step_name,
        namespace: context.namespace,
        task_name: context.task_name,
        attempt: context.attempt,
        max_attempts: context.max_attempts,
        idempotency_key: context.idempotency_key
      }
    end
  end

  class Initialization < TaskerWorker::StepHandler
    def self.callable = 'conformance_initialization'
    def call(context) = { initialization: context.initialization }
  end

  class Large < TaskerWorker::StepHandler
    def self.callable = 'conformance_large'

    def call(context)
      size = context.get_input('size') || 0
      { size: size, data: ('0123456789' * ((size / 10) + 1))[0, size] }
    end
  end

  class Unicode < TaskerWorker::StepHandler
    def self.callable = 'conformance_unicode'

    def call(context)
      text = context.get_input('text') || ''
      { text: text, payload: context.get_input('payload'), code_points: text.length }
    end
  end

  class Delegate < TaskerWorker::StepHandler
    def self.callable = 'conformance_delegate'

    def call(context)
      child = context.create_task(namespace: context.namespace, name: 'conformance_success', context: { value: context.get_input('value') })
      context.wait_for(child['id'])
    end
  end

  class Sleep < TaskerWorker::StepHandler
    def self.callable = 'conformance_sleep'

    def call(context)
      ms = context.get_input('sleep_ms') || 0
      sleep(ms / 1000.0) # deliberately ignores context.cancelled?: the runtime must enforce the timeout on its own
      { slept_ms: ms, attempt: context.attempt, idempotency_key: context.idempotency_key }
    end
  end
end

TaskerWorker::Worker.new(
  handlers: [Conformance::Succeed, Conformance::FailPermanent, Conformance::FailRetryable, Conformance::Produce, Conformance::Consume,
             Conformance::Initialization, Conformance::Large, Conformance::Unicode, Conformance::Delegate, Conformance::Sleep],
  concurrency: 16
).run

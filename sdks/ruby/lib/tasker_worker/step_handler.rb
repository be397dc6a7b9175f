# frozen_string_literal: true

module TaskerWorker
  # What `success(result: ...)` returns; the worker sends its `result`.
  Success = Struct.new(:result)

  # Base class of handler classes: subclass it and define `call(context)`. Return the
  # step's result (a Hash, anything JSON) or `success(result: {...})`; raise PermanentError
  # or RetryableError to fail the step. The template's `handler.callable` is the class name
  # (`CustomerSuccess::StepHandlers::ValidateRefundRequestHandler`). A new instance runs
  # each step, so instance variables never leak between steps or threads.
  class StepHandler
    def call(_context)
      raise NotImplementedError, "#{self.class.name} must define call(context)"
    end

    # The callable this class answers to.
    def self.callable
      name
    end

    def success(result:)
      Success.new(result)
    end

    # nil, false, empty or whitespace-only (Rails' blank?, which plain Ruby lacks).
    def blank?(value)
      value.nil? || value == false || (value.respond_to?(:empty?) && value.empty?) || (value.is_a?(String) && value.strip.empty?)
    end
  end
end

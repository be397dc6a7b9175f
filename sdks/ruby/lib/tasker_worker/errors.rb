# frozen_string_literal: true

require 'json'

module TaskerWorker
  PERMANENT_ERROR = 'PERMANENT_ERROR'
  RETRYABLE_ERROR = 'RETRYABLE_ERROR'
  HANDLER_ERROR = 'HANDLER_ERROR'
  # Codes a handler may set: upper snake case, up to 64 characters.
  HANDLER_ERROR_CODE_PATTERN = /\A[A-Z][A-Z0-9_]{0,63}\z/
  MAX_ERROR_MESSAGE_CHARS = 8 * 1024
  MAX_ERROR_DETAILS_BYTES = 64 * 1024

  # Raised by a handler: the step fails now, whatever attempts are left.
  class PermanentError < StandardError
    attr_reader :error_code, :details

    def initialize(message = 'permanent failure', error_code: nil, code: nil, details: nil)
      super(message)
      @error_code = error_code || code || PERMANENT_ERROR
      @details = details
    end
    alias code error_code
  end

  # Raised by a handler: this attempt failed; the step is retried while attempts remain,
  # after `retry_after_ms` if given (capped by the step's policy), else the policy's backoff.
  class RetryableError < StandardError
    attr_reader :error_code, :retry_after_ms, :details

    def initialize(message = 'retryable failure', error_code: nil, code: nil, retry_after_ms: nil, details: nil)
      super(message)
      @error_code = error_code || code || RETRYABLE_ERROR
      @retry_after_ms = retry_after_ms
      @details = details
    end
    alias code error_code
  end

  # `context.create_task` was refused (the orchestrator's code, e.g. INVALID_CONTEXT, and
  # `issues` naming each failing field) or got no answer (INTERNAL). Uncaught in a handler
  # it is a retryable failure, like any other error.
  class TaskRequestError < StandardError
    attr_reader :code, :issues

    def initialize(code, message, issues = [])
      super("#{code}: #{message}")
      @code = code
      @issues = issues || []
    end
  end

  # Maps what a handler raised to the `error` of a step result. Returns [error, notes].
  module ErrorMapping
    module_function

    def to_step_error(raised)
      notes = []
      if raised.is_a?(PermanentError) || raised.is_a?(RetryableError)
        kind = raised.is_a?(PermanentError) ? 'permanent' : 'retryable'
        fallback = kind == 'permanent' ? PERMANENT_ERROR : RETRYABLE_ERROR
        code = raised.error_code
        unless code.is_a?(String) && HANDLER_ERROR_CODE_PATTERN.match?(code)
          notes << "code #{code.inspect} is not upper snake case (<= 64 characters); sent as #{fallback}"
          code = fallback
        end
        error = { 'kind' => kind, 'code' => code, 'message' => message_text(raised.message, notes) }
        error['retry_after_ms'] = retry_after(raised.retry_after_ms, notes) if kind == 'retryable'
        details = details_json(raised.details, notes)
        error['details'] = details unless details.nil?
        return [error, notes]
      end
      text = raised.instance_of?(StandardError) || raised.instance_of?(RuntimeError) ? raised.message : "#{raised.class.name}: #{raised.message}"
      [{ 'kind' => 'retryable', 'code' => HANDLER_ERROR, 'message' => message_text(text, notes) }, notes]
    end

    def message_text(text, notes)
      text = text.to_s
      return text if text.length <= MAX_ERROR_MESSAGE_CHARS

      notes << "message of #{text.length} characters cut to #{MAX_ERROR_MESSAGE_CHARS}"
      "#{text[0, MAX_ERROR_MESSAGE_CHARS]}…"
    end

    def retry_after(ms, notes)
      return nil if ms.nil?
      unless ms.is_a?(Numeric) && ms.finite? && ms >= 0
        notes << "retry_after_ms #{ms.inspect} is not a non-negative number; ignored"
        return nil
      end
      ms.round
    end

    def details_json(details, notes)
      return nil if details.nil?

      text = JSON.generate(details)
      if text.bytesize > MAX_ERROR_DETAILS_BYTES
        notes << "details dropped: more than #{MAX_ERROR_DETAILS_BYTES} bytes"
        return nil
      end
      JSON.parse(text)
    rescue JSON::GeneratorError, Encoding::UndefinedConversionError => e
      notes << "details dropped: not JSON-serializable (#{e.message})"
      nil
    end
  end
end

# frozen_string_literal: true

require 'json'
require 'time'

module TaskerWorker
  PROTOCOL_VERSION = 1
  SUPPORTED_PROTOCOL_VERSIONS = [1].freeze
  MAX_MESSAGE_BYTES = 4 * 1024 * 1024
  MAX_RESULT_BYTES = 1024 * 1024
  DEFAULT_PREFIX = 'tasker'
  DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672'
  NAMESPACE_PATTERN = /\A[a-z][a-z0-9_]{0,62}\z/
  IDENTIFIER_PATTERN = /\A[A-Za-z][A-Za-z0-9_]{0,127}\z/
  PREFIX_PATTERN = /\A[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\z/

  # A step message this worker cannot run: parked on the dead-letter exchange with this code.
  class Refused < StandardError
    attr_reader :code

    def initialize(code, reason)
      super(reason)
      @code = code
    end
  end

  # Exchange and queue names under a prefix (TASKER_AMQP_PREFIX).
  class Names
    attr_reader :prefix

    def initialize(prefix = DEFAULT_PREFIX)
      raise ArgumentError, "AMQP prefix #{prefix.inspect} is not valid: use lower-case words separated by dots" unless PREFIX_PATTERN.match?(prefix)

      @prefix = prefix
    end

    def steps_exchange = "#{prefix}.steps"
    def step_queue(namespace) = "#{prefix}.steps.#{namespace}"
    def results_exchange = "#{prefix}.results"
    def task_requests_exchange = "#{prefix}.task_requests"
    def dead_letter_exchange = "#{prefix}.dead"
    def control_exchange = "#{prefix}.control"
  end

  # The wire format (docs/protocol.md): step message checks and step results.
  module Messages
    module_function

    def now_iso
      Time.now.utc.iso8601(3)
    end

    def parked_routing_key(namespace) = "invalid.step.#{namespace}"

    # Size, JSON, protocol version, fields, in that order. Raises Refused.
    def decode_step_message(body)
      raise Refused.new('PAYLOAD_TOO_LARGE', "step message is #{body.bytesize} bytes; the limit is #{MAX_MESSAGE_BYTES} bytes") if body.bytesize > MAX_MESSAGE_BYTES

      text = body.dup.force_encoding(Encoding::UTF_8)
      raise Refused.new('INVALID_MESSAGE', 'step message is not valid JSON: not UTF-8') unless text.valid_encoding?

      begin
        raw = JSON.parse(text)
      rescue JSON::ParserError => e
        raise Refused.new('INVALID_MESSAGE', "step message is not valid JSON: #{e.message[0, 200]}")
      end
      raise Refused.new('INVALID_MESSAGE', 'step message must be a JSON object') unless raw.is_a?(Hash)

      version = raw['protocol_version']
      if version.is_a?(Numeric) && !SUPPORTED_PROTOCOL_VERSIONS.include?(version)
        raise Refused.new('UNSUPPORTED_PROTOCOL_VERSION',
                          "step message has protocol_version #{version}; supported: #{SUPPORTED_PROTOCOL_VERSIONS.join(', ')}")
      end
      problems = check_fields(raw)
      raise Refused.new('INVALID_MESSAGE', "step message does not match its schema: #{problems.join('; ')}") unless problems.empty?

      raw
    end

    def check_fields(raw)
      problems = []
      need = ->(field, ok, what) { problems << "#{field}: #{what}" unless ok }
      need.call('protocol_version', raw['protocol_version'] == PROTOCOL_VERSION && raw['protocol_version'].is_a?(Integer), "must be #{PROTOCOL_VERSION}")
      need.call('message_type', raw['message_type'] == 'step', "must be 'step'")
      %w[task_id step_id].each { |f| need.call(f, raw[f].is_a?(String) && raw[f].length.between?(1, 64), 'must be a string of 1 to 64 characters') }
      need.call('namespace', raw['namespace'].is_a?(String) && NAMESPACE_PATTERN.match?(raw['namespace']), 'must be lower snake case')
      %w[task_name step_name].each { |f| need.call(f, raw[f].is_a?(String) && IDENTIFIER_PATTERN.match?(raw[f]), 'must be an identifier') }
      %w[task_version correlation_id idempotency_key dispatched_at].each { |f| need.call(f, raw[f].is_a?(String), 'must be a string') }
      %w[attempt max_attempts].each { |f| need.call(f, raw[f].is_a?(Integer) && raw[f] >= 1, 'must be an integer >= 1') }
      t = raw.fetch('timeout_ms', :missing)
      need.call('timeout_ms', t.nil? || (t.is_a?(Integer) && t.positive?), 'must be a positive integer or null')
      h = raw['handler']
      if h.is_a?(Hash)
        need.call('handler.callable', h['callable'].is_a?(String) && !h['callable'].empty?, 'must be a non-empty string')
        need.call('handler.method', h['method'].nil? || h['method'].is_a?(String), 'must be a string or null')
        need.call('handler.initialization', h['initialization'].is_a?(Hash), 'must be an object')
      else
        need.call('handler', false, 'must be an object')
      end
      %w[input dependency_results].each { |f| need.call(f, raw[f].is_a?(Hash), 'must be an object') }
      problems
    end

    def step_result(message, started_at:, worker_id:, delivery_count:, outcome:)
      r = {
        'protocol_version' => PROTOCOL_VERSION,
        'message_type' => 'step_result',
        'task_id' => message['task_id'],
        'step_id' => message['step_id'],
        'namespace' => message['namespace'],
        'step_name' => message['step_name'],
        'attempt' => message['attempt'],
        'started_at' => started_at,
        'finished_at' => now_iso,
        'worker_id' => worker_id[0, 200]
      }
      r['delivery_count'] = delivery_count if delivery_count
      r.merge(outcome)
    end

    # [outcome, nil] for a returned value, or [nil, error] when it cannot travel.
    def encode_result(value)
      text = JSON.generate(value)
      if text.bytesize > MAX_RESULT_BYTES
        return [nil, { 'kind' => 'permanent', 'code' => 'PAYLOAD_TOO_LARGE',
                       'message' => "the handler's result is #{text.bytesize} bytes as JSON; the limit is #{MAX_RESULT_BYTES} bytes" }]
      end
      [{ 'status' => 'success', 'result' => JSON.parse(text) }, nil]
    rescue JSON::GeneratorError, JSON::NestingError, Encoding::UndefinedConversionError, EncodingError => e
      [nil, { 'kind' => 'permanent', 'code' => 'INVALID_MESSAGE', 'message' => "the handler's result is not JSON-serializable: #{e.message[0, 500]}" }]
    end
  end
end

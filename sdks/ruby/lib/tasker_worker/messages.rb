# frozen_string_literal: true

require 'json'
require 'time'

module TaskerWorker
  PROTOCOL_VERSION = 1
  SUPPORTED_PROTOCOL_VERSIONS = [1].freeze
  MAX_MESSAGE_BYTES = 4 * 1024 * 1024
  # Step messages in one `steps` message (Limits.maxStepsPerMessage).
  MAX_STEPS_PER_MESSAGE = 100
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

  # One step of a delivery: its checked `message`, or why it is `refused`. `what` names it in
  # reasons ('step message', or 'step message 2 of 3 in a steps message'). `in_steps`: it came
  # in a `steps` message, and is parked alone, as its own JSON (`body`).
  StepPart = Struct.new(:what, :message, :refused, :in_steps, :item, keyword_init: true) do
    def body = JSON.generate(item)
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
      check_step_message(parse_object(body, 'step message'))
    end

    # One step message, or several in a `steps` message (docs/protocol.md, section 3): an
    # Array of StepPart. Raises Refused when the whole message is to be parked: a lone step
    # message that fails its checks, or a `steps` message whose envelope is broken (not an
    # array, empty, more than MAX_STEPS_PER_MESSAGE, an unknown protocol version). Otherwise
    # each step of a `steps` message is checked on its own: a bad one comes back refused, its
    # siblings decoded.
    def decode_step_messages(body)
      raw = parse_object(body, 'step message')
      return [StepPart.new(what: 'step message', message: check_step_message(raw), in_steps: false)] unless raw['message_type'] == 'steps'

      envelope = 'steps message'
      check_version(raw, envelope)
      raise Refused.new('INVALID_MESSAGE', "#{envelope} has no protocol_version") unless raw.key?('protocol_version')

      items = raw['steps']
      unless items.is_a?(Array) && items.size.between?(1, MAX_STEPS_PER_MESSAGE)
        has = items.is_a?(Array) ? "; it has #{items.size}" : ''
        raise Refused.new('INVALID_MESSAGE', "#{envelope}: steps must be an array of 1 to #{MAX_STEPS_PER_MESSAGE} step messages#{has}")
      end

      items.each_with_index.map do |item, i|
        what = "step message #{i + 1} of #{items.size} in a #{envelope}"
        begin
          StepPart.new(what: what, message: check_step_message(item, what), in_steps: true, item: item)
        rescue Refused => e
          StepPart.new(what: what, refused: e, in_steps: true, item: item)
        end
      end
    end

    # The checks of a parsed step message: an object, protocol version, fields. `what` names
    # it in the reason. Raises Refused.
    def check_step_message(raw, what = 'step message')
      raise Refused.new('INVALID_MESSAGE', "#{what} must be a JSON object") unless raw.is_a?(Hash)

      check_version(raw, what)
      problems = check_fields(raw)
      raise Refused.new('INVALID_MESSAGE', "#{what} does not match its schema: #{problems.join('; ')}") unless problems.empty?

      raw
    end

    # Size, then JSON, then "an object": the checks before any field is read.
    def parse_object(body, what)
      raise Refused.new('PAYLOAD_TOO_LARGE', "#{what} is #{body.bytesize} bytes; the limit is #{MAX_MESSAGE_BYTES} bytes") if body.bytesize > MAX_MESSAGE_BYTES

      text = body.dup.force_encoding(Encoding::UTF_8)
      raise Refused.new('INVALID_MESSAGE', "#{what} is not valid JSON: not UTF-8") unless text.valid_encoding?

      begin
        raw = JSON.parse(text)
      rescue JSON::ParserError => e
        raise Refused.new('INVALID_MESSAGE', "#{what} is not valid JSON: #{e.message[0, 200]}")
      end
      raise Refused.new('INVALID_MESSAGE', "#{what} must be a JSON object") unless raw.is_a?(Hash)

      raw
    end

    def check_version(raw, what)
      version = raw['protocol_version']
      return unless version.is_a?(Numeric) && !SUPPORTED_PROTOCOL_VERSIONS.include?(version)

      raise Refused.new('UNSUPPORTED_PROTOCOL_VERSION', "#{what} has protocol_version #{version}; supported: #{SUPPORTED_PROTOCOL_VERSIONS.join(', ')}")
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

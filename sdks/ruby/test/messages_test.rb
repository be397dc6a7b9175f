# frozen_string_literal: true

require 'minitest/autorun'
require 'tasker_worker'

module StepMessageFixture
  def step_message(**over)
    {
      'protocol_version' => 1, 'message_type' => 'step', 'task_id' => 'tsk_1', 'namespace' => 'customer_success',
      'task_name' => 'process_refund', 'task_version' => '1.0.0', 'correlation_id' => 'corr_1', 'step_id' => 'stp_1',
      'step_name' => 'validate_refund_request', 'attempt' => 1, 'max_attempts' => 3, 'timeout_ms' => nil,
      'handler' => { 'callable' => 'Validate', 'method' => nil, 'initialization' => { 'limit' => 100 } },
      'input' => { 'ticket_id' => 'TICKET-1', 'refund_amount' => 49.99 }, 'dependency_results' => { 'earlier' => { 'ok' => true } },
      'idempotency_key' => 'stp_1:1', 'dispatched_at' => '2026-11-26T14:00:00.000Z'
    }.merge(over.transform_keys(&:to_s))
  end
end

class MessagesTest < Minitest::Test
  include StepMessageFixture
  M = TaskerWorker::Messages

  def test_a_valid_step_message_decodes
    assert_equal 'stp_1', M.decode_step_message(JSON.generate(step_message))['step_id']
  end

  def test_not_json_is_invalid_message
    e = assert_raises(TaskerWorker::Refused) { M.decode_step_message('{nope') }
    assert_equal 'INVALID_MESSAGE', e.code
  end

  def test_an_unknown_protocol_version_is_refused_first
    e = assert_raises(TaskerWorker::Refused) { M.decode_step_message('{"protocol_version": 7}') }
    assert_equal 'UNSUPPORTED_PROTOCOL_VERSION', e.code
  end

  def test_every_failing_field_is_named
    e = assert_raises(TaskerWorker::Refused) { M.decode_step_message(JSON.generate(step_message(attempt: 0, input: [], handler: { 'callable' => '' }))) }
    %w[attempt input handler.callable handler.initialization].each { |f| assert_includes e.message, f }
  end

  def test_results_that_cannot_travel_fail_permanently
    assert_equal 'INVALID_MESSAGE', M.encode_result({ 'x' => Float::NAN })[1]['code']
    assert_equal 'PAYLOAD_TOO_LARGE', M.encode_result('x' * (1024 * 1024 + 1))[1]['code']
    assert_equal({ 'status' => 'success', 'result' => { 'a' => 'b' } }, M.encode_result({ a: 'b' })[0])
  end

  def test_a_result_echoes_the_ids
    r = M.step_result(step_message(attempt: 2), started_at: 'x', worker_id: 'w', delivery_count: 2, outcome: { 'status' => 'success', 'result' => nil })
    assert_equal [2, 2, 'step_result', 'customer_success'], r.values_at('attempt', 'delivery_count', 'message_type', 'namespace')
    assert_match(/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/, r['finished_at'])
  end
end

module StepsMessageFixture
  def steps_message(steps, **over)
    { 'protocol_version' => 1, 'message_type' => 'steps', 'steps' => steps }.merge(over.transform_keys(&:to_s))
  end
end

# Several step messages in one `steps` message (docs/protocol.md, section 3).
class StepsMessageTest < Minitest::Test
  include StepMessageFixture
  include StepsMessageFixture
  M = TaskerWorker::Messages

  def test_a_steps_message_decodes_into_its_step_messages
    parts = M.decode_step_messages(JSON.generate(steps_message((0..2).map { |i| step_message(step_id: "stp_#{i}") })))
    assert_equal %w[stp_0 stp_1 stp_2], parts.map { |p| p.message['step_id'] }
    assert_equal [nil, nil, nil], parts.map(&:refused)
    assert parts.all?(&:in_steps)
    assert_equal 'step message 2 of 3 in a steps message', parts[1].what
  end

  def test_a_lone_step_message_is_one_part_and_refused_whole_when_bad
    parts = M.decode_step_messages(JSON.generate(step_message))
    assert_equal [['stp_1', false, 'step message']], parts.map { |p| [p.message['step_id'], p.in_steps, p.what] }
    e = assert_raises(TaskerWorker::Refused) { M.decode_step_messages(JSON.generate(step_message(step_id: nil))) }
    assert e.message.start_with?('step message does not match its schema: step_id'), e.message
  end

  def test_a_broken_envelope_refuses_the_whole_message_naming_the_problem
    one = step_message
    {
      'not an array' => [steps_message({ 'a' => 1 }), 'INVALID_MESSAGE', 'steps message: steps must be an array of 1 to 100 step messages'],
      'no steps' => [{ 'protocol_version' => 1, 'message_type' => 'steps' }, 'INVALID_MESSAGE', 'steps message: steps must be an array of 1 to 100 step messages'],
      'empty' => [steps_message([]), 'INVALID_MESSAGE', 'steps message: steps must be an array of 1 to 100 step messages; it has 0'],
      '101 steps' => [steps_message([one] * 101), 'INVALID_MESSAGE', 'steps message: steps must be an array of 1 to 100 step messages; it has 101'],
      'unknown version' => [steps_message([one], protocol_version: 2), 'UNSUPPORTED_PROTOCOL_VERSION', 'steps message has protocol_version 2; supported: 1'],
      'no version' => [{ 'message_type' => 'steps', 'steps' => [one] }, 'INVALID_MESSAGE', 'steps message has no protocol_version']
    }.each do |name, (message, code, reason)|
      e = assert_raises(TaskerWorker::Refused, name) { M.decode_step_messages(JSON.generate(message)) }
      assert_equal [code, reason], [e.code, e.message], name
    end
  end

  def test_one_bad_step_is_refused_alone_naming_its_place_and_its_siblings_decode
    bad = step_message(step_id: 'stp_bad').tap { |m| m.delete('handler') }
    parts = M.decode_step_messages(JSON.generate(steps_message([step_message(step_id: 'stp_a'), bad, step_message(step_id: 'stp_c')])))
    assert_equal ['stp_a', nil, 'stp_c'], parts.map { |p| p.message && p.message['step_id'] }
    assert_equal [nil, nil], parts.values_at(0, 2).map(&:refused)
    assert_equal ['INVALID_MESSAGE', 'step message 2 of 3 in a steps message does not match its schema: handler: must be an object'],
                 [parts[1].refused.code, parts[1].refused.message]
    assert_equal bad, JSON.parse(parts[1].body)
  end

  def test_a_step_that_is_not_an_object_or_of_another_version_is_refused_alone
    parts = M.decode_step_messages(JSON.generate(steps_message([step_message, 'nope', step_message(protocol_version: 9)])))
    refute_nil parts[0].message
    assert_equal ['INVALID_MESSAGE', 'step message 2 of 3 in a steps message must be a JSON object'], [parts[1].refused.code, parts[1].refused.message]
    assert_equal '"nope"', parts[1].body
    assert_equal 'UNSUPPORTED_PROTOCOL_VERSION', parts[2].refused.code
    assert parts[2].refused.message.start_with?('step message 3 of 3 in a steps message has protocol_version 9'), parts[2].refused.message
  end
end

class ErrorMappingTest < Minitest::Test
  E = TaskerWorker::ErrorMapping

  def test_permanent_keeps_code_and_details
    error, notes = E.to_step_error(TaskerWorker::PermanentError.new('no', error_code: 'INVALID_REASON', details: { reason: 'bored' }))
    assert_equal({ 'kind' => 'permanent', 'code' => 'INVALID_REASON', 'message' => 'no', 'details' => { 'reason' => 'bored' } }, error)
    assert_empty notes
  end

  def test_retryable_keeps_retry_after
    error, = E.to_step_error(TaskerWorker::RetryableError.new('busy', error_code: 'GATEWAY_BUSY', retry_after_ms: 1500.4))
    assert_equal({ 'kind' => 'retryable', 'code' => 'GATEWAY_BUSY', 'message' => 'busy', 'retry_after_ms' => 1500 }, error)
  end

  def test_a_bad_code_falls_back
    error, notes = E.to_step_error(TaskerWorker::PermanentError.new('no', error_code: 'bad code'))
    assert_equal 'PERMANENT_ERROR', error['code']
    refute_empty notes
  end

  def test_anything_else_is_a_retryable_handler_error
    error, = E.to_step_error(KeyError.new('key not found: "ticket_id"'))
    assert_equal({ 'kind' => 'retryable', 'code' => 'HANDLER_ERROR', 'message' => 'KeyError: key not found: "ticket_id"' }, error)
    assert_equal 'plain', E.to_step_error(RuntimeError.new('plain'))[0]['message']
  end
end

class ContextTest < Minitest::Test
  include StepMessageFixture

  def test_the_context_exposes_the_step
    ctx = TaskerWorker::StepContext.new(step_message)
    assert_equal 49.99, ctx.get_input('refund_amount')
    assert_equal 49.99, ctx.get_input(:refund_amount)
    assert_equal({ 'ok' => true }, ctx.get_dependency_result('earlier'))
    assert_equal({ 'limit' => 100 }, ctx.initialization)
    assert_equal [1, 3, 'stp_1:1'], [ctx.attempt, ctx.max_attempts, ctx.idempotency_key]
    refute ctx.cancelled?
  end

  def test_create_task_builds_the_documented_request
    sent = []
    ctx = TaskerWorker::StepContext.new(step_message, request_task: lambda { |req, _t|
      sent << req
      { 'ok' => true, 'created' => true, 'task' => { 'id' => 'tsk_child' } }
    })
    task = ctx.create_task(namespace: 'payments', name: 'process_refund', context: { payment_id: 'p' })
    assert_equal({ 'id' => 'tsk_child', 'created' => true }, task)
    assert_equal({ 'protocol_version' => 1, 'message_type' => 'task_request', 'namespace' => 'payments', 'name' => 'process_refund',
                   'context' => { 'payment_id' => 'p' }, 'idempotency_key' => 'stp_1:payments.process_refund:1',
                   'parent' => { 'task_id' => 'tsk_1', 'step_id' => 'stp_1' }, 'correlation_id' => 'corr_1' }, sent[0])
  end

  def test_create_task_refusals_raise_with_the_code
    ctx = TaskerWorker::StepContext.new(step_message, request_task: ->(_r, _t) { { 'ok' => false, 'error' => { 'code' => 'INVALID_CONTEXT', 'message' => 'bad' } } })
    e = assert_raises(TaskerWorker::TaskRequestError) { ctx.create_task(namespace: 'payments', name: 'process_refund', context: {}) }
    assert_equal 'INVALID_CONTEXT', e.code
    e = assert_raises(TaskerWorker::TaskRequestError) { ctx.create_task(namespace: 'Bad NS', name: 'x', context: {}) }
    assert_equal 'INVALID_MESSAGE', e.code
  end

  def test_handler_classes_answer_to_their_class_name_and_blank_is_like_rails
    klass = Class.new(TaskerWorker::StepHandler)
    Object.const_set(:SomeTestHandler, klass)
    assert_equal 'SomeTestHandler', klass.callable
    h = klass.new
    assert(h.blank?(nil) && h.blank?('  ') && h.blank?([]) && !h.blank?('x') && !h.blank?(0))
    assert_equal TaskerWorker::Success.new({ a: 1 }), h.success(result: { a: 1 })
  ensure
    Object.send(:remove_const, :SomeTestHandler)
  end

  def test_bad_options_are_refused_with_one_sentence_each
    e = assert_raises(ArgumentError) { TaskerWorker::Worker.new(namespace: 'Bad', handlers: {}, concurrency: 0) }
    assert_includes e.message, 'namespace "Bad"'
    assert_includes e.message, 'concurrency 0'
    assert_includes e.message, 'needs at least one handler'
  end
end

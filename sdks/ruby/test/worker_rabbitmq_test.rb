# frozen_string_literal: true

# The worker against the real RabbitMQ (TASKER_AMQP_URL, default the local one), on a
# prefix of its own: a stand-in orchestrator declares the queues, dispatches step messages,
# reads the results and answers task requests. Everything is deleted afterwards.
require 'minitest/autorun'
require 'timeout'
require 'tasker_worker'
require_relative 'messages_test'
require_relative 'broker_user'

AMQP_URL = ENV['TASKER_AMQP_URL'] || 'amqp://guest:guest@127.0.0.1:5672'

class FakeOrchestrator
  attr_reader :prefix, :requests, :received

  def initialize
    @prefix = "rbtest#{SecureRandom.hex(4)}"
    @conn = Bunny.new(AMQP_URL, logger: Logger.new(nil))
    @conn.start
    @ch = @conn.create_channel
    @exchanges = { 'steps' => :direct, 'results' => :topic, 'dead' => :topic, 'task_requests' => :topic, 'control' => :fanout }.map do |n, t|
      Bunny::Exchange.new(@ch, t, "#{@prefix}.#{n}", durable: true)
    end
    @queues = { 'results' => 'results', 'dead_letters' => 'dead', 'task_requests' => 'task_requests' }.map do |q, ex|
      @ch.queue("#{@prefix}.#{q}", durable: true).tap { |queue| queue.bind("#{@prefix}.#{ex}", routing_key: '#') }
    end
    @namespaces = []
    @seen = Hash.new { |h, k| h[k] = [] }
    # Every message read from each queue, as received (a step_results message whole).
    @received = Hash.new { |h, k| h[k] = [] }
    @requests = []
    @answering = true
    @answerer = Thread.new { answer_task_requests }
  end

  def namespace
    ns = "ns_#{SecureRandom.hex(4)}"
    @ch.queue("#{@prefix}.steps.#{ns}", durable: true, arguments: { 'x-queue-type' => 'quorum' }).bind("#{@prefix}.steps", routing_key: ns)
    @namespaces << ns
    ns
  end

  def dispatch(message, raw: nil)
    @ch.basic_publish(raw || JSON.generate(message), "#{@prefix}.steps", message['namespace'], persistent: true, message_id: message['step_id'])
  end

  # A `steps` message: several step messages in one, AMQP type `steps`.
  def dispatch_steps(ns, message, raw: nil, message_id: 'steps', headers: nil)
    @ch.basic_publish(raw || JSON.generate(message), "#{@prefix}.steps", ns, persistent: true, content_type: 'application/json',
                                                                            message_id: message_id, type: 'steps', headers: headers)
  end

  attr_reader :ch

  # The first message on the queue that matches; the others are kept for later waits. The
  # results of a `step_results` message are seen one by one, with its properties.
  def wait(queue, timeout: 10)
    deadline = Time.now + timeout
    seen = @seen[queue]
    while Time.now < deadline
      i = seen.index { |d, p, b| yield(d, p, b) }
      return seen.delete_at(i) if i

      _info, props, body = @ch.basic_get("#{@prefix}.#{queue}", manual_ack: false)
      if body
        decoded = begin
          JSON.parse(body)
        rescue JSON::ParserError
          nil
        end
        @received[queue] << [decoded, props, body]
        if decoded.is_a?(Hash) && decoded['message_type'] == 'step_results'
          decoded['results'].each { |r| seen << [r, props, JSON.generate(r)] }
        else
          seen << [decoded, props, body]
        end
      else
        sleep 0.02
      end
    end
    raise Minitest::Assertion, "nothing matching on #{queue} within #{timeout} s"
  end

  def result_for(step_id, timeout: 10)
    wait('results', timeout: timeout) { |d, _p, _b| d && d['step_id'] == step_id }
  end

  def broadcast(message)
    @ch.basic_publish(JSON.generate(message), "#{@prefix}.control", '')
  end

  def depth(ns)
    @ch.queue("#{@prefix}.steps.#{ns}", passive: true).message_count
  end

  def answer_task_requests
    conn = Bunny.new(AMQP_URL, logger: Logger.new(nil))
    conn.start
    ch = conn.create_channel
    while @answering
      _info, props, body = ch.basic_get("#{@prefix}.task_requests", manual_ack: false)
      unless body
        sleep 0.02
        next
      end
      req = JSON.parse(body)
      @requests << req
      reply = { 'protocol_version' => 1, 'message_type' => 'task_reply', 'ok' => true, 'created' => true,
                'task' => { 'id' => 'tsk_child', 'namespace' => req['namespace'], 'parent_task_id' => req['parent']['task_id'] } }
      ch.basic_publish(JSON.generate(reply), '', props[:reply_to], correlation_id: props[:correlation_id])
    end
    conn.close
  end

  def close
    @answering = false
    begin
      @answerer.join(5)
    rescue StandardError => e
      warn "the task-request answerer had failed: #{e.message}"
    end
    @namespaces.each { |ns| @ch.queue_delete("#{@prefix}.steps.#{ns}") }
    @queues.each(&:delete)
    @exchanges.each(&:delete)
    @conn.close
  end
end

class Validate < TaskerWorker::StepHandler
  def call(context)
    amount = context.get_input('refund_amount')
    raise TaskerWorker::PermanentError.new('Refund amount must be positive', error_code: 'INVALID_AMOUNT', details: { amount: amount }) unless amount&.positive?

    success(result: { validated: true, amount: amount, init: context.initialization, earlier: context.get_dependency_result('earlier') })
  end
end

class Busy < TaskerWorker::StepHandler
  def call(_context)
    raise TaskerWorker::RetryableError.new('gateway busy', error_code: 'GATEWAY_BUSY', retry_after_ms: 2000)
  end
end

class Slow < TaskerWorker::StepHandler
  def call(context)
    sleep((context.get_input('ms') || 300) / 1000.0)
    { slept: true }
  end
end

class Delegate < TaskerWorker::StepHandler
  def call(context)
    task = context.create_task(namespace: 'payments', name: 'process_refund', context: { payment_id: 'pay_1', refund_amount: 5 })
    { payment_task_id: task['id'] }
  end
end

class UntilCancelled < TaskerWorker::StepHandler
  STARTED = Queue.new

  def call(context)
    STARTED << true
    sleep 0.01 until context.cancelled?
    { cancelled: true }
  end
end

# Counts the handlers running at once.
class Counting < TaskerWorker::StepHandler
  LOCK = Mutex.new
  COUNTS = { running: 0, max: 0 }

  def call(_context)
    LOCK.synchronize do
      COUNTS[:running] += 1
      COUNTS[:max] = [COUNTS[:max], COUNTS[:running]].max
    end
    sleep 0.2
    LOCK.synchronize { COUNTS[:running] -= 1 }
    { counted: true }
  end
end

class DelegateAndWait < TaskerWorker::StepHandler
  def call(context)
    context.wait_for(context.create_task(namespace: 'payments', name: 'process_refund', context: {})['id'])
  end
end

# Holds every step while the gate is closed (Gated.close! / Gated.open!).
class Gated < TaskerWorker::StepHandler
  LOCK = Mutex.new
  OPENED = ConditionVariable.new
  @open = true

  class << self
    def close!
      LOCK.synchronize { @open = false }
    end

    def open!
      LOCK.synchronize do
        @open = true
        OPENED.broadcast
      end
    end

    def pass
      LOCK.synchronize { OPENED.wait(LOCK) until @open }
    end
  end

  def call(context)
    self.class.pass
    { passed: context.step_id }
  end
end

class WorkerRabbitMQTest < Minitest::Test
  include StepMessageFixture
  include StepsMessageFixture
  ORCH = FakeOrchestrator.new
  Minitest.after_run { ORCH.close }

  def start_worker(handlers: [Validate, Busy, Slow, Delegate, DelegateAndWait, UntilCancelled, Counting], **options)
    ns = ORCH.namespace
    w = TaskerWorker::Worker.new(namespace: ns, handlers: handlers, prefix: ORCH.prefix,
                                 logger: Logger.new(nil), **{ amqp_url: AMQP_URL }.merge(options))
    t = Thread.new { w.run(install_signal_handlers: false) }
    @cleanup = lambda {
      w.stop
      t.join(15)
    }
    sleep 0.05 until w.instance_variable_get(:@consumer) || !t.alive?
    [ns, w, t]
  end

  def teardown
    @cleanup&.call
  ensure
    @broker_user&.delete
  end

  def handler(name) = { 'callable' => name, 'method' => nil, 'initialization' => {} }

  # Waits until the block returns true, polling; fails after `timeout` seconds.
  def eventually(what, timeout: 10)
    deadline = Time.now + timeout
    until yield
      raise Minitest::Assertion, "#{what}: not within #{timeout} s" if Time.now > deadline

      sleep 0.02
    end
  end

  def test_a_step_result_is_published_with_its_properties_and_the_step_acked
    ns, w, t = start_worker
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_ok', idempotency_key: 'stp_ok:1'))
    r, props, = ORCH.result_for('stp_ok')
    assert_equal 'success', r['status']
    assert_equal({ 'validated' => true, 'amount' => 49.99, 'init' => { 'limit' => 100 }, 'earlier' => { 'ok' => true } }, r['result'])
    assert_equal ['tsk_1', ns, 1, w.worker_id], r.values_at('task_id', 'namespace', 'attempt', 'worker_id')
    assert_equal ['application/json', 2, 'stp_ok:1', 'step_result'], props.values_at(:content_type, :delivery_mode, :message_id, :type)
    assert_equal URI(AMQP_URL).user || 'guest', props[:user_id]
    w.stop
    t.join(15)
    assert_equal 0, ORCH.depth(ns)
  end

  # The origin check (docs/protocol.md, section 2) applies a namespace's results only when
  # their user_id is that namespace's broker user, and RabbitMQ refuses a user_id that is not
  # the connection's: the worker must log in as the URL's user, decoded as RFC 3986 says,
  # and sign with that same user.
  def test_results_carry_the_user_id_of_the_url_user_decoded_from_percent_escapes_with_plus_kept
    user = @broker_user = BrokerUser.new(ORCH.prefix, 'rbtest')
    ns, = start_worker(amqp_url: user.url)
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_user'))
    r, props, = ORCH.result_for('stp_user')
    assert_equal 'success', r['status']
    assert_equal user.name.b, props[:user_id].b
  end

  def test_permanent_and_retryable_errors_and_a_missing_handler
    ns, = start_worker
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_perm', input: { 'refund_amount' => -1 }))
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_busy', handler: handler('Busy')))
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_none', handler: handler('Nope')))
    assert_equal({ 'kind' => 'permanent', 'code' => 'INVALID_AMOUNT', 'message' => 'Refund amount must be positive', 'details' => { 'amount' => -1 } },
                 ORCH.result_for('stp_perm')[0]['error'])
    assert_equal({ 'kind' => 'retryable', 'code' => 'GATEWAY_BUSY', 'message' => 'gateway busy', 'retry_after_ms' => 2000 }, ORCH.result_for('stp_busy')[0]['error'])
    err = ORCH.result_for('stp_none')[0]['error']
    assert_equal %w[permanent HANDLER_NOT_FOUND], err.values_at('kind', 'code')
    assert_includes err['message'], "'Nope'"
    assert_includes err['message'], ns
    assert_includes err['message'], 'Busy, Counting, Delegate, DelegateAndWait, Slow, UntilCancelled, Validate'
  end

  def test_steps_run_concurrently_up_to_the_concurrency
    ns, = start_worker(concurrency: 3)
    t0 = Time.now
    3.times { |i| ORCH.dispatch(step_message(namespace: ns, step_id: "stp_c#{i}", input: { 'ms' => 400 }, handler: handler('Slow'))) }
    3.times { |i| ORCH.result_for("stp_c#{i}") }
    assert_operator Time.now - t0, :<, 1.1
  end

  def test_a_handler_past_its_timeout_gets_handler_timeout_at_the_deadline
    ns, = start_worker
    t0 = Time.now
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_to', timeout_ms: 200, input: { 'ms' => 1500 }, handler: handler('Slow')))
    r, = ORCH.result_for('stp_to')
    assert_operator Time.now - t0, :<, 1.0
    assert_equal %w[retryable HANDLER_TIMEOUT], r['error'].values_at('kind', 'code')
  end

  def test_malformed_messages_are_parked_with_the_reason_in_headers
    ns, = start_worker
    ORCH.dispatch({ 'namespace' => ns, 'step_id' => 'bad' }, raw: 'not json')
    _d, props, body = ORCH.wait('dead_letters') { |_d, p, _b| p[:message_id] == 'bad' }
    assert_equal 'not json', body
    assert_equal 'INVALID_MESSAGE', props[:headers]['x-tasker-code']
    assert_equal "#{ORCH.prefix}.steps.#{ns}", props[:headers]['x-tasker-source-queue']
    refute_empty props[:headers]['x-tasker-reason']
  end

  def test_a_steps_message_runs_each_step_parks_a_bad_one_alone_and_is_acked_once
    ns, w, t = start_worker
    wrong = step_message(namespace: 'elsewhere', step_id: 'stp_s2', idempotency_key: 'stp_s2:1')
    steps = [step_message(namespace: ns, step_id: 'stp_s1', idempotency_key: 'stp_s1:1'), wrong,
             step_message(namespace: ns, step_id: 'stp_s3', idempotency_key: 'stp_s3:1', input: { 'ms' => 50 }, handler: handler('Slow'))]
    ORCH.dispatch_steps(ns, steps_message(steps), message_id: 'stp_s1:1+2', headers: { 'x-test' => 'kept' })
    r1, p1, = ORCH.result_for('stp_s1')
    assert_equal ['success', true, 'step_result', 'stp_s1:1'], [r1['status'], r1['result']['validated'], p1[:type], p1[:message_id]]
    r3, p3, = ORCH.result_for('stp_s3')
    assert_equal ['success', true, 'stp_s3:1'], [r3['status'], r3['result']['slept'], p3[:message_id]]
    parked, props, body = ORCH.wait('dead_letters') { |d, _p, _b| d.is_a?(Hash) && d['step_id'] == 'stp_s2' }
    assert_equal wrong, parked # its own JSON, not the envelope
    assert_equal JSON.generate(wrong), body
    assert_equal ['step', 'application/json', 2], props.values_at(:type, :content_type, :delivery_mode)
    assert_equal 'INVALID_MESSAGE', props[:headers]['x-tasker-code']
    assert_equal "step message 2 of 3 in a steps message is for namespace 'elsewhere' but came from #{ORCH.prefix}.steps.#{ns}, the queue of '#{ns}'",
                 props[:headers]['x-tasker-reason']
    assert_equal "#{ORCH.prefix}.steps.#{ns}", props[:headers]['x-tasker-source-queue']
    assert_equal 'kept', props[:headers]['x-test']
    w.stop
    t.join(15)
    refute t.alive?
    assert_equal 0, ORCH.depth(ns) # acked: not given back at stop
    assert_raises(Minitest::Assertion) { ORCH.result_for('stp_s1', timeout: 0.3) } # answered once, not redelivered
  end

  def test_a_steps_message_with_a_broken_envelope_is_parked_whole_with_its_body_unchanged
    ns, w, t = start_worker
    raw = JSON.generate(steps_message([]))
    ORCH.dispatch_steps(ns, nil, raw: raw, message_id: 'steps_empty')
    _d, props, body = ORCH.wait('dead_letters') { |_d, p, _b| p[:message_id] == 'steps_empty' }
    assert_equal raw, body
    assert_equal %w[steps application/json], props.values_at(:type, :content_type)
    assert_equal 'INVALID_MESSAGE', props[:headers]['x-tasker-code']
    assert_equal 'steps message: steps must be an array of 1 to 100 step messages; it has 0', props[:headers]['x-tasker-reason']
    w.stop
    t.join(15)
    assert_equal 0, ORCH.depth(ns)
  end

  def test_a_result_not_confirmed_gives_the_whole_steps_message_back_after_a_pause
    ns, w, t = start_worker
    full = refuse_results(ns)
    ORCH.dispatch_steps(ns, steps_message([1, 2].map { |i| step_message(namespace: ns, step_id: "stp_r#{i}") }))
    first = [1, 2].map { |i| ORCH.result_for("stp_r#{i}")[0] }
    t0 = Time.now
    accept_results(full, ns)
    again = [1, 2].map { |i| ORCH.result_for("stp_r#{i}")[0] }
    assert_operator Time.now - t0, :>, 0.7
    assert_equal [1, 1, 2, 2], (first + again).map { |r| r['delivery_count'] } # both steps came back
    w.stop
    t.join(15)
    assert_equal 0, ORCH.depth(ns)
  ensure
    full&.delete
  end

  # A queue that refuses every result of the namespace, so the broker nacks their publishes,
  # until accept_results; the caller deletes it.
  def refuse_results(ns)
    full = ORCH.ch.queue("#{ORCH.prefix}.full_#{ns}", arguments: { 'x-max-length' => 0, 'x-overflow' => 'reject-publish' })
    full.bind("#{ORCH.prefix}.results", routing_key: ns)
    full
  end

  def accept_results(full, ns)
    full.unbind("#{ORCH.prefix}.results", routing_key: ns)
  end

  # The result messages of the namespace read so far: [decoded, props], as received.
  def result_messages(ns)
    ORCH.received['results'].select do |d, _p, _b|
      d.is_a?(Hash) && (d['message_type'] == 'step_results' ? d['results'] : [d]).any? { |r| r['namespace'] == ns }
    end.map { |d, p, _b| [d, p] }
  end

  def assert_valid_result(r, ns)
    assert_equal [1, 'step_result', ns, 'tsk_1'], r.values_at('protocol_version', 'message_type', 'namespace', 'task_id')
    assert_kind_of Integer, r['attempt']
    assert_includes %w[success failure waiting], r['status']
    %w[step_id step_name started_at finished_at worker_id].each { |k| assert_kind_of String, r[k] }
  end

  def test_results_ready_together_go_in_step_results_messages_and_every_step_is_acked
    ns, w, t = start_worker(concurrency: 10)
    ids = (0...40).map { |i| "stp_b#{i}" }
    ids.each_with_index { |id, i| ORCH.dispatch(step_message(namespace: ns, step_id: id, idempotency_key: "#{id}:1", input: { 'refund_amount' => i + 1 })) }
    ids.each_with_index do |id, i|
      r = ORCH.result_for(id)[0]
      assert_equal ['success', i + 1], [r['status'], r['result']['amount']]
    end
    # Each answered once: nothing more comes.
    assert_raises(Minitest::Assertion) { ORCH.wait('results', timeout: 0.5) { |d, _p, _b| d && d['namespace'] == ns } }
    messages = result_messages(ns)
    user = URI(AMQP_URL).user || 'guest'
    carried = []
    batches = 0
    messages.each do |d, props|
      if props[:type] == 'step_result'
        assert_equal "#{d['step_id']}:#{d['attempt']}", props[:message_id]
        assert_equal 'corr_1', props[:correlation_id]
        results = [d]
      else
        assert_equal 'step_results', props[:type]
        assert_equal %w[message_type protocol_version results], d.keys.sort
        assert_equal [1, 'step_results'], d.values_at('protocol_version', 'message_type')
        results = d['results']
        assert_includes 2..500, results.size
        assert_equal "#{results[0]['step_id']}:#{results[0]['attempt']}+#{results.size - 1}", props[:message_id]
        assert_nil props[:correlation_id]
        batches += 1
      end
      assert_equal ['application/json', 2, user], props.values_at(:content_type, :delivery_mode, :user_id)
      results.each { |r| assert_valid_result(r, ns) }
      carried.concat(results.map { |r| r['step_id'] })
    end
    assert_equal ids.sort, carried.sort # every result exactly once
    assert_operator messages.size, :<, ids.size
    assert_operator batches, :>=, 1
    w.stop
    t.join(15)
    assert_equal 0, ORCH.depth(ns) # all acked
  end

  def test_a_lone_result_goes_alone_as_a_plain_step_result
    ns, w, t = start_worker(concurrency: 10)
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_lone', idempotency_key: 'stp_lone:1', attempt: 2))
    r, props, body = ORCH.result_for('stp_lone')
    assert_equal %w[step_result stp_lone:2 corr_1], props.values_at(:type, :message_id, :correlation_id)
    assert_equal r, JSON.parse(body) # the result itself, no envelope
    assert_valid_result(r, ns)
    assert_equal ['step_result'], result_messages(ns).map { |_d, p| p[:type] }
    w.stop
    t.join(15)
    assert_equal 0, ORCH.depth(ns)
  end

  def test_a_step_results_message_not_confirmed_gives_back_every_step_it_carried
    ns, w, t = start_worker(concurrency: 20)
    full = refuse_results(ns)
    ids = (0...20).map { |i| "stp_x#{i}" }
    ids.each { |id| ORCH.dispatch(step_message(namespace: ns, step_id: id)) }
    first = ids.map { |id| ORCH.result_for(id)[0] }
    accept_results(full, ns)
    assert_equal [1], first.map { |r| r['delivery_count'] }.uniq
    batched = result_messages(ns).select { |_d, p| p[:type] == 'step_results' }.flat_map { |d, _p| d['results'].map { |r| r['step_id'] } }
    refute_empty batched # some results went, and were refused, together
    again = ids.map { |id| ORCH.wait('results', timeout: 15) { |d, _p, _b| d && d['step_id'] == id && d['delivery_count'] >= 2 }[0] }
    assert_equal ['success'], again.map { |r| r['status'] }.uniq # every step came back
    w.stop
    t.join(15)
    assert_equal 0, ORCH.depth(ns)
  ensure
    full&.delete
  end

  def test_at_shutdown_a_steps_message_with_a_step_still_running_goes_back_whole
    ns, w, t = start_worker(shutdown_grace: 0.3)
    ORCH.dispatch_steps(ns, steps_message([step_message(namespace: ns, step_id: 'stp_g1'),
                                           step_message(namespace: ns, step_id: 'stp_g2', input: { 'ms' => 3000 }, handler: handler('Slow'))]))
    assert_equal 'success', ORCH.result_for('stp_g1')[0]['status']
    w.stop
    t.join(15)
    refute t.alive?
    assert_equal 1, ORCH.depth(ns) # given back, answered sibling and all
  end

  def test_the_steps_of_a_steps_message_run_at_most_concurrency_at_once
    ns, = start_worker(concurrency: 2)
    Counting::LOCK.synchronize { Counting::COUNTS.merge!(running: 0, max: 0) }
    ORCH.dispatch_steps(ns, steps_message((0..4).map { |i| step_message(namespace: ns, step_id: "stp_n#{i}", handler: handler('Counting')) }))
    5.times { |i| assert_equal 'success', ORCH.result_for("stp_n#{i}")[0]['status'] }
    assert_equal 2, Counting::COUNTS[:max]
  end

  # With `steps` messages of 16 steps, a worker of concurrency 4 soon holds ceil(2 × 4 / 16) + 1
  # = 2 messages at a time (it subscribes again with that prefetch), not 4: while its handlers
  # block, the rest stay in the queue for another worker of the namespace.
  def test_with_steps_messages_the_prefetch_follows_the_steps_per_message_and_the_rest_stay_in_the_queue
    ns, w, t = start_worker(concurrency: 4, handlers: [Gated])
    assert_equal 4, w.prefetch
    ids = ->(batch) { (0...16).map { |i| "stp_#{batch}_#{i}" } }
    send_steps = lambda do |batch|
      steps = ids.call(batch).map { |id| step_message(namespace: ns, step_id: id, idempotency_key: "#{id}:1", handler: handler('Gated')) }
      ORCH.dispatch_steps(ns, steps_message(steps), message_id: "stp_#{batch}_0:1+15")
    end
    warm = %w[w0 w1 w2 w3]
    warm.each(&send_steps)
    warm.flat_map(&ids).each { |id| assert_equal 'success', ORCH.result_for(id)[0]['status'] }
    eventually('prefetch 2') { w.prefetch == 2 }
    consume_ch = w.instance_variable_get(:@consume_ch)
    eventually('the old consumer cancelled') { consume_ch.consumers.size == 1 }
    eventually('every warm-up message acked') { w.instance_variable_get(:@deliveries).empty? }

    # Now the handlers block: the worker takes two messages (32 steps) and leaves three.
    Gated.close!
    held = %w[h0 h1 h2 h3 h4]
    held.each(&send_steps)
    eventually('three messages left in the queue') { ORCH.depth(ns) == 3 }
    sleep 0.3
    assert_equal 3, ORCH.depth(ns) # with prefetch 4: 1
    assert_equal 2, w.prefetch

    Gated.open!
    held.flat_map(&ids).each { |id| assert_equal 'success', ORCH.result_for(id)[0]['status'] }
    # Each step answered exactly once, on its first delivery: nothing more comes.
    assert_raises(Minitest::Assertion) { ORCH.wait('results', timeout: 0.5) { |d, _p, _b| d && d['namespace'] == ns } }
    answered = result_messages(ns).flat_map { |d, _p| d['message_type'] == 'step_results' ? d['results'] : [d] }
    assert_equal (warm + held).flat_map(&ids).sort, answered.map { |r| r['step_id'] }.sort
    assert_equal [1], answered.map { |r| r['delivery_count'] }.uniq
    assert consume_ch.open? # no delivery tag acked twice (that closes the channel)
    assert_equal [w.instance_variable_get(:@consumer).consumer_tag], consume_ch.consumers.keys
    w.stop
    t.join(15)
    refute t.alive?
    assert_equal 0, ORCH.depth(ns) # every message acked: none given back at stop
  ensure
    Gated.open!
  end

  # Makes the channel's next basic.consume fail after the broker took it (as when its reply
  # comes too late): the new consumer exists, but the worker takes the change as failed.
  module ConsumeFailsOnce
    attr_accessor :fail_next_consume

    def basic_consume_with(consumer)
      ok = super
      if fail_next_consume
        self.fail_next_consume = false
        raise Bunny::ClientTimeout, 'no basic.consume-ok in time'
      end
      ok
    end
  end

  def test_a_failed_prefetch_change_is_put_right_then_asked_for_again
    ns, w, = start_worker(concurrency: 4, handlers: [Gated])
    consume_ch = w.instance_variable_get(:@consume_ch)
    consume_ch.singleton_class.prepend(ConsumeFailsOnce)
    consume_ch.fail_next_consume = true
    ids = ->(batch) { (0...16).map { |i| "stp_#{batch}_#{i}" } }
    send_steps = lambda do |batch|
      ORCH.dispatch_steps(ns, steps_message(ids.call(batch).map { |id| step_message(namespace: ns, step_id: id, handler: handler('Gated')) }))
    end
    %w[a0 a1 a2 a3].each(&send_steps)
    eventually('the change tried') { !consume_ch.fail_next_consume }
    assert_equal 4, w.prefetch # failed: as it was
    # Put right: basic.qos back to 4 for the consumer in force, the consumers of the attempt cancelled.
    eventually('the consumer put right') { consume_ch.prefetch_count == 4 && consume_ch.consumers.size == 1 }
    %w[b0 b1].each(&send_steps) # the next messages ask again
    eventually('prefetch 2') { w.prefetch == 2 && consume_ch.prefetch_count == 2 && consume_ch.consumers.size == 1 }
    all = %w[a0 a1 a2 a3 b0 b1].flat_map(&ids)
    all.each { |id| assert_equal 'success', ORCH.result_for(id)[0]['status'] }
    assert_raises(Minitest::Assertion) { ORCH.wait('results', timeout: 0.3) { |d, _p, _b| d && d['namespace'] == ns } }
    assert consume_ch.open?
  end

  def test_a_cancel_broadcast_reaches_a_running_step_of_a_steps_message
    ns, = start_worker
    ORCH.dispatch_steps(ns, steps_message([step_message(namespace: ns, step_id: 'stp_sok', task_id: 'tsk_other'),
                                           step_message(namespace: ns, step_id: 'stp_scxl', task_id: 'tsk_scxl', handler: handler('UntilCancelled'))]))
    Timeout.timeout(5) { UntilCancelled::STARTED.pop }
    assert_equal 'success', ORCH.result_for('stp_sok')[0]['status']
    ORCH.broadcast({ 'protocol_version' => 1, 'message_type' => 'cancel', 'task_ids' => ['tsk_scxl'], 'reason' => 'operator' })
    assert_equal({ 'cancelled' => true }, ORCH.result_for('stp_scxl', timeout: 5)[0]['result'])
  end

  def test_a_handler_creates_a_task_with_a_task_request_and_direct_reply_to
    ns, = start_worker
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_del', handler: handler('Delegate')))
    assert_equal({ 'payment_task_id' => 'tsk_child' }, ORCH.result_for('stp_del')[0]['result'])
    req = ORCH.requests.find { |x| x['parent']['step_id'] == 'stp_del' }
    assert_equal ['stp_del:payments.process_refund:1', 'corr_1'], req.values_at('idempotency_key', 'correlation_id')
  end

  def test_a_handler_waits_for_the_task_it_created
    ns, = start_worker
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_wait', handler: handler('DelegateAndWait')))
    r, = ORCH.result_for('stp_wait')
    assert_equal ['waiting', { 'task_id' => 'tsk_child' }], r.values_at('status', 'wait_for')
  end

  def test_a_cancel_broadcast_reaches_the_running_handler_of_that_task
    ns, = start_worker
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_cxl', task_id: 'tsk_cxl', handler: handler('UntilCancelled')))
    Timeout.timeout(5) { UntilCancelled::STARTED.pop }
    ORCH.broadcast({ 'protocol_version' => 1, 'message_type' => 'cancel', 'task_ids' => ['tsk_cxl'], 'reason' => 'operator' })
    assert_equal({ 'cancelled' => true }, ORCH.result_for('stp_cxl', timeout: 5)[0]['result'])
  end

  def test_stop_lets_the_running_step_finish_and_answer_before_returning
    ns, w, t = start_worker
    ORCH.dispatch(step_message(namespace: ns, step_id: 'stp_stop', input: { 'ms' => 500 }, handler: handler('Slow')))
    deadline = Time.now + 5
    sleep 0.02 while ORCH.depth(ns).positive? && Time.now < deadline
    sleep 0.1
    w.stop
    t.join(15)
    refute t.alive?
    assert_equal 'success', ORCH.result_for('stp_stop', timeout: 1)[0]['status']
    assert_equal 0, ORCH.depth(ns)
  end
end

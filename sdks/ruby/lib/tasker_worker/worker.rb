# frozen_string_literal: true

require 'bunny'
require 'json'
require 'logger'
require 'securerandom'
require 'socket'

module TaskerWorker
  # The worker of one namespace: consumes the namespace's step queue, runs each step's
  # handler (on the channel's consumer pool, `concurrency` at once), publishes the result
  # with publisher confirms and only then acks the step.
  #
  #   TaskerWorker::Worker.new(namespace: 'customer_success', handlers: [ValidateRefundRequestHandler]).run
  #
  # `handlers` is an Array of StepHandler classes (each found by its class name) or a Hash
  # of callable => class, instance or proc. Settings not given come from the environment:
  # TASKER_NAMESPACE, TASKER_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672),
  # TASKER_AMQP_PREFIX (default tasker), TASKER_LOG_LEVEL (default info).
  # `shutdown_grace` (seconds, default 10): at SIGTERM/SIGINT or #stop, how long running
  # steps may finish before they go back to the queue. `overrun_grace` (seconds, default 5):
  # how long a handler that outlives its step's timeout keeps its slot.
  class Worker
    DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to'
    MAX_REASON_CHARS = 4096
    PUBLISH_FAILURE_BACKOFF = 1.0

    Job = Struct.new(:tag, :message, :ctx, :started_at, :delivery_count, :answered, :handed_back, keyword_init: true)

    attr_reader :namespace, :worker_id, :handlers, :queue_name, :logger

    def initialize(namespace: nil, handlers:, concurrency: 10, amqp_url: nil, prefix: nil, shutdown_grace: 10, overrun_grace: 5,
                   worker_id: nil, logger: nil)
      @namespace = namespace || ENV.fetch('TASKER_NAMESPACE', '')
      problems = []
      problems << "namespace #{@namespace.inspect} must be lower snake case (a-z, 0-9, _), starting with a letter (or set TASKER_NAMESPACE)" unless NAMESPACE_PATTERN.match?(@namespace)
      problems << "concurrency #{concurrency.inspect} must be an integer from 1 to 65535" unless concurrency.is_a?(Integer) && concurrency.between?(1, 65_535)
      @handlers = normalize_handlers(handlers, problems)
      problems << 'needs at least one handler' if @handlers.empty?
      begin
        @names = Names.new(prefix || env_or_nil('TASKER_AMQP_PREFIX') || DEFAULT_PREFIX)
      rescue ArgumentError => e
        problems << e.message
      end
      @amqp_url = amqp_url || env_or_nil('TASKER_AMQP_URL') || DEFAULT_AMQP_URL
      begin
        # Parsed once: the connection logs in with these, and its user signs every result.
        @credentials = AmqpUrl.credentials(@amqp_url)
      rescue ArgumentError => e
        problems << e.message
      end
      raise ArgumentError, "invalid worker options: #{problems.join('; ')}" unless problems.empty?

      @concurrency = concurrency
      @shutdown_grace = shutdown_grace
      @overrun_grace = overrun_grace
      @worker_id = worker_id || "#{Socket.gethostname}:#{Process.pid}:#{SecureRandom.alphanumeric(6).downcase}"
      @queue_name = @names.step_queue(@namespace)
      @logger = logger || Logger.new($stderr, level: (ENV['TASKER_LOG_LEVEL'] || 'info').to_sym, progname: "tasker_worker #{@namespace}")
      @stop = false
      @stopping = false
      @jobs = {}
      @mutex = Mutex.new
      @publish_mutex = Mutex.new
      @request_mutex = Mutex.new
      @replies = {}
      @replies_mutex = Mutex.new
    end

    # Asks #run to stop: no new steps; running ones get the grace period. Safe from any thread.
    def stop
      @stop = true
    end

    # Connects, waits for the namespace's queue, consumes it until #stop or SIGTERM/SIGINT,
    # then shuts down gracefully and returns.
    def run(install_signal_handlers: true)
      trap_signals if install_signal_handlers
      @logger.info("worker starting: queue=#{@queue_name} concurrency=#{@concurrency} handlers=#{@handlers.keys.sort.join(',')}")
      # The credentials override Bunny's own reading of the URL, which turns a `+` into a space.
      @conn = Bunny.new(@amqp_url, **@credentials, connection_name: "tasker-worker #{@namespace} #{@worker_id}", automatically_recover: true,
                                                   logger: Logger.new($stderr, level: :warn))
      @conn.start
      return close unless wait_for_queue

      @consume_ch = @conn.create_channel(nil, @concurrency)
      @consume_ch.prefetch(@concurrency)
      @publish_ch = @conn.create_channel
      @publish_ch.confirm_select
      @request_ch = @conn.create_channel
      @request_ch.basic_consume(DIRECT_REPLY_TO, @request_ch.generate_consumer_tag('tasker-replies'), true) { |_d, props, body| on_reply(props, body) }
      listen_for_cancellations
      queue = @consume_ch.queue(@queue_name, passive: true)
      @consumer = queue.subscribe(manual_ack: true, block: false) { |delivery, props, body| on_delivery(delivery, props, body) }
      @logger.info("worker consuming #{@queue_name}")
      sleep 0.1 until @stop
      shutdown
    ensure
      close
    end

    private

    def env_or_nil(name)
      v = ENV[name]
      v.nil? || v.empty? ? nil : v
    end

    def normalize_handlers(handlers, problems)
      pairs = case handlers
              when Hash then handlers.map { |k, v| [k.to_s, v] }
              when Array then handlers.map { |k| [k.respond_to?(:callable) ? k.callable : k.name, k] }
              else
                problems << 'handlers must be an Array of handler classes or a Hash of callable => handler'
                []
              end
      pairs.each do |name, h|
        ok = (h.is_a?(Class) && h.method_defined?(:call)) || h.respond_to?(:call)
        problems << "handler #{name.inspect} has no call(context)" unless ok
      end
      pairs.to_h
    end

    def trap_signals
      %w[TERM INT].each do |sig|
        Signal.trap(sig) do
          exit!(1) if @stop # a second signal: no more waiting
          @stop = true
        end
      end
    end

    def wait_for_queue
      waited = 0
      until @stop
        begin
          ch = @conn.create_channel
          ch.queue(@queue_name, passive: true)
          ch.close
          return true
        rescue Bunny::NotFound
          @logger.info("waiting for #{@queue_name}: the orchestrator declares it when a template of this namespace is registered") if (waited % 5).zero?
        end
        sleep 1
        waited += 1
      end
      false
    end

    # Cancellations reach every worker on the control fanout exchange, through a queue of this
    # worker's own: running handlers of a cancelled task see `context.cancelled?`.
    def listen_for_cancellations
      ch = @conn.create_channel
      q = ch.queue('', exclusive: true, auto_delete: true)
      q.bind(@names.control_exchange)
      q.subscribe(manual_ack: false) do |_d, _p, body|
        message = JSON.parse(body)
        ids = message['message_type'] == 'cancel' ? Array(message['task_ids']) : []
        @mutex.synchronize { @jobs.values.select { |j| ids.include?(j.message['task_id']) } }.each do |j|
          @logger.info("task #{j.message['task_id']} cancelled (#{message['reason']}): its running step is told so")
          j.ctx&.cancel!
        end
      rescue JSON::ParserError
        @logger.warn('control message ignored: not JSON')
      end
    rescue Bunny::NotFound => e
      @logger.warn("no control exchange #{@names.control_exchange} (#{e.message}): cancellations will not reach running handlers")
    end

    def shutdown
      @stopping = true
      @logger.info("worker stopping: #{@jobs.size} step(s) running")
      @consumer&.cancel
      deadline = monotonic + @shutdown_grace
      sleep 0.02 while !@jobs.empty? && monotonic < deadline
      # Jobs publishing their result right now finish that; the others go back to the queue.
      back = @mutex.synchronize do
        @jobs.values.reject(&:answered).each { |j| j.handed_back = true }
      end
      unless back.empty?
        @logger.warn("shutdown grace period over: #{back.size} running step(s) cancelled and given back to the queue")
        back.each do |j|
          j.ctx&.cancel!
          @consume_ch.nack(j.tag, false, true)
        end
      end
      sleep 0.02 while @mutex.synchronize { @jobs.values.any?(&:answered) } && monotonic < deadline + 5
    end

    def close
      @conn&.close if @conn&.open?
    rescue StandardError
      nil
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    # ── deliveries (on the consumer pool's threads) ──────────────────────────────────

    def on_delivery(delivery, props, body)
      tag = delivery.delivery_tag
      return @consume_ch.nack(tag, false, true) if @stopping

      begin
        message = Messages.decode_step_message(body)
        if message['namespace'] != @namespace
          raise Refused.new('INVALID_MESSAGE',
                            "step message is for namespace '#{message['namespace']}' but came from #{@queue_name}, the queue of '#{@namespace}'")
        end
      rescue Refused => e
        return park(tag, props, body, e)
      end
      previous = (props.headers || {})['x-delivery-count'] || (delivery.redelivered? ? 1 : 0)
      job = Job.new(tag: tag, message: message, started_at: Messages.now_iso, delivery_count: previous.to_i + 1, answered: false, handed_back: false)
      @mutex.synchronize { @jobs[tag] = job }
      callable = message['handler']['callable']
      handler = @handlers[callable]
      unless handler
        available = @handlers.keys.sort.join(', ')
        text = "no handler for callable '#{callable}' (step #{message['step_name']}) in namespace '#{message['namespace']}'; " \
               "this worker has: #{available.empty? ? '(none)' : available}"
        @logger.error(text)
        return answer(job, { 'status' => 'failure', 'error' => { 'kind' => 'permanent', 'code' => 'HANDLER_NOT_FOUND', 'message' => text } })
      end
      run_job(job, handler)
    rescue StandardError => e
      @logger.error("unexpected failure handling a step delivery: #{e.class}: #{e.message}")
    end

    def run_job(job, handler)
      m = job.message
      ctx = StepContext.new(m, request_task: method(:request_task), logger: @logger, delivery_count: job.delivery_count)
      job.ctx = ctx
      thread = Thread.new { invoke(handler, ctx) }
      thread.report_on_exception = false
      timeout = m['timeout_ms'] && m['timeout_ms'] / 1000.0
      if thread.join(timeout)
        answer(job, thread.value)
        return
      end
      ctx.cancel!
      text = "handler for step #{m['step_name']} did not finish within its timeout of #{m['timeout_ms']} ms"
      @logger.warn("step timed out: result sent now; the handler keeps running until it returns (#{text})")
      answer(job, { 'status' => 'failure', 'error' => { 'kind' => 'retryable', 'code' => 'HANDLER_TIMEOUT', 'message' => text } })
      # The slot (this pool thread) comes free when the handler returns, or after the overrun grace period.
      return if thread.join(@overrun_grace)

      @logger.warn("handler of step #{m['step_name']} still running after its deadline and the grace period: its slot is freed")
    end

    def invoke(handler, ctx)
      value = if handler.is_a?(Class) then handler.new.call(ctx)
              else handler.call(ctx)
              end
      value = value.result if value.is_a?(Success)
      return { 'status' => 'waiting', 'wait_for' => { 'task_id' => value.task_id } } if value.is_a?(WaitFor)

      outcome, failure = Messages.encode_result(value)
      outcome || { 'status' => 'failure', 'error' => failure }
    rescue Exception => e # rubocop:disable Lint/RescueException -- whatever a handler raises is its step's outcome
      error, notes = ErrorMapping.to_step_error(e)
      @logger.warn("handler error adjusted to fit a step result: #{notes.join('; ')}") unless notes.empty?
      @logger.warn("step #{ctx.step_name} failed (#{error['kind']} #{error['code']}): #{error['message']}")
      { 'status' => 'failure', 'error' => error }
    end

    # Publishes the result, waits for the broker's confirm, then acks the step.
    def answer(job, outcome)
      proceed = @mutex.synchronize do
        next false if job.answered || job.handed_back

        job.answered = true
      end
      return unless proceed

      m = job.message
      result = Messages.step_result(m, started_at: job.started_at, worker_id: @worker_id, delivery_count: job.delivery_count, outcome: outcome)
      confirmed = publish(@names.results_exchange, m['namespace'], JSON.generate(result),
                          content_type: 'application/json', persistent: true, message_id: "#{m['step_id']}:#{m['attempt']}",
                          correlation_id: m['correlation_id'], type: 'step_result',
                          # RabbitMQ checks user_id is this connection's user: the orchestrator can
                          # then check a namespace's results come from that namespace's user.
                          user_id: @credentials[:user])
      if confirmed
        # Acked only now: a result that was never confirmed must not lose its step.
        @consume_ch.ack(job.tag)
        @logger.info("step #{m['step_name']} succeeded (task #{m['task_id']}, attempt #{m['attempt']})") if outcome['status'] == 'success'
      else
        @logger.error('step result not confirmed by the broker; the step message goes back to the queue')
        sleep PUBLISH_FAILURE_BACKOFF
        @consume_ch.nack(job.tag, false, true)
      end
    ensure
      @mutex.synchronize { @jobs.delete(job.tag) } if proceed
    end

    def publish(exchange, routing_key, payload, **props)
      @publish_mutex.synchronize do
        @publish_ch.basic_publish(payload, exchange, routing_key, props)
        @publish_ch.wait_for_confirms
      end
    rescue StandardError => e
      @logger.error("publish to #{exchange} failed: #{e.class}: #{e.message}")
      false
    end

    def park(tag, props, body, reason)
      text = reason.message.length > MAX_REASON_CHARS ? "#{reason.message[0, MAX_REASON_CHARS]}…" : reason.message
      @logger.error("invalid step message parked in the dead letters: #{reason.code} #{text}")
      headers = (props.headers || {}).merge('x-tasker-reason' => text, 'x-tasker-code' => reason.code, 'x-tasker-source-queue' => @queue_name)
      opts = { persistent: true, headers: headers, content_type: props.content_type || 'application/octet-stream' }
      opts[:message_id] = props.message_id if props.message_id
      opts[:correlation_id] = props.correlation_id if props.correlation_id
      opts[:type] = props.type if props.type
      if publish(@names.dead_letter_exchange, Messages.parked_routing_key(@namespace), body, **opts)
        @consume_ch.ack(tag)
      else
        sleep PUBLISH_FAILURE_BACKOFF
        @consume_ch.nack(tag, false, true)
      end
    end

    # ── task requests (context.create_task, on a handler's thread) ───────────────────

    def request_task(request, timeout)
      corr = SecureRandom.hex(16)
      waiter = { mutex: Mutex.new, cv: ConditionVariable.new, reply: nil }
      @replies_mutex.synchronize { @replies[corr] = waiter }
      begin
        @request_mutex.synchronize do
          @request_ch.basic_publish(JSON.generate(request), @names.task_requests_exchange, request['namespace'],
                                    reply_to: DIRECT_REPLY_TO, correlation_id: corr, content_type: 'application/json',
                                    persistent: true, type: 'task_request')
        end
      rescue StandardError => e
        @replies_mutex.synchronize { @replies.delete(corr) }
        return { 'ok' => false, 'error' => { 'code' => 'INTERNAL', 'message' => "cannot send the task request: #{e.message}" } }
      end
      deadline = monotonic + timeout
      waiter[:mutex].synchronize do
        while waiter[:reply].nil?
          left = deadline - monotonic
          break if left <= 0

          waiter[:cv].wait(waiter[:mutex], left)
        end
      end
      @replies_mutex.synchronize { @replies.delete(corr) }
      waiter[:reply] || { 'ok' => false, 'error' => { 'code' => 'INTERNAL',
                                                      'message' => "no reply to the task request within #{timeout} s; retrying with the same idempotency key is safe" } }
    end

    def on_reply(props, body)
      waiter = @replies_mutex.synchronize { @replies[props.correlation_id] }
      return unless waiter

      reply = begin
        JSON.parse(body.dup.force_encoding(Encoding::UTF_8))
      rescue JSON::ParserError
        { 'ok' => false, 'error' => { 'code' => 'INVALID_MESSAGE', 'message' => 'task reply is not JSON' } }
      end
      waiter[:mutex].synchronize do
        waiter[:reply] = reply
        waiter[:cv].signal
      end
    end
  end
end

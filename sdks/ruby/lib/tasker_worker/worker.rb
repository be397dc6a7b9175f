# frozen_string_literal: true

require 'bunny'
require 'json'
require 'logger'
require 'securerandom'
require 'socket'

module TaskerWorker
  # The worker of one namespace: consumes the namespace's step queue, runs each step's
  # handler (`concurrency` at once), publishes the result with publisher confirms and only
  # then acks the step (a `steps` message, several steps in one, once every one of its steps
  # is answered).
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
  #
  # The consumer's prefetch (step messages held unacked) starts at `concurrency` and follows
  # the steps per message (PrefetchTuner): with `steps` messages of N steps it comes down to
  # ceil(2 × concurrency / N) + 1, so one worker does not hold concurrency × N steps while
  # another worker of the namespace sits idle.
  class Worker
    DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to'
    MAX_REASON_CHARS = 4096
    PUBLISH_FAILURE_BACKOFF = 1.0
    # Results in one `step_results` message at most (docs/protocol.md, section 4).
    MAX_RESULTS_PER_MESSAGE = 500
    # A `step_results` message stays under half the message limit (each result is at most 1 MiB).
    MAX_BATCH_BYTES = MAX_MESSAGE_BYTES / 2
    # After a prefetch change that failed, how long before the consumer is put right (seconds).
    RESYNC_INTERVAL = 1.0

    # One delivery, from decoding to its ack: one step, or several (a `steps` message).
    # `unanswered`: its steps whose result (or parking) is not under way yet; `settled`: its
    # ack or nack is decided; `handed_back`: given back at shutdown, nothing more is acked.
    Delivery = Struct.new(:tag, :props, :delivery_count, :jobs, :unanswered, :settled, :handed_back, keyword_init: true)
    # One step being run.
    Job = Struct.new(:delivery, :message, :ctx, :started_at, :answered, keyword_init: true)
    # One result waiting to be published, and whether the message carrying it was confirmed.
    PendingResult = Struct.new(:message, :body, :done, :confirmed, keyword_init: true)

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
      @deliveries = {}
      @mutex = Mutex.new
      # Handlers running at once: at most `concurrency` (the steps of a `steps` message too).
      @slots = concurrency
      @slots_cv = ConditionVariable.new
      @publish_mutex = Mutex.new
      # Results waiting to be published; `@results_in_flight`: a results message awaits its confirm.
      @results = []
      @results_in_flight = false
      @results_mutex = Mutex.new
      @results_cv = ConditionVariable.new
      @request_mutex = Mutex.new
      @replies = {}
      @replies_mutex = Mutex.new
      # The consumer's prefetch (see #prefetch): fed by the delivery threads, applied by #run's
      # loop. `@prefetch_wanted`: a change the tuner asked for, not yet applied.
      @tuner = PrefetchTuner.new(concurrency)
      @tune_mutex = Mutex.new
      @tune_cv = ConditionVariable.new
      @prefetch_wanted = nil
      # `@consumer`: the current subscription to the step queue; `@retired`: subscriptions it
      # replaced, not cancelled yet (a cancel failed); both used by #run's thread only.
      @consumer = nil
      @retired = []
      @resync_at = 0.0
      # The consume channel's synchronous methods run by this worker (#with_consume_ops) and
      # bunny's recovery of the connection never overlap: `@recovering` while bunny recovers,
      # `@ops_thread` while the worker runs some.
      @ops_mutex = Mutex.new
      @ops_cv = ConditionVariable.new
      @ops_thread = nil
      @recovering = false
    end

    # Step messages the broker may send before this worker acks one: its concurrency, or
    # fewer when messages carry several steps each (see PrefetchTuner).
    def prefetch
      @tune_mutex.synchronize { @tuner.current }
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
      @conn.before_recovery_attempt_starts { recovery_starting }
      @conn.after_recovery_completed { recovery_completed }
      @conn.start
      return close unless wait_for_queue

      @consume_ch = @conn.create_channel(nil, @concurrency)
      @consume_ch.prefetch(@concurrency)
      @publish_ch = @conn.create_channel
      @publish_ch.confirm_select
      @request_ch = @conn.create_channel
      @request_ch.basic_consume(DIRECT_REPLY_TO, @request_ch.generate_consumer_tag('tasker-replies'), true) { |_d, props, body| on_reply(props, body) }
      listen_for_cancellations
      @consume_queue = @consume_ch.queue(@queue_name, passive: true)
      consumer = new_consumer
      @consume_ch.basic_consume_with(consumer)
      @consumer = consumer
      @logger.info("worker consuming #{@queue_name}")
      follow_prefetch until @stop
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
        @mutex.synchronize { @deliveries.values.flat_map(&:jobs).select { |j| ids.include?(j.message['task_id']) } }.each do |j|
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
      @mutex.synchronize { @slots_cv.broadcast } # steps waiting for a slot are given back
      @logger.info("worker stopping: #{@deliveries.size} step message(s) in hand")
      cancel_consumers
      deadline = monotonic + @shutdown_grace
      sleep 0.02 while !@deliveries.empty? && monotonic < deadline
      # Messages whose every step is being answered right now finish that; the others (a step
      # still running) go back to the queue whole.
      back = @mutex.synchronize do
        @deliveries.values.select { |d| !d.settled && d.unanswered.positive? }.each { |d| d.handed_back = true }
      end
      unless back.empty?
        @logger.warn("shutdown grace period over: #{back.size} step message(s) with steps still running given back to the queue")
        back.each do |d|
          d.jobs.each { |j| j.ctx&.cancel! }
          @consume_ch.nack(d.tag, false, true)
        end
      end
      sleep 0.02 while @mutex.synchronize { @deliveries.values.any? { |d| !d.handed_back } } && monotonic < deadline + 5
    end

    def close
      @conn&.close if @conn&.open?
    rescue StandardError
      nil
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    # ── the consumer's prefetch ─────────────────────────────────────────────────────
    #
    # RabbitMQ applies a basic.qos prefetch (per consumer) only to consumers created after it:
    # to change it, the worker subscribes again on the same channel (basic.qos, then a new
    # consumer with the same block), then cancels the old consumer. Deliveries it received stay
    # unacked on the channel and are acked or given back by delivery tag as usual; they do not
    # count against the new prefetch. Nothing is redelivered, so nothing is answered twice.
    #
    # The tuner is fed on the delivery threads (#tune_prefetch); the change runs on #run's
    # thread (#follow_prefetch), never on bunny's consumer work pool nor its reader loop: the
    # channel methods wait for replies that the reader loop hands over, and cancelling the
    # last consumer of a channel waits for the pool.
    #
    # Bunny's recovery of the connection opens the channel again with its last prefetch (that
    # of the last basic.qos answered) and consumes again with every consumer the channel
    # knows. After a change, or after a failed change once put right (#resync), that is the
    # tuner's value and the current consumer alone.

    def new_consumer
      consumer = Bunny::Consumer.new(@consume_ch, @consume_queue, @consume_ch.generate_consumer_tag, false)
      consumer.on_delivery { |delivery, props, body| on_delivery(delivery, props, body) }
    end

    # Counts a delivery's steps, right after decoding it; a change the tuner asks for is
    # handed to #run's loop.
    def tune_prefetch(steps)
      @tune_mutex.synchronize do
        want = @tuner.observe(steps)
        if want
          @prefetch_wanted = want
          @tune_cv.signal
        end
      end
    end

    # One turn of #run's loop (0.1 s at most): applies the change the tuner asked for, or puts
    # the consumer right after a change that failed.
    def follow_prefetch
      want = @tune_mutex.synchronize do
        @tune_cv.wait(@tune_mutex, 0.1) if @prefetch_wanted.nil?
        wanted = @prefetch_wanted
        @prefetch_wanted = nil
        wanted
      end
      if want
        change_prefetch(want)
      elsif resync_due? && monotonic >= @resync_at && consume_channel_usable?
        resync
      end
    end

    def change_prefetch(want)
      from = prefetch
      subscribed = false
      failure = nil
      begin
        ran = false
        if consume_channel_usable?
          ran = with_consume_ops do
            subscribe_again(want)
            subscribed = true
            cancel_retired
          end
        end
        failure = 'the connection or its channel is down' unless ran
      rescue StandardError => e
        failure = "#{e.class}: #{e.message}"
      end
      # Subscribed: the new prefetch is in force, even if the old consumer is not cancelled yet.
      @tune_mutex.synchronize { @tuner.settled(subscribed ? want : nil) }
      @logger.debug("prefetch #{from} -> #{want}: follows the steps per message (#{@queue_name})") if subscribed
      return unless failure

      @resync_at = monotonic + RESYNC_INTERVAL
      if subscribed
        @logger.warn("prefetch now #{want}, but the previous consumer of #{@queue_name} is not cancelled yet (#{failure}); tried again shortly")
      else
        @logger.warn("prefetch not changed from #{from} to #{want} (#{failure}); a later message asks again")
      end
    end

    # basic.qos, then a new consumer; the one it replaces is retired (cancelled by #cancel_retired).
    def subscribe_again(prefetch)
      @consume_ch.prefetch(prefetch)
      fresh = new_consumer
      begin
        @consume_ch.basic_consume_with(fresh)
      rescue StandardError
        # Perhaps known to bunny, or to the broker, all the same: cancelled with the others.
        @retired << fresh
        raise
      end
      @retired << @consumer
      @consumer = fresh
    end

    def cancel_retired
      until @retired.empty?
        @consume_ch.basic_cancel(@retired.first.consumer_tag) # an unknown tag is not an error
        @retired.shift
      end
    end

    # After a failed change, the channel may hold a consumer too many, or bunny may remember a
    # basic.qos that the current consumer does not have (and give it to every consumer it
    # re-creates at a recovery).
    def resync_due?
      !@retired.empty? || @consume_ch.prefetch_count != prefetch
    end

    def resync
      target = prefetch
      ran = with_consume_ops do
        subscribe_again(target) if @consume_ch.prefetch_count != target
        cancel_retired
      end
      if ran
        @logger.info("consumer of #{@queue_name} put right after a failed prefetch change: prefetch #{target}")
      else
        @resync_at = monotonic + RESYNC_INTERVAL
      end
    rescue StandardError => e
      @resync_at = monotonic + RESYNC_INTERVAL
      @logger.warn("consumer of #{@queue_name} not put right yet (#{e.class}: #{e.message}); tried again shortly")
    end

    def consume_channel_usable?
      @conn.open? && @consume_ch.open?
    end

    # Runs the block (the consume channel's synchronous methods) unless bunny is recovering the
    # connection: then returns false. A recovery starting meanwhile waits for the block to end
    # (its methods fail once the connection is down: at once, or after bunny's continuation
    # timeout), so replies meant for the recovery and for the worker are never mixed.
    def with_consume_ops
      @ops_mutex.synchronize do
        return false if @recovering

        @ops_thread = Thread.current
      end
      begin
        yield
        true
      ensure
        @ops_mutex.synchronize do
          @ops_thread = nil
          @ops_cv.broadcast
        end
      end
    end

    # Bunny calls these around each recovery attempt, on the thread that found the connection
    # lost (possibly #run's own thread, inside #with_consume_ops: it does not wait for itself).
    def recovery_starting
      @ops_mutex.synchronize do
        @recovering = true
        @ops_cv.wait(@ops_mutex, 1) while @ops_thread && @ops_thread != Thread.current
      end
    end

    def recovery_completed
      @ops_mutex.synchronize { @recovering = false }
    end

    # At shutdown: the current consumer and any retired one not cancelled yet.
    def cancel_consumers
      return if @consumer.nil?

      ran = false
      if consume_channel_usable?
        ran = with_consume_ops do
          cancel_retired
          @consume_ch.basic_cancel(@consumer.consumer_tag)
        end
      end
      @logger.warn("consumer of #{@queue_name} not cancelled: the connection or its channel is down") unless ran
    rescue StandardError => e
      @logger.warn("consumer of #{@queue_name} not cancelled (#{e.class}: #{e.message}); steps it still sends are given back")
    end

    # ── deliveries (each handled on a thread of its own) ─────────────────────────────

    def on_delivery(delivery_info, props, body)
      tag = delivery_info.delivery_tag
      return @consume_ch.nack(tag, false, true) if @stopping

      # Quorum queues count earlier deliveries in x-delivery-count; classic ones only flag a redelivery.
      previous = (props.headers || {})['x-delivery-count'] || (delivery_info.redelivered? ? 1 : 0)
      delivery = Delivery.new(tag: tag, props: props, delivery_count: previous.to_i + 1, jobs: [], unanswered: 1, settled: false, handed_back: false)
      @mutex.synchronize { @deliveries[tag] = delivery }
      # Handled on a thread of its own, not on the consumer pool: cancelling the consumer at
      # shutdown waits for the pool's threads, and must not wait for running steps.
      Thread.new { handle(delivery, body) }
    rescue StandardError => e
      @logger.error("unexpected failure receiving a step delivery: #{e.class}: #{e.message}")
    end

    def handle(delivery, body)
      # One step, or several in a `steps` message: each is run (or parked) on its own.
      parts = begin
        Messages.decode_step_messages(body)
      rescue Refused => e
        e
      end
      tune_prefetch(parts.is_a?(Refused) ? 1 : parts.size)
      ends = if parts.is_a?(Refused)
               [park(delivery, body, parts)] # the whole message, body unchanged
             else
               @mutex.synchronize { delivery.unanswered = parts.size }
               if parts.size == 1
                 [run_part(delivery, parts[0], body)]
               else
                 parts.map { |part| Thread.new { run_part(delivery, part, body) } }.map(&:value)
               end
             end
      settle(delivery, ends)
    rescue StandardError => e
      @logger.error("unexpected failure handling a step delivery: #{e.class}: #{e.message}")
    ensure
      @mutex.synchronize { @deliveries.delete(delivery.tag) }
    end

    # Runs one step of a delivery (or parks it) and publishes its result. Returns how it ended:
    # :answered (result confirmed, or parked), :failed (not confirmed) or :given_back (the
    # worker stopped before it started, or the delivery was given back meanwhile).
    def run_part(delivery, part, body)
      refused = part.refused
      message = part.message
      if refused.nil? && message['namespace'] != @namespace
        refused = Refused.new('INVALID_MESSAGE',
                              "#{part.what} is for namespace '#{message['namespace']}' but came from #{@queue_name}, the queue of '#{@namespace}'")
      end
      # A step of a `steps` message is parked alone, as its own JSON; a lone one, body untouched.
      return park(delivery, part.in_steps ? part.body : body, refused, alone: part.in_steps) if refused

      job = Job.new(delivery: delivery, message: message, started_at: Messages.now_iso, answered: false)
      @mutex.synchronize { delivery.jobs << job }
      callable = message['handler']['callable']
      handler = @handlers[callable]
      unless handler
        available = @handlers.keys.sort.join(', ')
        text = "no handler for callable '#{callable}' (step #{message['step_name']}) in namespace '#{message['namespace']}'; " \
               "this worker has: #{available.empty? ? '(none)' : available}"
        @logger.error(text)
        return answer(job, { 'status' => 'failure', 'error' => { 'kind' => 'permanent', 'code' => 'HANDLER_NOT_FOUND', 'message' => text } })
      end
      return :given_back unless acquire_slot

      job.started_at = Messages.now_iso
      run_job(job, handler)
    rescue StandardError => e
      @logger.error("unexpected failure running a step: #{e.class}: #{e.message}")
      :failed
    end

    # Waits for a free slot; false when the worker stops first.
    def acquire_slot
      @mutex.synchronize do
        @slots_cv.wait(@mutex, 0.5) until @slots.positive? || @stopping
        next false if @stopping

        @slots -= 1
        true
      end
    end

    def release_slot
      @mutex.synchronize do
        @slots += 1
        @slots_cv.signal
      end
    end

    # Runs the handler (holding a slot, freed when it returns) and answers. A handler past
    # its step's timeout is answered HANDLER_TIMEOUT at the deadline; its slot comes free
    # when it returns, or after the overrun grace period.
    def run_job(job, handler)
      m = job.message
      ctx = StepContext.new(m, request_task: method(:request_task), logger: @logger, delivery_count: job.delivery.delivery_count)
      job.ctx = ctx
      thread = Thread.new { invoke(handler, ctx) }
      thread.report_on_exception = false
      timeout = m['timeout_ms'] && m['timeout_ms'] / 1000.0
      if thread.join(timeout)
        release_slot
        return answer(job, thread.value)
      end
      ctx.cancel!
      Thread.new do
        unless thread.join(@overrun_grace)
          @logger.warn("handler of step #{m['step_name']} still running after its deadline and the grace period: its slot is freed")
        end
        release_slot
      end
      text = "handler for step #{m['step_name']} did not finish within its timeout of #{m['timeout_ms']} ms"
      @logger.warn("step timed out: result sent now; the handler keeps running until it returns (#{text})")
      answer(job, { 'status' => 'failure', 'error' => { 'kind' => 'retryable', 'code' => 'HANDLER_TIMEOUT', 'message' => text } })
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

    # Publishes the result and waits for the broker's confirm: :answered, or :failed.
    def answer(job, outcome)
      return :given_back unless start_answer(job.delivery, job)

      m = job.message
      result = Messages.step_result(m, started_at: job.started_at, worker_id: @worker_id, delivery_count: job.delivery.delivery_count, outcome: outcome)
      unless publish_result(m, JSON.generate(result))
        @logger.error('step result not confirmed by the broker; the step message goes back to the queue')
        return :failed
      end
      @logger.info("step #{m['step_name']} succeeded (task #{m['task_id']}, attempt #{m['attempt']})") if outcome['status'] == 'success'
      :answered
    end

    # A step's result (or parking) gets under way, unless its delivery was given back.
    def start_answer(delivery, job = nil)
      @mutex.synchronize do
        next false if delivery.handed_back || job&.answered

        job.answered = true if job
        delivery.unanswered -= 1
        true
      end
    end

    # Once every step of a delivery has ended: acks it, or gives it back whole (after a pause
    # if a result or a parking was not confirmed: its answered siblings are answered again,
    # which changes nothing).
    def settle(delivery, ends)
      decided = @mutex.synchronize do
        next false if delivery.handed_back

        delivery.settled = true
      end
      return unless decided

      if ends.include?(:failed)
        # A lasting fault should not spin: pause before the message goes back.
        sleep PUBLISH_FAILURE_BACKOFF
        @consume_ch.nack(delivery.tag, false, true)
      elsif ends.include?(:given_back)
        @consume_ch.nack(delivery.tag, false, true)
      else
        # Acked only now: a result that was never confirmed must not lose its step.
        @consume_ch.ack(delivery.tag)
      end
    end

    # Publishes a result and waits for the confirm of the message carrying it: true, or false.
    # A result ready while no results message is in flight goes out at once, alone; results
    # ready while one waits for its confirm are held, and go out together once it is
    # confirmed, as one `step_results` message (docs/protocol.md, section 4), sent by one of
    # the threads whose result is held.
    def publish_result(message, body)
      mine = PendingResult.new(message: message, body: body, done: false, confirmed: false)
      @results_mutex.synchronize { @results << mine }
      loop do
        batch = @results_mutex.synchronize do
          @results_cv.wait(@results_mutex) while @results_in_flight && !mine.done
          next nil if mine.done

          @results_in_flight = true
          take_results
        end
        return mine.confirmed unless batch

        confirmed = send_results(batch)
        @results_mutex.synchronize do
          batch.each do |r|
            r.confirmed = confirmed
            r.done = true
          end
          @results_in_flight = false
          @results_cv.broadcast
        end
      end
    end

    # The next message's results (under @results_mutex): as many as fit, at least one.
    def take_results
      bytes = 0
      n = 0
      while n < @results.size && n < MAX_RESULTS_PER_MESSAGE
        bytes += @results[n].body.bytesize + 1
        break if n.positive? && bytes > MAX_BATCH_BYTES

        n += 1
      end
      @results.shift(n)
    end

    def send_results(batch)
      first = batch[0].message
      # RabbitMQ checks user_id is this connection's user: the orchestrator can then check a
      # namespace's results come from that namespace's user.
      props = { content_type: 'application/json', persistent: true, user_id: @credentials[:user] }
      if batch.size == 1
        return publish(@names.results_exchange, first['namespace'], batch[0].body,
                       **props, message_id: "#{first['step_id']}:#{first['attempt']}", correlation_id: first['correlation_id'], type: 'step_result')
      end

      # The results are already serialized: the envelope is written around them.
      body = %({"protocol_version":1,"message_type":"step_results","results":[#{batch.map(&:body).join(',')}]})
      confirmed = publish(@names.results_exchange, first['namespace'], body,
                          **props, message_id: "#{first['step_id']}:#{first['attempt']}+#{batch.size - 1}", type: 'step_results')
      @logger.error("step_results message (#{batch.size} results) not confirmed by the broker") unless confirmed
      confirmed
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

    # Parks what cannot be run on the dead-letter exchange: the delivery's body unchanged,
    # with its properties; or (`alone`) one step of a `steps` message, as its own JSON.
    def park(delivery, body, reason, alone: false)
      return :given_back unless start_answer(delivery)

      text = reason.message.length > MAX_REASON_CHARS ? "#{reason.message[0, MAX_REASON_CHARS]}…" : reason.message
      @logger.error("invalid step message parked in the dead letters: #{reason.code} #{text}")
      props = delivery.props
      headers = (props.headers || {}).merge('x-tasker-reason' => text, 'x-tasker-code' => reason.code, 'x-tasker-source-queue' => @queue_name)
      opts = { persistent: true, headers: headers }
      if alone
        # One step taken out of a `steps` message is JSON, a `step`; the envelope's id is not its own.
        opts.merge!(content_type: 'application/json', type: 'step')
      else
        # The body may not be JSON at all: keep what the sender said, claim nothing otherwise.
        opts[:content_type] = props.content_type || 'application/octet-stream'
        opts[:message_id] = props.message_id if props.message_id
        opts[:correlation_id] = props.correlation_id if props.correlation_id
        opts[:type] = props.type if props.type
      end
      return :answered if publish(@names.dead_letter_exchange, Messages.parked_routing_key(@namespace), body, **opts)

      @logger.error('could not park the invalid step message; it goes back to the queue')
      :failed
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

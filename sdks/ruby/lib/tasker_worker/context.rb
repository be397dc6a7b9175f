# frozen_string_literal: true

require 'logger'

module TaskerWorker
  # What `context.wait_for(task_id)` returns: the step waits for that task.
  WaitFor = Struct.new(:task_id)

  # What a handler gets for one attempt of one step: the step message's fields, a
  # cancellation flag, a logger and `create_task`.
  class StepContext
    attr_reader :task_id, :step_id, :step_name, :namespace, :task_name, :task_version, :correlation_id,
                :attempt, :max_attempts, :idempotency_key, :callable, :method_name, :initialization,
                :input, :dependency_results, :delivery_count, :logger

    # `request_task`: a callable (request Hash, timeout seconds) -> reply Hash.
    def initialize(message, request_task: nil, logger: nil, delivery_count: 1)
      @task_id = message.fetch('task_id')
      @step_id = message.fetch('step_id')
      @step_name = message.fetch('step_name')
      @namespace = message.fetch('namespace')
      @task_name = message['task_name'].to_s
      @task_version = message['task_version'].to_s
      @correlation_id = message['correlation_id'].to_s
      @attempt = message.fetch('attempt')
      @max_attempts = message['max_attempts'] || @attempt
      @idempotency_key = message['idempotency_key'] || "#{@step_id}:#{@attempt}"
      handler = message['handler'] || {}
      @callable = handler['callable']
      @method_name = handler['method']
      @initialization = handler['initialization'] || {}
      @input = message['input'] || {}
      @dependency_results = message['dependency_results'] || {}
      @delivery_count = delivery_count
      @request_task = request_task
      @cancelled = false
      @create_calls = 0
      @logger = logger || Logger.new($stderr, progname: "tasker_worker #{@namespace} #{@step_name} #{@task_id}##{@attempt}")
    end

    # One field of the task's context (string or symbol key).
    def get_input(key)
      @input[key.to_s]
    end

    # The result of a step this one depends on (directly or transitively), by step name.
    def get_dependency_result(step_name)
      @dependency_results[step_name.to_s]
    end

    # True once the step's timeout passed or the worker stopped past its grace period: the
    # step was answered already, a long handler may check this and give up.
    def cancelled?
      @cancelled
    end

    # Return this from a handler to make the step wait for a task it created, without holding
    # a worker: `context.wait_for(context.create_task(...)['id'])`. The orchestrator completes
    # the step with that task's outcome ({task_id, namespace, name, results}, results holding its
    # final steps' results by name), or fails it with CHILD_TASK_FAILED / CHILD_TASK_CANCELLED.
    def wait_for(task_id)
      raise ArgumentError, 'wait_for needs the id of a task' unless task_id.is_a?(String) && !task_id.empty?

      WaitFor.new(task_id)
    end

    # @api private
    def cancel!
      @cancelled = true
    end

    # Creates a task in any namespace (the mission's cross-namespace step) with a task request
    # on `<prefix>.task_requests`, and waits for the orchestrator's reply. Defaults: the parent
    # is this task and step, the correlation id this task's, the idempotency key
    # `<step_id>:<namespace>.<name>:<n>` (no attempt in it: a retried or redelivered step gets
    # back the task it created before). Returns the task (a Hash with 'id', 'namespace',
    # 'name', 'state', ...) plus 'created'. Raises TaskRequestError on a refusal.
    def create_task(namespace:, name:, context:, version: nil, idempotency_key: nil, correlation_id: nil, requested_by: nil, timeout: 30)
      @create_calls += 1
      issues = []
      issues << { 'path' => 'namespace', 'message' => 'must be lower snake case' } unless namespace.is_a?(String) && NAMESPACE_PATTERN.match?(namespace)
      issues << { 'path' => 'name', 'message' => 'must be an identifier' } unless name.is_a?(String) && IDENTIFIER_PATTERN.match?(name)
      issues << { 'path' => 'context', 'message' => 'must be an object' } unless context.is_a?(Hash)
      raise TaskRequestError.new('INVALID_MESSAGE', "task request is not valid: #{issues.map { |i| "#{i['path']}: #{i['message']}" }.join('; ')}", issues) unless issues.empty?
      raise TaskRequestError.new('INTERNAL', 'this context is not connected to a worker') unless @request_task

      request = {
        'protocol_version' => PROTOCOL_VERSION,
        'message_type' => 'task_request',
        'namespace' => namespace,
        'name' => name,
        'context' => JSON.parse(JSON.generate(context)),
        'idempotency_key' => idempotency_key || "#{@step_id}:#{namespace}.#{name}:#{@create_calls}",
        'parent' => { 'task_id' => @task_id, 'step_id' => @step_id }
      }
      corr = correlation_id || @correlation_id
      request['correlation_id'] = corr unless corr.nil? || corr.empty?
      request['version'] = version if version
      request['requested_by'] = requested_by if requested_by
      reply = @request_task.call(request, timeout)
      return reply['task'].merge('created' => reply['created'] == true) if reply['ok'] == true

      error = reply['error'] || {}
      raise TaskRequestError.new(error['code'] || 'INTERNAL', error['message'] || 'task request refused', error['issues'])
    end
  end
end

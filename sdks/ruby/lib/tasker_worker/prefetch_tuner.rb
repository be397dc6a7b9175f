# frozen_string_literal: true

module TaskerWorker
  # The step queue consumer's prefetch, following how many steps the messages carry (the
  # TypeScript worker's PrefetchTuner, packages/worker/src/prefetch.ts, with the same constants).
  #
  # Prefetch counts messages, not steps. With one step per message, prefetch = concurrency
  # fills every slot and holds nothing back. With `steps` messages of N steps
  # (TASKER_STEPS_PER_MESSAGE) the same prefetch would let one worker hold concurrency × N
  # steps, waiting for its slots while other workers of the namespace sit idle. So the worker
  # asks for enough messages for twice its slots plus one message: ceil(2 × concurrency / N)
  # + 1, at most concurrency, N being a moving average of the steps per message received.
  # Twice, not once: a smaller window costs the broker more per step (bench/RESULTS.md).
  #
  # Not thread-safe: the worker calls it under a mutex of its own.
  class PrefetchTuner
    # How much one message weighs in the moving average of steps per message.
    WEIGHT = 0.25
    # At most one change in this many milliseconds (each change subscribes again).
    MIN_INTERVAL_MS = 1000

    attr_reader :concurrency

    def initialize(concurrency)
      @concurrency = concurrency
      @average = 1.0
      @applied = concurrency
      @changing = false
      @last_change = -Float::INFINITY
    end

    # The prefetch the broker was last told.
    def current
      @applied
    end

    # Counts a message of `steps` steps; returns the prefetch to ask the broker for, or nil to
    # keep the current one. The value held P stays while the exact one is within
    # (P - 2, P + 1], so an average wobbling across a rounding boundary changes nothing;
    # changes go one at a time (until #settled), at most once every MIN_INTERVAL_MS.
    # `now`: a clock in milliseconds.
    def observe(steps, now = Process.clock_gettime(Process::CLOCK_MONOTONIC, :millisecond))
      @average += ([1, steps].max - @average) * WEIGHT
      exact = [@concurrency, (2.0 * @concurrency / @average) + 1].min
      within = exact > @applied - 2 && exact <= @applied + 1
      return nil if @changing || within || now - @last_change < MIN_INTERVAL_MS

      @changing = true
      @last_change = now
      exact.ceil
    end

    # The broker accepted `prefetch` (or, with nil, the change failed and may be asked for again).
    def settled(prefetch)
      @changing = false
      @applied = prefetch unless prefetch.nil?
    end
  end
end

# frozen_string_literal: true

require 'minitest/autorun'
require 'tasker_worker'

# The same cases and values as the TypeScript worker's (packages/worker/test/prefetch.test.ts).
class PrefetchTunerTest < Minitest::Test
  T = TaskerWorker::PrefetchTuner

  def setup
    @clock = 0
    @last_change_at = 0 # when #feed last applied a change
  end

  # Feeds messages of `steps` steps, `every` ms apart, applying every change asked for; returns the changes.
  def feed(tuner, steps, count, every: 100)
    asked = []
    count.times do
      @clock += every
      want = tuner.observe(steps, @clock)
      next if want.nil?

      asked << want
      @last_change_at = @clock
      tuner.settled(want)
    end
    asked
  end

  def test_keeps_prefetch_equal_to_concurrency_while_messages_carry_one_step_each
    t = T.new(50)
    assert_equal [], feed(t, 1, 100)
    assert_equal 50, t.current
  end

  def test_with_16_steps_per_message_asks_for_twice_the_slots_in_messages_plus_one
    t = T.new(50)
    feed(t, 16, 60)
    # ceil(2 × 50 / 16) + 1 = 8 messages: 128 steps held at most, not 50 × 16 = 800.
    assert_equal 8, t.current
    small = T.new(4)
    feed(small, 16, 60)
    assert_equal 2, small.current # one message running, one waiting
  end

  def test_moves_in_a_few_steps_not_on_every_message_and_goes_back_to_concurrency_when_packing_stops
    t = T.new(50)
    assert_equal [23, 8], feed(t, 16, 60) # 100 ms apart: a change a second at most
    # Sizes alternating around the same average: no change is asked for.
    assert_equal [], (0...40).flat_map { |i| feed(t, i.odd? ? 12 : 20, 1) }
    up = feed(t, 1, 60)
    assert_equal 50, up.last
    assert_equal 50, t.current
  end

  def test_asks_for_one_change_at_a_time_and_a_failed_change_is_asked_for_again
    t = T.new(50)
    want = nil
    20.times do
      break unless want.nil?

      want = t.observe(16, @clock += 100)
    end
    refute_nil want
    assert_nil t.observe(16, @clock += 5000) # in flight
    t.settled(nil) # the channel was closed
    assert_equal 50, t.current
    refute_nil t.observe(16, @clock += 5000)
  end

  def test_asks_for_at_most_one_change_a_second
    t = T.new(50)
    assert_equal 1, feed(t, 16, 50, every: 10).size # 50 messages in half a second
    refute_nil t.observe(16, @last_change_at + 1000) # a second after the first change
  end

  def test_never_asks_for_less_than_one_message_whatever_the_messages_carry
    t = T.new(1)
    assert_equal [], feed(t, 100, 50)
    assert_equal 1, t.current
  end
end

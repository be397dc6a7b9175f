"""The prefetch following the steps per message (the cases of packages/worker/test/prefetch.test.ts)."""
import unittest

from tasker_worker.prefetch import PrefetchTuner


class PrefetchTunerTest(unittest.TestCase):
    def setUp(self):
        self.clock = 0
        #: When feed last applied a change.
        self.last_change_at = 0

    def feed(self, t, steps, count, every=100):
        """Feeds messages of ``steps`` steps, ``every`` ms apart, applying every change asked for; returns the changes."""
        asked = []
        for _ in range(count):
            self.clock += every
            want = t.observe(steps, self.clock)
            if want is not None:
                asked.append(want)
                self.last_change_at = self.clock
                t.settled(want)
        return asked

    def test_keeps_prefetch_concurrency_while_messages_carry_one_step_each(self):
        t = PrefetchTuner(50)
        self.assertEqual(self.feed(t, 1, 100), [])
        self.assertEqual(t.current, 50)

    def test_with_16_steps_per_message_asks_for_twice_the_slots_in_messages_plus_one(self):
        t = PrefetchTuner(50)
        self.feed(t, 16, 60)
        # ceil(2 × 50 / 16) + 1 = 8 messages: 128 steps held at most, not 50 × 16 = 800.
        self.assertEqual(t.current, 8)
        small = PrefetchTuner(4)
        self.feed(small, 16, 60)
        self.assertEqual(small.current, 2)  # one message running, one waiting

    def test_moves_in_a_few_steps_not_on_every_message_and_goes_back_to_concurrency_when_packing_stops(self):
        t = PrefetchTuner(50)
        down = self.feed(t, 16, 60)
        self.assertEqual(down, [23, 8])  # 100 ms apart: a change a second at most
        # Sizes alternating around the same average: no change is asked for.
        self.assertEqual([want for i in range(40) for want in self.feed(t, 12 if i % 2 else 20, 1)], [])
        up = self.feed(t, 1, 60)
        self.assertEqual(up[-1], 50)
        self.assertEqual(t.current, 50)

    def test_asks_for_one_change_at_a_time_a_failed_change_is_asked_for_again(self):
        t = PrefetchTuner(50)
        want = None
        for _ in range(20):
            self.clock += 100
            want = t.observe(16, self.clock)
            if want is not None:
                break
        self.assertIsNotNone(want)
        self.clock += 5000
        self.assertIsNone(t.observe(16, self.clock))  # in flight
        t.settled(None)  # the channel was closed
        self.assertEqual(t.current, 50)
        self.clock += 5000
        self.assertIsNotNone(t.observe(16, self.clock))

    def test_asks_for_at_most_one_change_a_second(self):
        t = PrefetchTuner(50)
        self.assertEqual(len(self.feed(t, 16, 50, every=10)), 1)  # 50 messages in half a second
        self.assertIsNotNone(t.observe(16, self.last_change_at + 1000))  # a second after the first change

    def test_never_asks_for_less_than_one_message_whatever_the_messages_carry(self):
        t = PrefetchTuner(1)
        self.assertEqual(self.feed(t, 100, 50), [])
        self.assertEqual(t.current, 1)

    def test_a_message_counts_as_one_step_at_least_and_the_default_clock_is_monotonic(self):
        t = PrefetchTuner(4)
        for _ in range(20):
            want = t.observe(0)  # an empty or undecodable message weighs one step
            self.assertIsNone(want)
        self.assertEqual(t.current, 4)
        want = None
        for _ in range(5):
            want = want or t.observe(16)
        self.assertEqual(want, 2)


if __name__ == "__main__":
    unittest.main()

"""The step queue consumer's prefetch, following how many steps the messages carry.

Prefetch counts messages, not steps. With one step per message, prefetch = concurrency fills
every slot and holds nothing back. With ``steps`` messages of N steps
(TASKER_STEPS_PER_MESSAGE) the same prefetch would let one worker hold concurrency × N steps,
waiting for its slots while other workers of the namespace sit idle. So the worker asks for
enough messages for twice its slots plus one message: ceil(2 × concurrency / N) + 1, at most
concurrency, N being a moving average of the steps per message received (docs/protocol.md,
section 3). The TypeScript worker's PrefetchTuner (packages/worker/src/prefetch.ts) does the
same, with the same constants.
"""
from __future__ import annotations

import math
import time
from typing import Optional

#: Weight of each message in the moving average of steps per message.
WEIGHT = 0.25
#: Changes are at least this far apart (each one subscribes again).
MIN_INTERVAL_MS = 1000


class PrefetchTuner:
    """Counts the steps per message received and says when the prefetch should change.

    Not thread-safe: the worker uses it on the connection's thread only."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        #: Moving average of steps per message (each message weighs WEIGHT).
        self._average = 1.0
        self._applied = concurrency
        self._changing = False
        self._last_change = -math.inf

    @property
    def current(self) -> int:
        """The prefetch the broker was last told."""
        return self._applied

    def _exact(self) -> float:
        """The prefetch for the average so far, before rounding up."""
        return min(self.concurrency, 2 * self.concurrency / self._average + 1)

    def observe(self, steps: int, now: Optional[float] = None) -> Optional[int]:
        """Counts a message of ``steps`` steps; returns the prefetch to ask the broker for, or
        None to keep the current one. ``now`` is in milliseconds (default: a monotonic clock).

        The value held P stays while the exact one is within (P - 2, P + 1], so an average
        wobbling across a rounding boundary changes nothing; changes go one at a time (until
        settled() is called), at most once every MIN_INTERVAL_MS."""
        if now is None:
            now = time.monotonic() * 1000.0
        self._average += (max(1, steps) - self._average) * WEIGHT
        exact = self._exact()
        within = self._applied - 2 < exact <= self._applied + 1
        if self._changing or within or now - self._last_change < MIN_INTERVAL_MS:
            return None
        self._changing = True
        self._last_change = now
        return math.ceil(exact)

    def settled(self, prefetch: Optional[int]) -> None:
        """The broker accepted ``prefetch`` (or, with None, the change failed and may be asked
        for again on a later message)."""
        self._changing = False
        if prefetch is not None:
            self._applied = prefetch

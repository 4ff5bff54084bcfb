"""Is this media worker saturated? (issue #18 item 7). No aiortc here.

A passthrough SFU is one asyncio event loop: when packets arrive faster than it forwards
them, the loop lags behind its timers, and every room on the worker suffers. `LoopLag`
measures that lag: a task sleeps `interval_s` and keeps how late it woke, smoothed (EWMA).
`SfuMediaNode` asks its probe (this one by default; tests inject theirs) before it opens a
*new* room and refuses with `MediaSaturated` above `SATURATED_LAG_S`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Smoothed event-loop lag (s) above which the worker admits no new room.
SATURATED_LAG_S = 0.1
PROBE_INTERVAL_S = 0.25
#: Weight of the newest sample.
ALPHA = 0.3


class LoopLag:
    """Smoothed lateness of a periodic sleep on the running loop. Call `run()` as a task."""

    def __init__(
        self,
        interval_s: float = PROBE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.lag_s = 0.0

    def add(self, late_s: float) -> None:
        self.lag_s = ALPHA * max(0.0, late_s) + (1 - ALPHA) * self.lag_s

    def __call__(self) -> float:
        return self.lag_s

    async def run(self) -> None:
        while True:
            start = self.clock()
            await asyncio.sleep(self.interval_s)
            self.add(self.clock() - start - self.interval_s)

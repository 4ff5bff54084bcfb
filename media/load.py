"""Is this media worker saturated? (issue #18 item 7). No aiortc here.

A passthrough SFU is one asyncio event loop: when packets arrive faster than it forwards
them, the loop lags behind its timers, and every room on the worker suffers. `LoopLag`
measures that lag: a task sleeps `interval_s` and keeps how late it woke, smoothed (EWMA).
`SfuMediaNode` asks its probe (this one by default; tests inject theirs) before it opens a
*new* room and refuses with `MediaSaturated` above `SATURATED_LAG_S`; and `LoadShedder`
degrades the rooms it already carries before anything fails: while saturated every subscriber
gets only the base VP8 temporal layer (a quarter of the frames with L1T3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from media.bandwidth import MAX_LAYER

#: Smoothed event-loop lag (s) above which the worker admits no new room.
SATURATED_LAG_S = 0.1
PROBE_INTERVAL_S = 0.25
#: Weight of the newest sample.
ALPHA = 0.3
#: Shedding ends after the lag stayed below half the threshold this long.
RECOVER_S = 5.0


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


class LoadShedder:
    """The highest temporal layer this worker forwards to anyone, from its loop lag: the base
    layer (0) as soon as the lag exceeds `threshold_s`; every layer again once it stayed below
    half of that for `recover_s` (hysteresis: shedding itself lowers the lag)."""

    def __init__(
        self,
        threshold_s: float = SATURATED_LAG_S,
        recover_s: float = RECOVER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold_s = threshold_s
        self.recover_s = recover_s
        self.clock = clock
        self.shedding = False
        self._calm_since: float | None = None

    def cap(self, lag_s: float) -> int:
        now = self.clock()
        if lag_s > self.threshold_s:
            self.shedding, self._calm_since = True, None
        elif self.shedding and lag_s < self.threshold_s / 2:
            if self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= self.recover_s:
                self.shedding, self._calm_since = False, None
        else:
            self._calm_since = None
        return 0 if self.shedding else MAX_LAYER

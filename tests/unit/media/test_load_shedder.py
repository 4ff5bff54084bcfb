"""`media.load.LoadShedder` (issue #18 item 7): a saturated worker forwards only the base
temporal layer, and every layer again once its loop lag stayed low (hysteresis)."""

from __future__ import annotations

from media.bandwidth import MAX_LAYER
from media.load import LoadShedder


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sheds_at_once_above_the_threshold_and_recovers_only_after_calm() -> None:
    clock = Clock()
    shedder = LoadShedder(threshold_s=0.1, recover_s=5.0, clock=clock)
    assert shedder.cap(0.05) == MAX_LAYER
    assert shedder.cap(0.15) == 0 and shedder.shedding
    clock.now += 10
    assert shedder.cap(0.08) == 0, "below the threshold but not below half: still shedding"
    assert shedder.cap(0.04) == 0, "calm starts now"
    clock.now += 4.9
    assert shedder.cap(0.04) == 0
    clock.now += 0.2
    assert shedder.cap(0.04) == MAX_LAYER and not shedder.shedding


def test_a_spike_during_the_calm_starts_it_again() -> None:
    clock = Clock()
    shedder = LoadShedder(threshold_s=0.1, recover_s=5.0, clock=clock)
    shedder.cap(0.5)
    shedder.cap(0.01)
    clock.now += 4
    assert shedder.cap(0.2) == 0
    clock.now += 1.5
    assert shedder.cap(0.01) == 0, "the calm restarted with this sample"
    clock.now += 5
    assert shedder.cap(0.01) == MAX_LAYER

"""One publisher on a lossy link with a blackout: the others keep receiving its video.

Real aiortc peers, each in a network namespace of the test's own (tests/netshape.py): C's
uplink loses 3 % of packets (60 ± 20 ms each way) and goes black for 5 s. Bounds are generous
for a loaded CI machine; the measured figures are in docs/performance.md ("Shaped links").
"""

from __future__ import annotations

import pytest

from media import adapter, forwarding
from tests.media.shaped_call import run_call
from tests.netshape import NetshapeUnavailable, unavailable_reason

UNAVAILABLE = unavailable_reason()  # not root, no `ip netns`: skipped, saying why
pytestmark = [
    pytest.mark.media,
    pytest.mark.timeout(180),
    pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE)),
]

#: The longest a subscriber may go without C's video while C's link is up: the loss bound, a
#: keyframe request waiting out the throttle, and 1.5 s for the keyframe and a loaded machine.
MAX_GAP_S = adapter.LOSS_WAIT_MAX_S + forwarding.KEYFRAME_MIN_INTERVAL_S + 1.5
RECOVERY_S = 2.0


def test_lossy_publisher_with_a_blackout_keeps_reaching_the_others() -> None:
    try:
        call = run_call(lossy_s=15.0, blackout_s=5.0, after_s=8.0)
    except NetshapeUnavailable as exc:
        pytest.skip(str(exc))
    summary = call.summary()
    for subscriber in ("a", "b"):
        figures = summary[subscriber]
        assert call.max_gap_s(subscriber, call.lossy) <= MAX_GAP_S, figures
        assert call.fps(subscriber, call.lossy) >= 5, figures  # 30 sent; a frozen call gets ~0
        recovery = call.recovery_s(subscriber)
        assert recovery is not None and recovery <= RECOVERY_S, figures
        assert figures["max_gap_after_s"] <= MAX_GAP_S, figures
        assert figures["audio_frames"] > 0, figures
    assert summary["server"]["resumes"] >= 1, summary["server"]

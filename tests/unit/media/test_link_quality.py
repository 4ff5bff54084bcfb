"""A participant's connection-quality summary (media/quality.py, issue #16 item 1)."""

from __future__ import annotations

import pytest

from media.quality import QualityMeter, UpstreamMeter, grade_of
from tests.unit.media.test_publish_cap import Room, rounds


def test_a_never_sampled_participant_has_no_summary() -> None:
    assert QualityMeter().summary() is None


def test_summary_of_a_steady_good_link() -> None:
    meter = QualityMeter()
    for _ in range(20):
        meter.sample(interval_s=0.5, estimate_bps=1_500_000, loss=0.0, paused=False)
    q = meter.summary()
    assert q is not None
    assert (q.seconds, q.median_kbps, q.min_kbps, q.loss_pct) == (10.0, 1500, 1500, 0.0)
    assert q.video_paused_s == 0 and q.grade == "good"


def test_summary_counts_pauses_and_takes_the_worst_of_estimate_and_loss() -> None:
    meter = QualityMeter()
    for i in range(10):
        meter.sample(
            interval_s=1.0,
            estimate_bps=100_000 if i < 6 else 900_000,
            loss=0.2 if i == 0 else 0.0,
            paused=i < 4,
        )
    q = meter.summary()
    assert q is not None
    assert q.min_kbps == 100 and q.median_kbps == 100
    assert q.max_loss_pct == 20.0 and q.loss_pct == 2.0
    assert q.video_paused_s == 4.0 and q.grade == "poor"
    assert q.as_json()["grade"] == "poor"


def test_unknown_estimate_and_loss_do_not_count_against_the_link() -> None:
    meter = QualityMeter()
    meter.sample(interval_s=0.5, estimate_bps=None, loss=None, paused=False)
    q = meter.summary()
    assert q is not None and q.median_kbps is None and q.loss_pct is None
    assert q.grade == "good"


@pytest.mark.parametrize(
    ("kbps", "loss", "paused", "grade"),
    [
        (2000, 0.0, 0.0, "good"),
        (400, 0.0, 0.0, "fair"),
        (2000, 0.05, 0.0, "fair"),
        (2000, 0.0, 0.1, "fair"),
        (100, 0.0, 0.0, "poor"),
        (2000, 0.1, 0.0, "poor"),
        (2000, 0.0, 0.5, "poor"),
        (None, None, 0.0, "good"),
    ],
)
def test_grades(kbps: int | None, loss: float | None, paused: float, grade: str) -> None:
    assert grade_of(kbps, loss, paused) == grade


# ----- upstream: what the server receives from a publisher (issue #18 item 8)


def test_upstream_grades_unrecovered_loss_per_interval_and_reports_only_changes() -> None:
    meter = UpstreamMeter()
    assert meter.sample(0.0, 100, 100) == "good"
    assert meter.sample(0.5, 200, 200) is None  # unchanged: nothing to send
    assert meter.sample(1.0, 300, 295) == "fair"  # 5 of 100 lost
    assert meter.sample(1.5, 400, 380) == "poor"  # 15 of 100 lost
    assert meter.sample(2.0, 500, 460) is None  # 20 of 100 lost: still poor
    assert meter.sample(2.5, 600, 560) == "good"  # the gaps repaired (NACK/RTX) count as received


def test_upstream_is_lost_after_one_and_a_half_seconds_without_packets() -> None:
    meter = UpstreamMeter()
    assert meter.sample(0.0, 100, 100) == "good"
    assert meter.sample(1.0, 100, 100) is None
    assert meter.sample(1.5, 100, 100) is None  # exactly 1.5 s: not yet
    assert meter.sample(2.0, 100, 100) == "lost"
    assert meter.sample(2.5, 100, 100) is None
    assert meter.sample(3.0, 150, 150) == "good"  # packets again


async def test_the_record_grades_only_an_estimate_the_policies_believe() -> None:
    """The room loop samples each subscriber's link for the session record. An estimate that
    collapsed while the round trip stays at a few milliseconds (Chromium's on a loaded
    machine) is not the link's capacity: the policies do not act on it (`credible`), and the
    record does not grade the link poor for it. With a queue on the path it counts."""
    for rtt_s, median, grade in ((0.003, None, "good"), (0.3, 100, "poor")):
        room = Room()
        c = room.room.peers["c"]
        c.estimator.on_rtt(rtt_s)
        rounds(room, 5, (300_000.0, 100_000.0, 150_000.0), c=100_000, d=5_000_000)
        summary = c.quality.summary()
        assert summary is not None
        assert (summary.median_kbps, summary.grade) == (median, grade), rtt_s

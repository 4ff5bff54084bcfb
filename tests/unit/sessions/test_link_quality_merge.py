"""A participant's quality over several media connections (a reconnect starts a new one)."""

from __future__ import annotations

from server.sessions.participants import merge_quality

FIRST = {
    "seconds": 30.0,
    "median_kbps": 1200,
    "min_kbps": 800,
    "loss_pct": 1.0,
    "max_loss_pct": 3.0,
    "video_paused_s": 0.0,
    "grade": "good",
}
SECOND = {
    "seconds": 10.0,
    "median_kbps": 200,
    "min_kbps": 90,
    "loss_pct": 9.0,
    "max_loss_pct": 20.0,
    "video_paused_s": 6.0,
    "grade": "poor",
}


def test_the_first_summary_is_kept_as_it_is() -> None:
    assert merge_quality(None, FIRST) == FIRST


def test_durations_add_up_loss_is_time_weighted_and_the_worst_wins() -> None:
    merged = merge_quality(FIRST, SECOND)
    assert merged["seconds"] == 40.0
    assert merged["median_kbps"] == 1200  # the longer connection's
    assert merged["min_kbps"] == 90 and merged["max_loss_pct"] == 20.0
    assert merged["loss_pct"] == 3.0  # (1 × 30 + 9 × 10) / 40
    assert merged["video_paused_s"] == 6.0
    assert merged["grade"] == "poor"
    assert merge_quality(SECOND, FIRST)["grade"] == "poor"


def test_missing_figures_stay_missing() -> None:
    bare = {"seconds": 5.0, "video_paused_s": 0.0, "grade": "good"}
    merged = merge_quality(bare, bare)
    assert merged["loss_pct"] is None and merged["min_kbps"] is None
    assert merged["seconds"] == 10.0

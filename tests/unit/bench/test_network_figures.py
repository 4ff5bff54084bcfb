"""The figures `onedoor bench network` derives from getStats() samples (bench/network.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.network import SAMPLE_S, Series, goals, summarize

IDS = {"A": "pa", "B": "pb", "C": "pc"}


def inbound(peer: str, frames: float, *, concealed: float = 0, samples: float = 0,
            frozen: float = 0, packets: float = 0) -> list[dict[str, Any]]:  # fmt: skip
    return [
        {"peer": peer, "kind": "video", "frames": frames, "freezes": 1 if frozen else 0,
         "frozen": frozen, "concealed": 0, "samples": 0, "packets": 0, "lost": 0, "nacks": 0},
        {"peer": peer, "kind": "audio", "frames": 0, "freezes": 0, "frozen": 0,
         "concealed": concealed, "samples": samples, "packets": packets, "lost": 0, "nacks": 0},
    ]  # fmt: skip


def stats(frames: dict[str, float], keyframes: float = 1, **audio: float) -> dict[str, Any]:
    rows = [r for peer, n in frames.items() for r in inbound(peer, n, **audio)]
    out = {"plis": 0, "keyframes": keyframes, "frames": 0, "bytes": 0, "height": 480,
           "limit": "none"}  # fmt: skip
    return {"inbound": rows, "outbound": [out], "state": "connected", "avail": 0}


def series_for(receiver: str, frames_at: list[dict[str, float]], **kw: Any) -> Series:
    s = Series()
    s.samples[receiver] = [(i * SAMPLE_S, stats(f, **kw)) for i, f in enumerate(frames_at)]
    return s


def test_fps_gaps_and_recovery_after_a_drop() -> None:
    # C receives A at 4 frames per sample (16 fps), then nothing for 2 s, then again
    frames = [4.0 * i for i in range(8)] + [28.0] * 8 + [28.0 + 4 * i for i in range(1, 9)]
    s = series_for("C", [{"pa": f, "pb": f} for f in frames])
    out = summarize(s, IDS, 6.0, drop_at=1.0, drop_s=1.0)
    d = out["directions"]["C<-A"]
    assert d["longest_gap_s"] == pytest.approx(2.25)  # last new frame at 1.75 s, next at 4.0 s
    assert d["frozen_s"] == pytest.approx(2.25)  # more than Chromium's own count (0 here)
    assert d["video_back_s"] == pytest.approx(2.0)  # the link came back at 2.0 s
    assert d["fps"] == pytest.approx(60 / (23 * SAMPLE_S), abs=0.1)


def test_a_counter_that_restarts_counts_from_zero() -> None:
    # a rebuilt peer connection: framesDecoded goes 0 → 40, then restarts at 0 → 20
    frames = [0.0, 10.0, 20.0, 30.0, 40.0, 5.0, 10.0, 15.0, 20.0]
    s = series_for("C", [{"pa": f, "pb": f} for f in frames])
    d = summarize(s, IDS, 2.0, drop_at=None, drop_s=0)["directions"]["C<-A"]
    assert d["fps"] == pytest.approx(60 / (8 * SAMPLE_S), abs=0.1)
    assert "video_back_s" not in d


def test_concealment_and_never_back() -> None:
    rows = [{"pa": 0.0, "pb": 0.0} for _ in range(5)]
    s = Series()
    s.samples["C"] = [
        (i * SAMPLE_S, stats(r, concealed=10.0 * i, samples=1000.0 * i)) for i, r in enumerate(rows)
    ]
    d = summarize(s, IDS, 1.0, drop_at=0.25, drop_s=0.25)["directions"]["C<-A"]
    assert d["concealment_pct"] == pytest.approx(1.0)
    assert d["video_back_s"] is None  # no new frame after the link returned
    assert d["fps"] == 0


def test_goals_take_the_worst_and_fail_what_was_never_back() -> None:
    def direction(fps: float, frozen: float, conc: float, back: float | None) -> dict[str, Any]:
        return {"fps": fps, "frozen_s_per_min": frozen, "concealment_pct": conc,
                "video_back_s": back}  # fmt: skip

    dirs = {
        k: direction(15, 0.5, 0.5, 0.4) for k in ("A<-B", "A<-C", "B<-A", "B<-C", "C<-A", "C<-B")
    }
    pubs = {p: {"keyframes_encoded": 3} for p in "ABC"}
    profile = {"directions": dirs, "publishers": pubs, "measured_s": 60.0}
    weak = {**profile, "directions": {**dirs, "C<-B": direction(8, 3.0, 2.5, 0.4)}}
    drop = {**profile, "directions": {**dirs, "A<-C": direction(15, 5, 0, None)}}
    runs = {"clip": {"clean": profile, "4g_weak": weak, "loss8": profile, "drop5": drop}}
    checks = {c["name"]: c for c in goals(runs)}
    assert checks["weak_receives_fps_min"]["value"] == 8
    assert not checks["weak_receives_fps_min"]["pass"]
    assert checks["weak_receives_concealment_pct_max"]["value"] == 2.5
    assert checks["ab_extra_keyframes_per_5s_max"]["value"] == 0
    assert checks["loss8_concealment_pct_max"]["pass"]
    assert not checks["drop5_recovery_s_max"]["pass"]  # one direction never came back

"""Compose 3 short real WebM tracks (2 people, different start offsets) and decode the MP4."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import numpy as np
import pytest

from server.sessions.composite import (
    CompositeCancelled,
    CompositeError,
    Person,
    Track,
    cells,
    compose,
)
from tests.composite_media import opus_webm, vp8_webm

T0 = datetime(2026, 12, 3, 1, 0, 0, tzinfo=UTC)
TZ = ZoneInfo("Asia/Shanghai")


def _tracks(d: Path) -> list[Track]:
    return [
        Track(vp8_webm(d / "a-video.webm", seconds=2, colour=(220, 0, 0)), "a", "video", T0, 2.0),
        Track(opus_webm(d / "a-audio.webm", seconds=2), "a", "audio", T0, 2.0),
        Track(
            vp8_webm(d / "b-video.webm", seconds=1.4, colour=(0, 0, 220)),
            "b",
            "video",
            T0 + timedelta(seconds=0.8),
            1.4,
        ),
    ]


def _cell_mean(frame: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = rect
    # the middle of the cell, away from the caption and the moving block
    mean: np.ndarray = (
        frame[y + h // 4 : y + h // 2, x + w // 3 : x + 2 * w // 3].reshape(-1, 3).mean(axis=0)
    )
    return mean


def test_composite_is_h264_aac_of_the_session_length_with_each_cell_in_its_colour(
    tmp_path: Path,
) -> None:
    tracks = _tracks(tmp_path)
    originals = {t.path: t.path.read_bytes() for t in tracks}
    out = tmp_path / "composite-1.mp4"
    seen: list[float] = []
    duration = compose(
        tracks,
        [Person("a", "张三", "party"), Person("b", "李四", "mediator")],
        out,
        tz=TZ,
        progress=seen.append,
    )
    assert duration == pytest.approx(2.2)
    assert seen[-1] == 1.0
    assert not out.with_name(out.name + ".part").exists()
    assert {p: p.read_bytes() for p in originals} == originals  # originals untouched

    with av.open(str(out)) as f:
        assert sorted(s.codec_context.name for s in f.streams) == ["aac", "h264"]
        assert f.duration is not None
        assert abs(f.duration / 1e6 - 2.2) <= 0.5
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    rects = cells(2, 640, 360)
    early, late = frames[3], frames[20]  # t=0.2 s (only "a"), t=1.33 s (both)
    red, blue = _cell_mean(late, rects[0]), _cell_mean(late, rects[1])
    assert red[0] > 150 and red[2] < 60
    assert blue[2] > 150 and blue[0] < 60
    assert _cell_mean(early, rects[1]).max() < 40  # "b" has not started: a black cell


def test_a_corrupt_track_fails_and_leaves_no_output(tmp_path: Path) -> None:
    tracks = _tracks(tmp_path)
    bad = tmp_path / "b-video.webm"
    bad.write_bytes(b"\x1a\x45\xdf\xa3" + b"garbage" * 100)
    out = tmp_path / "composite-1.mp4"
    with pytest.raises(CompositeError, match=r"b-video\.webm"):
        compose(tracks, [Person("a", "张三", "party")], out, tz=TZ)
    assert not out.exists()
    assert not out.with_name(out.name + ".part").exists()


def test_a_progress_callback_stops_composing_and_leaves_no_output(tmp_path: Path) -> None:
    tracks = _tracks(tmp_path)
    out = tmp_path / "composite-1.mp4"
    calls: list[float] = []

    def stop(fraction: float) -> None:
        calls.append(fraction)
        if fraction > 0:
            raise CompositeCancelled("stop")

    with pytest.raises(CompositeCancelled):
        compose(tracks, [Person("a", "张三", "party")], out, tz=TZ, progress=stop)
    assert len(calls) == 2 and calls[1] < 1.0
    assert not out.exists()
    assert not out.with_name(out.name + ".part").exists()

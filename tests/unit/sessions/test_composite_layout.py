from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from server.sessions.composite import (
    Track,
    cells,
    clock_text,
    fit,
    grid,
    mix,
    offsets,
    total_duration,
)

T0 = datetime(2026, 12, 3, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 3)), (9, (3, 3))],
)
def test_grid_has_one_two_four_or_nine_cells(n: int, expected: tuple[int, int]) -> None:
    assert grid(n) == expected


def test_cells_tile_the_frame_without_overlap_and_with_even_sizes() -> None:
    rects = cells(4, 640, 360)
    assert rects == [(0, 0, 320, 180), (320, 0, 320, 180), (0, 180, 320, 180), (320, 180, 320, 180)]
    nine = cells(12, 1280, 720)
    assert len(nine) == 9
    assert all(w % 2 == 0 and h % 2 == 0 for _, _, w, h in nine)
    assert all(x + w <= 1280 and y + h <= 720 for x, y, w, h in nine)


def test_offsets_are_relative_to_the_earliest_track() -> None:
    starts = [T0 + timedelta(seconds=2.5), T0, T0 + timedelta(seconds=1)]
    assert offsets(starts) == [2.5, 0.0, 1.0]
    assert offsets([]) == []


def test_total_duration_is_the_latest_track_end() -> None:
    tracks = [
        Track(Path("a"), "a", "video", T0, 10.0),
        Track(Path("b"), "b", "audio", T0 + timedelta(seconds=4), 8.0),
    ]
    assert total_duration(tracks) == 12.0


def test_mix_sums_and_clips_instead_of_wrapping() -> None:
    a = np.array([[1000, -1000], [30000, -30000]], dtype=np.int16)
    b = np.array([[500, 500], [10000, -10000]], dtype=np.int16)
    out = mix([a, b])
    assert out.dtype == np.int16
    assert out.tolist() == [[1500, -500], [32767, -32768]]


def test_clock_shows_district_time() -> None:
    assert clock_text(T0, 61.4, ZoneInfo("Asia/Shanghai")) == "09:01:01"


def test_fit_keeps_the_aspect_ratio_and_centres() -> None:
    assert fit(640, 480, 320, 360) == (320, 240, 0, 60)  # 4:3 in a tall cell: bars above/below
    assert fit(1280, 720, 320, 180) == (320, 180, 0, 0)
    assert fit(480, 640, 320, 180) == (134, 180, 93, 0)  # portrait phone: bars left/right

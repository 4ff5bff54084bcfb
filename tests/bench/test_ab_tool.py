"""The A/B bisect tool (bench/ab.py) still runs against this checkout, so it has not rotted
when a figure moves and needs bisecting (docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ab

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def test_signaling_profile_counts_calls_per_message() -> None:
    result = ab.measure(ROOT, "signaling-profile", 0.025)  # 50 chats into a room of 8
    assert result["delivered_fraction"] == 1.0
    # a chat is received, journalled and sent to 8 sockets: it cannot take fewer calls
    assert result["calls_per_message"] > 8 * 10

"""A recording asks for a keyframe until each camera's first one is on record, and again after
frames were dropped: `Recording.write` says when (issue #18; the e2e booking test once waited
30 s for a camera whose only keyframe request went unanswered)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from media.recorder import Recording, TrackKey

TB = Fraction(1, 90000)
DELTA = b"\x01\x00\x00"  # VP8: bit 0 set, an interframe
AUDIO = TrackKey("a", "audio", "mic")
CAMERA = TrackKey("a", "video", "cam")


def test_a_camera_is_waiting_until_its_first_keyframe_and_audio_never(tmp_path: Path) -> None:
    recording = Recording("r", tmp_path)
    try:
        assert recording.write(AUDIO, "opus", b"\xfc", 0, Fraction(1, 48000), 0.0, True) is False
        assert recording.write(CAMERA, "vp8", DELTA, 0, TB, 0.0, False) is True
        assert recording.write(CAMERA, "vp8", DELTA, 3000, TB, 0.1, False) is True
        assert recording.write(CAMERA, "vp8", b"\x00\x00\x00", 6000, TB, 0.2, True) is False
        assert recording.write(CAMERA, "vp8", DELTA, 9000, TB, 0.3, False) is False
        other = TrackKey("b", "video", "cam")  # every camera on its own
        assert recording.write(other, "vp8", DELTA, 0, TB, 0.3, False) is True
    finally:
        recording.stop()

"""Pure helpers of media/: keyframe detection, VP8 header, speaker debounce, adapter checks."""

from __future__ import annotations

import struct

import aioice.ice

from media import adapter
from media.recorder import opus_head
from media.speaker import SpeakerDetector

VP8_KEYFRAME_640x480 = bytes([0x50, 0x42, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", 640, 480)


def test_vp8_keyframe_bit_and_dimensions() -> None:
    assert adapter.is_keyframe("vp8", VP8_KEYFRAME_640x480)
    assert not adapter.is_keyframe("vp8", bytes([0x51]) + VP8_KEYFRAME_640x480[1:])
    assert not adapter.is_keyframe("vp8", b"")
    assert adapter.vp8_dimensions(VP8_KEYFRAME_640x480) == (640, 480)
    assert adapter.vp8_dimensions(b"\x51" + VP8_KEYFRAME_640x480[1:]) is None


def test_h264_keyframe_is_idr_or_sps() -> None:
    assert adapter.is_keyframe("h264", b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x65\x88")
    assert not adapter.is_keyframe("h264", b"\x00\x00\x00\x01\x41\x9a")


def test_opus_head_layout() -> None:
    head = opus_head()
    assert head[:8] == b"OpusHead" and len(head) == 19 and head[9] == 2


def test_speaker_switches_only_after_debounce() -> None:
    detector = SpeakerDetector(switch_after_s=0.5)

    def talk(now: float) -> None:
        detector.add_level("a", -20, now=now)
        detector.add_level("b", -100, now=now)

    talk(0.0)
    assert detector.pick(now=0.0)[0] is False  # "a" becomes the candidate
    talk(0.3)
    assert detector.pick(now=0.3)[0] is False  # not yet: debounce
    talk(0.6)
    changed, levels = detector.pick(now=0.6)
    assert changed and detector.current == "a"
    assert levels["a"] > levels["b"]
    # silence: the speaker is cleared, again only after the debounce
    assert detector.pick(now=2.0)[0] is False
    changed, _ = detector.pick(now=2.6)
    assert changed and detector.current is None


def test_speaker_levels_average_amplitude_so_speech_with_pauses_counts() -> None:
    detector = SpeakerDetector(switch_after_s=0.0)
    for i in range(25):  # 0.5 s of 20 ms packets
        now = i * 0.02
        detector.add_level("beeps", -10 if i % 3 == 0 else -127, now=now)  # loud a third
        detector.add_level("hum", -70, now=now)  # steady background noise
    levels = detector.levels(0.48)
    assert levels["beeps"] > -25 > -65 > levels["hum"] > -75
    detector.pick(now=0.48)
    assert detector.pick(now=0.5)[0] and detector.current == "beeps"


def test_internals_check_passes_on_pinned_aiortc() -> None:
    adapter.check_aiortc_internals()


def test_restrict_host_addresses_lists_only_given_ones() -> None:
    try:
        adapter.restrict_host_addresses(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    finally:
        adapter.restrict_host_addresses(["127.0.0.1"])

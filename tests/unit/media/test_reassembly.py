"""The passthrough receivers' reassembly: a video frame at its marker bit, audio at once."""

from __future__ import annotations

from typing import Any

from aiortc.rtp import RtpPacket

from media import adapter


def rtp(seq: int, ts: int, data: bytes, *, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq, timestamp=ts)
    packet._data = data  # type: ignore[attr-defined]  # what aiortc's depayloader sets
    return packet


def feed(buffer: Any, *packets: RtpPacket) -> list[tuple[int, bytes]]:
    out = []
    for packet in packets:
        _, frame = buffer.add(packet)
        if frame is not None:
            out.append((frame.timestamp, frame.data))
    return out


def test_video_frame_is_complete_at_its_marker_not_at_the_next_frame() -> None:
    buffer = adapter.early_frame_buffer("video")
    assert feed(buffer, rtp(10, 900, b"a"), rtp(11, 900, b"b")) == []
    assert feed(buffer, rtp(12, 900, b"c", marker=True)) == [(900, b"abc")]
    # the next frame's first packet does not hand the previous frame over a second time
    assert feed(buffer, rtp(13, 1800, b"d", marker=True)) == [(1800, b"d")]


def test_video_frame_with_a_gap_waits_for_the_missing_packet() -> None:
    buffer = adapter.early_frame_buffer("video")
    assert feed(buffer, rtp(65534, 90, b"a"), rtp(0, 90, b"c", marker=True)) == []
    # the retransmitted packet fills the gap (sequence numbers wrap at 65535)
    assert feed(buffer, rtp(65535, 90, b"b")) == [(90, b"abc")]
    assert feed(buffer, rtp(1, 180, b"d"), rtp(2, 180, b"e", marker=True)) == [(180, b"de")]


def test_video_frame_whose_marker_was_lost_is_handed_over_by_the_next_frame() -> None:
    buffer = adapter.early_frame_buffer("video")
    assert feed(buffer, rtp(5, 90, b"a"), rtp(6, 90, b"b")) == []
    assert feed(buffer, rtp(7, 180, b"c")) == [(90, b"ab")]  # aiortc's own rule still applies
    assert feed(buffer, rtp(8, 180, b"d", marker=True)) == [(180, b"cd")]


def test_marker_of_a_later_frame_does_not_skip_an_incomplete_earlier_one() -> None:
    buffer = adapter.early_frame_buffer("video")
    # frame 90 lacks packet 21; frame 180 is complete but must not jump the queue
    out = feed(buffer, rtp(20, 90, b"a"), rtp(22, 90, b"c", marker=True))
    out += feed(buffer, rtp(23, 180, b"d", marker=True))
    assert out == []
    assert feed(buffer, rtp(21, 90, b"b")) == [(90, b"abc")]


def test_audio_packets_pass_at_once_and_late_repeats_are_dropped() -> None:
    buffer = adapter.early_frame_buffer("audio")
    assert feed(buffer, rtp(65535, 0, b"x")) == [(0, b"x")]
    assert feed(buffer, rtp(0, 960, b"y")) == [(960, b"y")]  # wraps
    assert feed(buffer, rtp(0, 960, b"y"), rtp(65535, 0, b"x")) == []  # repeated, late
    assert feed(buffer, rtp(3, 3840, b"z")) == [(3840, b"z")]  # a loss does not hold audio back
    assert feed(buffer, rtp(2, 2880, b"late")) == []
    assert feed(buffer, rtp(40000, 0, b"restart")) == [(0, b"restart")]  # a new sequence

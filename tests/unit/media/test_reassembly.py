"""The passthrough receivers' reassembly: a video frame at its marker bit, audio at once."""

from __future__ import annotations

from typing import Any

import pytest
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


# ---------------------------------------------------------------- bounded wait (LossTolerantVideo)

FRAME_S = 1 / 30


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def vp8(seq: int, ts: int, *, start: bool, key: bool = False, marker: bool = False) -> RtpPacket:
    """A VP8 packet: payload descriptor (S bit on a frame's first packet) and depayloaded data
    (a frame's first byte says key or delta: bit 0 clear is a keyframe)."""
    body = (b"\x00" if key else b"\x01") if start else b"\xff"
    packet = RtpPacket(
        payload_type=96,
        marker=int(marker),
        sequence_number=seq & 0xFFFF,
        timestamp=ts,
        payload=(b"\x10" if start else b"\x00") + body,
    )
    packet._data = body  # type: ignore[attr-defined]
    return packet


def frame_packets(seq: int, index: int, *, key: bool = False, count: int = 2) -> list[RtpPacket]:
    ts = index * 3000
    return [vp8(seq + i, ts, start=i == 0, key=key, marker=i == count - 1) for i in range(count)]


class Harness:
    """Feeds packets at a given time and records (time, frame index) of what comes out."""

    def __init__(self, max_wait_s: float = 0.2, rtt_s: float | None = None) -> None:
        self.clock = FakeClock()
        self.requests: list[bool] = []
        self.nack_missing: set[int] = set()  # stands in for the receiver's NackGenerator.missing
        self.nacks: list[tuple[float, list[int]]] = []  # (when, seqs) asked for again
        self.buffer = adapter.LossTolerantVideo(
            "vp8",
            on_keyframe_needed=self.requests.append,
            max_wait_s=lambda: max_wait_s,
            clock=self.clock,
            nack_missing=self.nack_missing,
            send_nack=lambda ssrc, seqs: self.nacks.append((self.clock.now, seqs)),
            rtt_s=lambda: rtt_s,
        )
        self.out: list[tuple[float, int]] = []

    def feed(self, *packets: RtpPacket) -> None:
        for packet in packets:
            pli, frame = self.buffer.add(packet)
            assert pli is False  # keyframe requests go through the (throttled) callback
            if frame is not None:
                self.out.append((self.clock.now, frame.timestamp // 3000))

    def frames(self) -> list[int]:
        return [index for _, index in self.out]


def send_stream(
    h: Harness,
    frames: range,
    *,
    lose: set[int] = frozenset(),  # type: ignore[assignment]
    keyframes: set[int] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Frames of 2 packets, one per FRAME_S; packets whose seq is in `lose` never arrive."""
    for index in frames:
        h.clock.now = 100.0 + index * FRAME_S
        packets = frame_packets(1000 + 2 * index, index, key=index in keyframes)
        h.feed(*(p for p in packets if p.sequence_number not in lose))


def test_a_packet_never_retransmitted_stalls_video_for_at_most_the_bound() -> None:
    h = Harness(max_wait_s=0.2)
    send_stream(h, range(30), lose={1000 + 2 * 5 + 1}, keyframes={0})
    # frames 0-4 pass; frame 5 is incomplete; frames from 6 on wait at most 0.2 s, then the
    # incomplete frame is dropped and a (throttled) keyframe request goes out
    assert h.frames() == [0, 1, 2, 3, 4]
    assert h.requests == [False, False]  # asked again 0.5 s later (keyframe_retry_s)
    assert h.buffer.stalls == 1
    assert h.buffer.waiting_keyframe  # later delta frames would not decode: none is passed on
    given_up_at = 100.0 + 12 * FRAME_S  # first packet arriving 0.2 s after frame 6 completed
    # the publisher answers with a keyframe: output restarts with it
    send_stream(h, range(30, 40), keyframes={30})
    assert h.frames() == [0, 1, 2, 3, 4, *range(30, 40)]
    assert h.buffer.late_packets == 0
    assert given_up_at - (100.0 + 6 * FRAME_S) <= 0.2 + FRAME_S


def test_the_wait_for_a_lost_packet_is_the_bound_from_the_end_of_its_frame() -> None:
    h = Harness(max_wait_s=0.2)
    send_stream(h, range(4), lose={1000 + 2 * 3}, keyframes={0})  # first packet of frame 3
    gap_seen_at = 100.0 + 3 * FRAME_S  # frame 3's marked packet came: the frame is over
    given_up_at = None
    for index in range(4, 30):
        send_stream(h, range(index, index + 1))
        if h.buffer.stalls and given_up_at is None:
            given_up_at = h.clock.now
    assert given_up_at is not None
    assert 0.2 <= given_up_at - gap_seen_at <= 0.2 + FRAME_S  # the next arrival after the bound
    assert h.requests == [False] * (1 + h.buffer.keyframe_retries)
    assert h.frames() == [0, 1, 2]  # and nothing until a keyframe


def test_a_retransmission_within_the_bound_is_used() -> None:
    h = Harness(max_wait_s=0.2)
    lost = 1000 + 2 * 5 + 1
    send_stream(h, range(8), lose={lost}, keyframes={0})
    assert h.frames() == [0, 1, 2, 3, 4]
    h.clock.now += 0.1  # NACK answered within the bound
    h.feed(frame_packets(1000 + 2 * 5, 5)[1])
    send_stream(h, range(8, 12))
    assert h.frames() == list(range(12))  # in order, nothing lost, no keyframe asked for
    assert h.requests == []
    assert h.buffer.stalls == 0


def test_a_retransmission_after_giving_up_is_discarded() -> None:
    h = Harness(max_wait_s=0.2)
    lost = frame_packets(1000 + 2 * 5, 5)[1]
    send_stream(h, range(20), lose={lost.sequence_number}, keyframes={0})
    assert h.buffer.stalls == 1
    h.feed(lost)  # too late: frame 5 is gone
    send_stream(h, range(20, 22), keyframes={20})
    assert h.frames() == [0, 1, 2, 3, 4, 20, 21]
    assert h.buffer.late_packets == 1


def test_a_keyframe_that_began_after_a_gap_is_not_held_back_by_older_frames() -> None:
    h = Harness(max_wait_s=0.2)
    send_stream(h, range(3), keyframes={0})
    send_stream(h, range(3, 20), lose={1000 + 2 * 3, 1000 + 2 * 18 + 1}, keyframes={0})
    assert h.buffer.waiting_keyframe
    assert h.buffer.stalls == 1
    # the keyframe arrives while frame 18 is incomplete and not yet given up: it leaves at once
    send_stream(h, range(20, 23), keyframes={20})
    assert h.frames() == [0, 1, 2, 20, 21, 22]
    assert h.buffer.stalls == 1


def test_a_keyframe_still_crossing_a_slow_link_is_not_cut_short() -> None:
    h = Harness(max_wait_s=0.2)
    send_stream(h, range(2), keyframes={0})
    # a 40-packet keyframe takes a second to arrive; its third packet is lost and retransmitted
    # only after its last packet: the wait starts when the frame is over, not at the gap
    packets = frame_packets(1004, 2, key=True, count=40)
    for packet in packets:
        h.clock.now += 0.025
        if packet.sequence_number != 1006:
            h.feed(packet)
    h.clock.now += 0.15
    h.feed(packets[2])
    assert h.frames() == [0, 1, 2]
    assert h.requests == []


def test_sequence_numbers_wrap() -> None:
    h = Harness(max_wait_s=0.2)
    for index in range(6):
        h.clock.now += FRAME_S
        h.feed(*frame_packets(65530 + 2 * index, index, key=index == 0))
    assert h.frames() == list(range(6))


def test_packets_resuming_after_an_outage_restart_from_a_keyframe_asked_for_at_once() -> None:
    h = Harness(max_wait_s=0.2)
    send_stream(h, range(10), keyframes={0})
    # 5 s blackout: 150 frames lost. The next packets are deltas referring to lost frames.
    send_stream(h, range(160, 165))
    assert h.requests == [True]  # urgent: the SFU sends this PLI without waiting out its throttle
    assert h.buffer.resumes == 1
    assert h.frames() == list(range(10))
    send_stream(h, range(165, 168), keyframes={165})
    assert h.frames() == [*range(10), 165, 166, 167]


def test_a_quiet_stream_that_lost_nothing_is_not_an_outage() -> None:
    h = Harness(max_wait_s=0.2)
    for index in range(5):  # one frame every 2 s (a static screen share)
        h.clock.now += 2.0
        h.feed(*frame_packets(1000 + 2 * index, index, key=index == 0))
    assert h.frames() == list(range(5))
    assert h.requests == []


def test_a_lost_audio_packet_never_holds_audio_back() -> None:
    buffer = adapter.early_frame_buffer("audio")
    out = feed(buffer, rtp(1, 0, b"a"))
    out += feed(buffer, *(rtp(seq, seq * 960, b"b") for seq in range(3, 40)))  # 2 never comes
    assert [ts for ts, _ in out] == [0, *(seq * 960 for seq in range(3, 40))]


def test_loss_wait_is_two_and_a_half_round_trips_within_bounds() -> None:
    assert adapter.loss_wait_s(None) == 2.5 * adapter.DEFAULT_RTT_S
    assert adapter.loss_wait_s(0.01) == adapter.LOSS_WAIT_MIN_S
    assert adapter.loss_wait_s(0.15) == pytest.approx(0.375)
    assert adapter.loss_wait_s(2.0) == adapter.LOSS_WAIT_MAX_S


def test_the_wait_grows_to_how_long_retransmissions_were_seen_to_take() -> None:
    h = Harness(max_wait_s=0.2)
    send_stream(h, range(3), keyframes={0})
    late = frame_packets(1000 + 2 * 3, 3)[1]
    send_stream(h, range(3, 6), lose={late.sequence_number})
    # the gap is noticed when frame 4 begins; the retransmission comes 0.29 s later, with
    # nothing arriving meanwhile that would have noticed the 0.2 s bound passing: it is used
    h.clock.now = 100.0 + 4 * FRAME_S + 0.29
    h.buffer.add(late)
    assert h.buffer.stalls == 0
    assert h.frames() == [0, 1, 2] and h.buffer.frames_out == 4
    assert h.buffer.wait_s() == pytest.approx(1.25 * 0.29)
    assert adapter.LossTolerantVideo("vp8").wait_s() == adapter.loss_wait_s(None)
    h.clock.now = 1000.0  # a long way on: the learned bound is capped
    h.buffer._recovery_s.append(5.0)
    assert h.buffer.wait_s() == adapter.LOSS_WAIT_MAX_S


def test_packets_given_up_on_are_no_longer_asked_for() -> None:
    h = Harness(max_wait_s=0.2)
    lost = 1000 + 2 * 5 + 1
    send_stream(h, range(7), lose={lost}, keyframes={0})
    h.nack_missing.add(lost)  # what aiortc's NackGenerator noted and keeps NACKing
    h.nack_missing.add(1000 + 2 * 40)  # a later gap stays asked for
    send_stream(h, range(7, 20))
    assert h.buffer.stalls == 1
    assert h.nack_missing == {1000 + 2 * 40}


def test_a_packet_still_missing_is_asked_for_again_each_round_trip_until_it_comes() -> None:
    h = Harness(max_wait_s=0.3, rtt_s=0.05)
    lost = 1000 + 2 * 5 + 1
    send_stream(h, range(10), lose={lost}, keyframes={0})
    # noticed at frame 6 (aiortc NACKed it then); asked again at the first arrival 1.2 round
    # trips (60 ms) later: frame 8; the next would be due after frame 9
    assert h.nacks == [(100.0 + 8 * FRAME_S, [lost])]
    h.clock.now += 0.02
    h.feed(frame_packets(1000 + 2 * 5, 5)[1])  # the second retransmission arrived
    count = len(h.nacks)
    send_stream(h, range(10, 16))
    assert len(h.nacks) == count  # nothing missing: nothing asked for
    assert h.frames() == list(range(16)) and h.requests == []


def test_nothing_is_asked_for_again_once_given_up() -> None:
    h = Harness(max_wait_s=0.1, rtt_s=0.02)
    lost = 1000 + 2 * 5 + 1
    send_stream(h, range(30), lose={lost}, keyframes={0})
    assert h.buffer.stalls == 1
    last_ask = max(at for at, _ in h.nacks)
    assert last_ask <= 100.0 + 6 * FRAME_S + 0.1 + FRAME_S  # only while it was waited for
    assert h.buffer.nack_retries == len(h.nacks) >= 2


def test_a_keyframe_that_never_begins_to_arrive_is_asked_for_again() -> None:
    h = Harness(max_wait_s=0.2, rtt_s=0.21)
    assert h.buffer.keyframe_retry_s() == pytest.approx(0.62)  # 2 round trips + 0.2 s
    send_stream(h, range(13), lose={1000 + 2 * 5 + 1}, keyframes={0})
    assert h.requests == [False]  # given up on frame 5: a keyframe asked for
    asked_at = h.clock.now
    # the request was lost: delta frames keep coming, and no keyframe begins
    for index in range(13, 60):
        send_stream(h, range(index, index + 1))
        if h.clock.now - asked_at < 0.62:
            assert len(h.requests) == 1
    assert h.requests == [False, False, False]  # again at frame 31, and at frame 50
    assert h.buffer.keyframe_retries == 2
    send_stream(h, range(60, 62), keyframes={60})
    assert h.frames() == [0, 1, 2, 3, 4, 60, 61]
    send_stream(h, range(62, 120))  # not waiting any more: nothing asked for
    assert len(h.requests) == 3


def test_a_keyframe_that_began_to_arrive_is_not_asked_for_again() -> None:
    h = Harness(max_wait_s=0.2, rtt_s=0.21)
    send_stream(h, range(30), lose={1000 + 2 * 5 + 1}, keyframes={0})
    assert h.requests == [False]
    # frame 30 is the keyframe: its first packet came, its second only after a second
    keyframe = frame_packets(1000 + 2 * 30, 30, key=True)
    send_stream(h, range(30, 60), lose={keyframe[1].sequence_number}, keyframes={30})
    assert h.requests == [False]
    assert h.buffer.keyframe_retries == 0
    h.feed(keyframe[1])
    assert h.frames() == [0, 1, 2, 3, 4, 30]  # the frames after it leave with the next packets

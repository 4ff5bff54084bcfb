"""Redundant audio (RED, RFC 2198; issue #18): the block format, the receive side that fills an
upstream loss from the next packet, negotiation's ordering, and when a subscriber gets
redundancy. Pure functions and aiortc codec objects; no network."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest
from aiortc import RTCRtpCodecParameters

from media.adapter.bitstream import RED_MAX_BLOCK, RED_MAX_OFFSET, RedBlock, red_blocks, red_payload
from media.adapter.red import (
    RedEncoder,
    RedReceiveState,
    red_first,
    red_primary_type,
)
from media.bandwidth import AudioRedundancy, BandwidthSettings

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
RED = RTCRtpCodecParameters(
    mimeType="audio/red", clockRate=48000, channels=2, payloadType=63, parameters={"96/96": None}
)


def test_a_payload_with_two_earlier_frames_parses_back_oldest_first() -> None:
    payload = red_payload(111, b"third", 2880, [(960, b"first"), (1920, b"second")])
    assert red_blocks(payload, 2880) == [
        RedBlock(960, 111, b"first"),
        RedBlock(1920, 111, b"second"),
        RedBlock(2880, 111, b"third"),
    ]
    # headers: 4 bytes per redundant block, 1 for the primary
    assert len(payload) == 4 * 2 + 1 + len(b"firstsecondthird")


def test_primary_only_is_one_header_byte() -> None:
    assert red_payload(111, b"x", 0) == bytes([111]) + b"x"
    assert red_blocks(bytes([111]) + b"x", 5) == [RedBlock(5, 111, b"x")]


def test_timestamps_wrap_and_blocks_that_do_not_fit_the_header_are_left_out() -> None:
    payload = red_payload(111, b"now", 100, [(0xFFFFFFFF - 859, b"before")])
    assert red_blocks(payload, 100) == [
        RedBlock(0xFFFFFFFF - 859, 111, b"before"),
        RedBlock(100, 111, b"now"),
    ]
    too_old = red_payload(111, b"now", 100_000, [(100_000 - RED_MAX_OFFSET - 1, b"old")])
    too_big = red_payload(111, b"now", 960, [(0, b"x" * (RED_MAX_BLOCK + 1))])
    not_earlier = red_payload(111, b"now", 960, [(960, b"same")])
    for payload in (too_old, too_big, not_earlier):
        assert red_blocks(payload, 960) is not None
        assert [b.data for b in red_blocks(payload, 960) or []] == [b"now"]


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # no header at all
        bytes([0x80 | 111, 0, 0]),  # a redundant header cut short
        bytes([0x80 | 111]) + ((960 << 10) | 50).to_bytes(3, "big") + bytes([111]) + b"short",
    ],
)
def test_malformed_payloads_are_refused(payload: bytes) -> None:
    assert red_blocks(payload, 960) is None


def test_a_frame_lost_upstream_is_forwarded_from_the_next_packet_and_nothing_twice() -> None:
    state = RedReceiveState()

    def packet(ts: int) -> bytes:
        return red_payload(111, f"f{ts}".encode(), ts, [(ts - 960, f"f{ts - 960}".encode())])

    out = []
    for ts in (960, 1920, 3840, 4800):  # 2880's packet never arrives
        out += state.frames(RED, packet(ts), ts)
    # the first packet's redundant copy is of a frame from before this receiver started
    assert [ts for ts, _ in out] == [960, 1920, 2880, 3840, 4800]
    assert dict(out)[2880] == b"f2880"


def test_plain_opus_passes_through() -> None:
    state = RedReceiveState()
    assert state.frames(OPUS, b"a", 10) == [(10, b"a")]
    assert state.frames(OPUS, b"b", 970) == [(970, b"b")]
    assert state.frames(RED, b"", 1930) == []  # malformed: dropped, counted


def test_red_goes_first_numbered_as_the_remote_and_naming_the_opus_in_use() -> None:
    g722 = RTCRtpCodecParameters(mimeType="audio/G722", clockRate=8000, channels=1, payloadType=9)
    remote_red = RTCRtpCodecParameters(
        mimeType="audio/red", clockRate=48000, channels=2, payloadType=100
    )
    out = red_first([OPUS, RED, g722], [OPUS, remote_red])
    assert [c.mimeType for c in out] == ["audio/red", "audio/opus", "audio/G722"]
    assert out[0].payloadType == 100
    assert red_primary_type(out[0]) == 111
    assert RED.parameters == {"96/96": None}  # the table's own entry is not changed
    assert red_first([RED, g722]) == [g722]  # RED without Opus: nothing to carry


def test_the_encoder_repeats_as_many_earlier_frames_as_asked() -> None:
    encoder = RedEncoder(111)
    encoder.redundancy = 0
    sent = []
    for i in range(4):
        packet = av.Packet(f"frame{i}".encode())
        packet.pts = 960 * i
        packet.time_base = Fraction(1, 48000)
        if i == 2:
            encoder.redundancy = 2
        payloads, timestamp = encoder.pack(packet)
        assert timestamp == 960 * i
        sent.append(red_blocks(payloads[0], timestamp))
    assert [b.data for b in sent[1] or []] == [b"frame1"]
    assert [b.data for b in sent[2] or []] == [b"frame0", b"frame1", b"frame2"]
    assert [b.data for b in sent[3] or []] == [b"frame1", b"frame2", b"frame3"]


def test_redundancy_follows_the_subscribers_audio_loss_and_holds() -> None:
    settings = BandwidthSettings()
    red = AudioRedundancy()
    assert red.update(None, settings, 0.0) == 0
    assert red.update(0.005, settings, 1.0) == 0
    assert red.update(0.02, settings, 2.0) == 1  # up at once
    assert red.update(0.15, settings, 3.0) == 2
    assert red.update(0.02, settings, 4.0) == 2  # held
    assert red.update(0.02, settings, 3.0 + settings.red_hold_s) == 1
    assert red.update(0.0, settings, 4.0 + settings.red_hold_s) == 1
    assert red.update(0.0, settings, 3.0 + 2 * settings.red_hold_s) == 0

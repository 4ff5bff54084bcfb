"""Cutting an aiortc client's link in-process: its RTP/RTCP stops, ICE consent goes on.

For tests of what happens when a participant's network drops out for a few seconds without the
connection failing. The real thing (rate limits, delay, loss) is `tests/netshape.py`.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket


async def _drop(*args: Any, **kwargs: Any) -> None:
    return None


class LinkCut:
    """`up`: nothing the client sends (RTP and RTCP) leaves; `down`: nothing reaches it."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        transports = {t.sender.transport for t in pc.getTransceivers()}
        assert len(transports) == 1, "expected one bundled transport"
        self.transport: Any = transports.pop()

    def cut(self, *, up: bool = True, down: bool = False) -> None:
        if up:
            self.transport._send_rtp = _drop
        if down:
            self.transport._handle_rtp_data = _drop
            self.transport._handle_rtcp_data = _drop

    def restore(self) -> None:
        for name in ("_send_rtp", "_handle_rtp_data", "_handle_rtcp_data"):
            self.transport.__dict__.pop(name, None)


def ignore_remb(pc: RTCPeerConnection) -> None:
    """Make `pc`'s senders ignore REMB. aiortc's VP8 encoder restarts, with a keyframe, whenever
    the estimate moves its target bitrate by more than 10 %: tests that count keyframes
    asked for need a publisher that makes none by itself."""
    for sender in pc.getSenders():
        original = sender._handle_rtcp_packet

        def handle(packet: Any, original: Any = original) -> Any:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                return _drop()
            return original(packet)

        sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


class LossyUplink:
    """Drops every `nth` RTP packet the client sends (by sequence number); RTCP passes. For an
    audio-only client that is unrecovered loss (aiortc asks no NACK for audio)."""

    def __init__(self, pc: RTCPeerConnection, nth: int) -> None:
        self.link = LinkCut(pc)
        self.nth = nth
        self.dropped = 0

    def start(self) -> None:
        transport = self.link.transport
        original = type(transport)._send_rtp.__get__(transport)

        async def send(data: bytes) -> None:
            is_rtcp = len(data) > 1 and 192 <= data[1] <= 223
            if not is_rtcp and len(data) >= 4 and int.from_bytes(data[2:4], "big") % self.nth == 0:
                self.dropped += 1
                return None
            return await original(data)  # type: ignore[no-any-return]

        transport._send_rtp = send

    def clear(self) -> None:
        self.link.restore()


class LossyDownlink:
    """Drops every `nth` RTP packet that reaches the client (by sequence number, before its
    receivers see it); RTCP passes. `payloads` keeps what arrived per payload type."""

    def __init__(self, pc: RTCPeerConnection, nth: int) -> None:
        self.link = LinkCut(pc)
        self.nth = nth
        self.dropped = 0
        self.payloads: dict[int, list[bytes]] = {}

    def start(self) -> None:
        transport = self.link.transport
        original = type(transport)._handle_rtp_data.__get__(transport)

        async def handle(data: bytes, arrival_time_ms: int) -> None:
            if len(data) >= 12 and int.from_bytes(data[2:4], "big") % self.nth == 0:
                self.dropped += 1
                return None
            if len(data) >= 12:
                packet = RtpPacket.parse(data)
                self.payloads.setdefault(packet.payload_type, []).append(packet.payload)
            return await original(data, arrival_time_ms)  # type: ignore[no-any-return]

        transport._handle_rtp_data = handle

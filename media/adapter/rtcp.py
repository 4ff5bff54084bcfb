"""RTCP and header extensions on aiortc's senders and receivers: keyframe requests both ways,
the RFC 6464 audio level, a subscriber's congestion feedback (REMB, receiver reports) and the
Opus parameters the server asks for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiortc.codecs
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)


def on_keyframe_request(sender: Any, callback: Callable[[], None]) -> None:
    """Call `callback` when the subscriber behind this sender sends PLI or FIR."""
    sender._send_keyframe = callback


async def send_pli(receiver: Any) -> bool:
    """Ask the publisher behind `receiver` for a keyframe. False if no SSRC is known yet."""
    sources = receiver.getSynchronizationSources()
    if not sources:
        return False
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return True


def _rewrite_sent_rtcp(receiver: Any, rewrite: Callable[[Any], None]) -> None:
    """Let `rewrite(packet)` change each RTCP packet aiortc's `receiver` sends, in place."""
    original = receiver._send_rtcp

    async def send(packet: Any) -> None:
        rewrite(packet)
        await original(packet)

    receiver._send_rtcp = send


def floor_remb(receiver: Any, floor_bps: Callable[[], int | None]) -> None:
    """Never tell the publisher behind `receiver` (in aiortc's REMB) that its link takes less
    than `floor_bps()` (None: leave the estimate alone).

    For a publisher whose camera the server capped (`publish_limit`): aiortc's delay-based
    estimator lowers its figure to 0.85 × what arrives on every overuse it sees, and raises it at
    most to 1.5 × that; a cap makes what arrives small, each keyframe (the encoder switches
    resolution as its bitrate falls) looks like an overuse, and the publisher's own estimate
    ratchets down far below the cap (measured: 30 kbit/s under a 190 kbit/s cap on a clean
    link). The publisher's loss-based control still limits it on a link that really loses."""

    def rewrite(packet: Any) -> None:
        floor = floor_bps()
        if floor and isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if bitrate < floor:
                packet.fci = pack_remb_fci(floor, ssrcs)

    _rewrite_sent_rtcp(receiver, rewrite)


def floor_reported_loss(receiver: Any, floor: Callable[[], float]) -> None:
    """Report to the publisher behind `receiver` (in aiortc's receiver reports) at least
    `floor()` (0..1) of its packets lost.

    For a publisher's audio: its encoder adds Opus in-band FEC only when its receiver reports
    say packets are lost, but the SFU receives its audio clean and the loss happens on a
    subscriber's link, which the publisher never hears of. The floor is the worst loss its
    subscribers report on their audio (`media.congestion.audio_loss_floor`)."""

    def rewrite(packet: Any) -> None:
        if isinstance(packet, RtcpRrPacket):
            lost = min(max(int(floor() * 256), 0), 255)
            for report in packet.reports:
                report.fraction_lost = max(report.fraction_lost, lost)

    _rewrite_sent_rtcp(receiver, rewrite)


def observe_audio_level(receiver: Any, callback: Callable[[int], None]) -> None:
    """Call `callback(level_dbov)` (0 loudest, -127 silence) per RTP packet carrying the
    RFC 6464 ssrc-audio-level extension. Browsers and aiortc encoders send it."""
    original = receiver._handle_rtp_packet

    def handle(packet: Any, arrival_time_ms: int) -> Any:  # returns original's coroutine
        level = packet.extensions.audio_level
        if level is not None:
            callback(-int(level[1]))
        return original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle


def on_congestion_feedback(
    sender: Any,
    on_remb: Callable[[int, list[int]], None],
    on_report: Callable[[int, int, str, int, int], None],
) -> None:
    """Read what the subscriber behind `sender` reports about it: each REMB (aiortc 1.16 parses
    it only to retarget its own encoder, which the `pack()` path has not) as
    `on_remb(bitrate_bps, ssrcs)`, and each receiver report block about this sender's stream as
    `on_report(ssrc, fraction_lost, kind, packets_lost, highest_sequence)` (`fraction_lost` ×
    256, the cumulative count lost and the extended highest sequence received, RFC 3550
    §6.4.1). aiortc routes a
    REMB to every sender it names, so the same REMB may arrive once per named sender."""
    original = sender._handle_rtcp_packet

    def handle(packet: Any) -> Any:  # returns original's coroutine
        try:
            if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                for report in packet.reports:
                    if report.ssrc == sender._ssrc:
                        on_report(
                            report.ssrc,
                            report.fraction_lost,
                            sender.kind,
                            report.packets_lost,
                            report.highest_sequence,
                        )
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
                on_remb(bitrate, ssrcs)
        except ValueError:
            pass  # not a REMB (another application-layer feedback)
        return original(packet)

    sender._handle_rtcp_packet = handle


OPUS_FMTP = {"useinbandfec": 1, "usedtx": 1}


def enable_opus_fec_and_dtx() -> None:
    """Put `useinbandfec=1; usedtx=1` on aiortc's Opus codec, so every answer and offer the
    server makes asks senders for in-band FEC (a lost packet is concealed from the next one)
    and DTX (no packets in silence). aiortc copies the local codec's parameters into what it
    negotiates (`find_common_codecs`, `filter_preferred_codecs`). Process-wide; idempotent."""
    for codec in aiortc.codecs.CODECS["audio"]:
        if codec.mimeType.lower() == "audio/opus":
            codec.parameters = {**codec.parameters, **OPUS_FMTP}

"""RTCP and header extensions on aiortc's senders and receivers: keyframe requests both ways
and the RFC 6464 audio level."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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

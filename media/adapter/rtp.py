"""The RTP path's replacements: a cheaper `aiortc.clock`, and `RTCDtlsTransport._handle_rtp_data`
guarded so that nothing a remote party sends ends a transport's receive loop (see the package
docstring). Both are installed by `install_passthrough`."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiortc.clock
import aiortc.rtcdtlstransport
import aiortc.rtp

from media.adapter.internals import originals, stats

logger = logging.getLogger(__name__)

_NTP_UNIX_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01


def _fast_current_ntp_time() -> int:
    """aiortc.clock.current_ntp_time() (64-bit NTP, microsecond resolution), without datetime."""
    seconds, ns = divmod(time.time_ns(), 1_000_000_000)
    return ((seconds + _NTP_UNIX_OFFSET_S) << 32) | (((ns // 1000) << 32) // 1_000_000)


def _fast_current_ms() -> int:
    """aiortc.clock.current_ms(): milliseconds since the NTP epoch, without datetime."""
    return time.time_ns() // 1_000_000 + _NTP_UNIX_OFFSET_S * 1000


def install_fast_clock() -> None:
    """Replace aiortc.clock's two time functions (call with `install_lock` held)."""
    clock: Any = aiortc.clock
    if originals.clock is None:
        originals.clock = (clock.current_ntp_time, clock.current_ms)
        clock.current_ntp_time = _fast_current_ntp_time
        clock.current_ms = _fast_current_ms


# ---------------------------------------------------------------- malformed RTP

_last_malformed_log = 0.0
_NO_EXTENSIONS: Any = None  # an empty aiortc.rtp.HeaderExtensionsMap, made on first use


def _note_malformed(what: str, exc: BaseException, *, with_traceback: bool = False) -> None:
    global _last_malformed_log
    stats["rtp_malformed"] += 1
    now = time.monotonic()
    if now - _last_malformed_log > 10:  # at most one warning per 10 s, process-wide
        _last_malformed_log = now
        logger.warning(
            "%s (%d malformed RTP packets so far): %s: %s",
            what,
            stats["rtp_malformed"],
            type(exc).__name__,
            exc,
            exc_info=exc if with_traceback else None,
        )


async def _guarded_handle_rtp_data(self: Any, data: bytes, arrival_time_ms: int) -> None:
    """aiortc's RTCDtlsTransport._handle_rtp_data, but nothing a remote party sends can raise
    out of it. aiortc catches only ValueError from RtpPacket.parse (an ssrc-audio-level
    extension of the wrong size raises struct.error), and any exception here ends the
    transport's receive loop: that participant's whole bundled connection goes silent.

    A packet whose header extensions do not parse is kept without its extensions (routing
    uses SSRC and payload type only); a packet that does not parse at all, or whose handling
    fails, is dropped."""
    global _NO_EXTENSIONS
    try:
        packet = aiortc.rtp.RtpPacket.parse(data, self._rtp_header_extensions_map)
    except Exception as exc:  # remote input
        if _NO_EXTENSIONS is None:
            _NO_EXTENSIONS = aiortc.rtp.HeaderExtensionsMap()
        try:
            packet = aiortc.rtp.RtpPacket.parse(data, _NO_EXTENSIONS)
        except Exception as exc2:
            stats["rtp_dropped_malformed"] += 1
            _note_malformed("dropped an RTP packet that does not parse", exc2)
            return
        _note_malformed("ignored the header extensions of an RTP packet", exc)
    try:
        receiver = self._rtp_router.route_rtp(packet)
        if receiver is not None:
            await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)
    except Exception as exc:
        stats["rtp_dropped_malformed"] += 1
        _note_malformed("RTP packet handling failed, packet dropped", exc, with_traceback=True)


def install_rtp_guard() -> None:
    """Replace RTCDtlsTransport._handle_rtp_data class-wide (call with `install_lock` held)."""
    if originals.handle_rtp_data is None:
        transport: Any = aiortc.rtcdtlstransport.RTCDtlsTransport
        originals.handle_rtp_data = transport._handle_rtp_data
        transport._handle_rtp_data = _guarded_handle_rtp_data

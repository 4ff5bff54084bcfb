"""Every aiortc/aioice internal the passthrough SFU touches, in one place (aiortc pinned to 1.16.0).

What is replaced or used, and why:

- `aiortc.rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)` runs in the
  receiver's thread and decodes `(codec, JitterFrame)` tuples. `RTCRtpReceiver.receive()` looks
  it up at call time, so replacing the module attribute is enough. Our replacement checks whether
  `output_q` (the remote track's `_queue`) is a `PassthroughSink` installed by `attach_sink()` in
  the `track` event; if so it wraps each JitterFrame as an `av.Packet` (pts = RTP timestamp,
  time_base = 1/clockRate) and hands it to the sink on the event loop: no decode. Any other
  track gets the original decoder.
- `RTCRtpSender._send_keyframe()` is what an incoming PLI/FIR calls; on the `pack()` path it
  is a no-op, so `on_keyframe_request()` replaces it per sender instance.
- `RTCRtpReceiver._send_rtcp_pli(media_ssrc)` asks the publisher for a keyframe.
- `RTCRtpReceiver._handle_rtp_packet(packet, arrival_time_ms)` is wrapped per receiver instance
  to read the RFC 6464 audio-level header extension (cheaper than decoding Opus).
- `aioice.ice.get_host_addresses(use_ipv4, use_ipv6)` is replaced by `restrict_host_addresses()`.

`check_aiortc_internals()` verifies all of the above at start-up and raises
`AiortcInternalsChanged` naming what differs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import aioice.ice
import aiortc
import aiortc.codecs.opus
import aiortc.codecs.vpx
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import av

logger = logging.getLogger(__name__)

EXPECTED_AIORTC_VERSION = "1.16.0"

_original_decoder_worker: Callable[..., None] | None = None
_original_get_host_addresses: Callable[[bool, bool], list[str]] | None = None
_install_lock = threading.Lock()

# Counters: passthrough frames delivered without any codec call (read by tests and benches).
stats = {"passthrough_frames": 0, "decoded_frames_fallback": 0}


class AiortcInternalsChanged(RuntimeError):
    """The installed aiortc does not have the internals media/adapter.py relies on."""


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def check_aiortc_internals() -> None:
    """Raise AiortcInternalsChanged if aiortc/aioice differ from what this adapter expects."""
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    worker = _original_decoder_worker or aiortc.rtcrtpreceiver.decoder_worker
    expect(
        _params(worker) == ["loop", "input_q", "output_q", "decode_error"],
        "aiortc.rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)",
    )
    receive_src = inspect.getsource(aiortc.rtcrtpreceiver.RTCRtpReceiver.receive)
    expect(
        "target=decoder_worker" in receive_src and "self._track._queue" in receive_src,
        "RTCRtpReceiver.receive starts decoder_worker with self._track._queue",
    )
    expect(
        _params(aiortc.rtcrtpreceiver.RTCRtpReceiver._send_rtcp_pli) == ["self", "media_ssrc"],
        "RTCRtpReceiver._send_rtcp_pli(self, media_ssrc)",
    )
    expect(
        _params(aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet)
        == ["self", "packet", "arrival_time_ms"],
        "RTCRtpReceiver._handle_rtp_packet(self, packet, arrival_time_ms)",
    )
    expect(
        _params(aiortc.rtcrtpsender.RTCRtpSender._send_keyframe) == ["self"],
        "RTCRtpSender._send_keyframe(self)",
    )
    sender_src = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender._handle_rtcp_packet)
    expect("self._send_keyframe()" in sender_src, "RTCRtpSender handles PLI/FIR via _send_keyframe")
    next_src = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame)
    expect(".pack(data)" in next_src, "RTCRtpSender packs non-Frame data without encoding")
    track_src = inspect.getsource(aiortc.rtcrtpreceiver.RemoteStreamTrack.__init__)
    expect("self._queue" in track_src, "RemoteStreamTrack._queue")
    expect(
        hasattr(aiortc.codecs.vpx.Vp8Encoder, "pack")
        and hasattr(aiortc.codecs.opus.OpusEncoder, "pack"),
        "Vp8Encoder.pack / OpusEncoder.pack",
    )
    jf = (
        aiortc.rtcrtpreceiver.JitterFrame if hasattr(aiortc.rtcrtpreceiver, "JitterFrame") else None
    )
    if jf is None:
        from aiortc import jitterbuffer

        jf = jitterbuffer.JitterFrame
    expect(_params(jf.__init__)[1:3] == ["data", "timestamp"], "JitterFrame(data, timestamp)")
    srd_src = inspect.getsource(aiortc.rtcpeerconnection.RTCPeerConnection.setRemoteDescription)
    expect(
        "transceiver._codecs = common" in srd_src, "setRemoteDescription sets transceiver._codecs"
    )
    hosts = _original_get_host_addresses or aioice.ice.get_host_addresses
    expect(_params(hosts) == ["use_ipv4", "use_ipv6"], "aioice.ice.get_host_addresses(v4, v6)")
    if problems:
        raise AiortcInternalsChanged(
            f"aiortc {aiortc.__version__} (expected {EXPECTED_AIORTC_VERSION}) changed: "
            + "; ".join(problems)
        )
    if aiortc.__version__ != EXPECTED_AIORTC_VERSION:
        logger.warning(
            "aiortc %s is not the pinned %s; internals check passed",
            aiortc.__version__,
            EXPECTED_AIORTC_VERSION,
        )


# ---------------------------------------------------------------- passthrough receive side


class PassthroughSink(asyncio.Queue[Any]):
    """Stands in for RemoteStreamTrack._queue; marks the track as passthrough.

    It stays empty: frames go to `on_frame(packet, arrival_monotonic_s)` on the event loop;
    `on_end()` is called when the receiver stops. Subclassing asyncio.Queue keeps
    RemoteStreamTrack.recv() harmless if anything ever calls it.
    """

    def __init__(
        self,
        on_frame: Callable[[av.Packet[Any], float], None],
        on_end: Callable[[], None],
    ) -> None:
        super().__init__(maxsize=1)
        self.on_frame = on_frame
        self.on_end = on_end


def attach_sink(track: Any, sink: PassthroughSink) -> None:
    """Mark a remote track for passthrough. Call in the pc's `track` event (before receive())."""
    track._queue = sink


def _passthrough_worker(
    loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any], sink: PassthroughSink
) -> None:
    time_bases: dict[int, Fraction] = {}
    while True:
        task = input_q.get()
        if task is None:
            loop.call_soon_threadsafe(sink.on_end)
            return
        codec, encoded_frame = task
        time_base = time_bases.get(codec.clockRate)
        if time_base is None:
            time_base = time_bases[codec.clockRate] = Fraction(1, codec.clockRate)
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.dts = encoded_frame.timestamp
        packet.time_base = time_base
        stats["passthrough_frames"] += 1
        try:
            loop.call_soon_threadsafe(sink.on_frame, packet, time.monotonic())
        except RuntimeError:  # loop closed while a receiver was still draining
            return


def _decoder_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any],
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    if isinstance(output_q, PassthroughSink):
        _passthrough_worker(loop, input_q, output_q)
        return
    assert _original_decoder_worker is not None
    stats["decoded_frames_fallback"] += 1
    _original_decoder_worker(loop, input_q, output_q, decode_error)


def install_passthrough() -> None:
    """Check the internals and install the decoder_worker hook. Idempotent; call before peers."""
    global _original_decoder_worker
    with _install_lock:
        check_aiortc_internals()
        if _original_decoder_worker is None:
            _original_decoder_worker = aiortc.rtcrtpreceiver.decoder_worker
            aiortc.rtcrtpreceiver.decoder_worker = _decoder_worker


# ---------------------------------------------------------------- RTCP and header extensions


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

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        level = packet.extensions.audio_level
        if level is not None:
            callback(-int(level[1]))
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle


# ---------------------------------------------------------------- codecs


def video_codec_preferences(codec: str) -> list[Any]:
    """RTCRtpCodecCapability list for setCodecPreferences: VP8 or H.264 constrained baseline."""
    caps = aiortc.RTCRtpSender.getCapabilities("video").codecs
    if codec == "vp8":
        chosen = [c for c in caps if c.mimeType.lower() == "video/vp8"]
    elif codec == "h264":
        chosen = [
            c
            for c in caps
            if c.mimeType.lower() == "video/h264"
            and str(c.parameters.get("profile-level-id", "")).startswith("42e0")
        ]
    else:
        raise ValueError(f"unsupported video codec {codec!r}")
    chosen += [c for c in caps if c.mimeType.lower() == "video/rtx"]
    return chosen


def audio_codec_preferences() -> list[Any]:
    caps = aiortc.RTCRtpSender.getCapabilities("audio").codecs
    return [c for c in caps if c.mimeType.lower() == "audio/opus"]


def is_keyframe(codec: str, data: bytes) -> bool:
    """VP8: bit 0 of the first byte is 0. H.264 (Annex B from aiortc): an IDR or SPS NAL unit."""
    if not data:
        return False
    if codec == "vp8":
        return data[0] & 1 == 0
    if codec == "h264":
        i = 0
        n = len(data)
        while i + 3 < n:
            if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
                nal_type = data[i + 3] & 0x1F
                if nal_type in (5, 7):
                    return True
                i += 3
            else:
                i += 1
        return False
    return True


def vp8_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1), or None."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


# ---------------------------------------------------------------- network


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Gather host candidates only on these addresses (127.0.0.1 included if listed).

    Replaces `aioice.ice.get_host_addresses`, which otherwise lists every interface and skips
    127.0.0.1. Process-wide; call before any RTCPeerConnection gathers. An empty list restores
    aioice's default. aioice binds each candidate socket to port 0 (an ephemeral port) and has no
    port-range parameter; see docs/media.md.
    """
    global _original_get_host_addresses
    with _install_lock:
        if _original_get_host_addresses is None:
            _original_get_host_addresses = aioice.ice.get_host_addresses
        if not addresses:
            aioice.ice.get_host_addresses = _original_get_host_addresses  # type: ignore[assignment]
            return
        wanted = list(addresses)

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [a for a in wanted if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

        aioice.ice.get_host_addresses = get_host_addresses


def pin_negotiated_codecs(transceiver: Any, allowed: Sequence[Any]) -> bool:
    """Restrict a transceiver created by setRemoteDescription(offer) to `allowed` capabilities.

    aiortc computes `transceiver._codecs` inside setRemoteDescription, before any public
    setCodecPreferences call could apply to a transceiver it creates there; the answer is built
    from `_codecs`. Returns False when nothing allowed is left (no supported codec).
    """

    def matches(codec: Any, cap: Any) -> bool:
        if codec.mimeType.lower() != cap.mimeType.lower() or codec.clockRate != cap.clockRate:
            return False
        if codec.mimeType.lower() == "video/h264":
            want = str(cap.parameters.get("profile-level-id", ""))[:4]
            got = str(codec.parameters.get("profile-level-id", ""))[:4]
            return want == got and codec.parameters.get("packetization-mode") == cap.parameters.get(
                "packetization-mode"
            )
        return True

    primary = [
        c
        for c in transceiver._codecs
        if c.mimeType.lower() != f"{transceiver.kind}/rtx"
        and any(matches(c, cap) for cap in allowed if not cap.mimeType.lower().endswith("/rtx"))
    ]
    kept_pts = {c.payloadType for c in primary}
    rtx = [
        c
        for c in transceiver._codecs
        if c.mimeType.lower() == f"{transceiver.kind}/rtx" and c.parameters.get("apt") in kept_pts
    ]
    transceiver._codecs = primary + rtx
    return bool(primary)

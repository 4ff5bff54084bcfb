"""The passthrough receive side: a remote track whose frame queue is a `PassthroughSink` gets
its encoded frames as `av.Packet`s on the event loop, with no decoding and no thread hop
(`install_passthrough` replaces aiortc's `decoder_worker`; see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aiortc.rtcrtpreceiver
import av

from media.adapter.bitstream import TemporalLayer
from media.adapter.internals import check_aiortc_internals, install_lock, originals, stats
from media.adapter.red import FORWARDED_AUDIO, RedReceiveState, enable_red
from media.adapter.rtcp import enable_opus_fec_and_dtx
from media.adapter.rtp import install_fast_clock, install_rtp_guard

logger = logging.getLogger(__name__)


class PassthroughSink(asyncio.Queue[Any]):
    """Stands in for RemoteStreamTrack._queue; marks the track as passthrough.

    It stays empty: frames go to `on_frame(packet, arrival_monotonic_s, layer)` on the event
    loop, `layer` being the VP8 frame's `TemporalLayer` (RFC 7741 TID and Y bit, read from the
    frame's first packet by `LossTolerantVideo`) or None (no TID: audio, H.264, VP8 without
    temporal layers); `on_end()` is called when the receiver stops. Subclassing asyncio.Queue keeps
    RemoteStreamTrack.recv() harmless if anything ever calls it.
    """

    def __init__(
        self,
        on_frame: Callable[[av.Packet[Any], float, TemporalLayer | None], None],
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
    """Runs in the receiver's decoder thread, once: it switches the receiver's frame queue to
    inline delivery on the event loop and exits.

    `RTCRtpReceiver._handle_rtp_packet` (event loop) puts each complete frame on `input_q`
    (a `queue.Queue`). A thread hop per frame costs a `Condition.notify`, a GIL handover, a
    `call_soon_threadsafe` self-pipe write and one thread per receiver; profiled in a room of 8
    it was the largest single cost of the SFU worker. Instead `input_q.put` is replaced on the
    instance by `_InlineDelivery`, which wraps the frame and calls the sink right there. The
    switch happens on the event loop, after handing over (in order) whatever was queued before
    it, so frame order is kept. The receiver's `__stop_decoder` puts None and joins the thread:
    the None ends the sink, and joining a finished thread returns at once.
    """
    delivery = _InlineDelivery(loop, sink)

    def switch() -> None:  # event loop: every put so far is in input_q, in order
        while True:
            try:
                task = input_q.get_nowait()
            except queue.Empty:
                break
            delivery.put(task)
        input_q.put = delivery.put  # type: ignore[method-assign,assignment]

    with contextlib.suppress(RuntimeError):  # loop closed while a receiver was starting
        loop.call_soon_threadsafe(switch)


class _InlineDelivery:
    """`queue.Queue.put` stand-in for a passthrough receiver: called on the event loop by
    `RTCRtpReceiver._handle_rtp_packet` with `(codec, JitterFrame)`, or None at the end."""

    __slots__ = ("audio", "ended", "loop", "sink", "time_bases")

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: PassthroughSink) -> None:
        self.loop = loop
        self.sink = sink
        self.ended = False
        self.time_bases: dict[int, Fraction] = {}
        self.audio: RedReceiveState | None = None  # audio: RED blocks, upstream loss repaired

    def put(self, task: Any, block: bool = True, timeout: float | None = None) -> None:
        if self.ended:
            return
        if task is None:
            self.ended = True
            self.loop.call_soon(self.sink.on_end)
            return
        codec, encoded_frame = task
        time_base = self.time_bases.get(codec.clockRate)
        if time_base is None:
            time_base = self.time_bases[codec.clockRate] = Fraction(1, codec.clockRate)
        if codec.mimeType.lower() in FORWARDED_AUDIO:
            if self.audio is None:
                self.audio = RedReceiveState()
            frames = self.audio.frames(codec, encoded_frame.data, encoded_frame.timestamp)
        else:
            frames = [(encoded_frame.timestamp, encoded_frame.data)]
        layer = getattr(encoded_frame, "layer", None)
        for timestamp, data in frames:
            packet = av.Packet(data)
            packet.pts = packet.dts = timestamp
            packet.time_base = time_base
            stats["passthrough_frames"] += 1
            try:
                self.sink.on_frame(packet, time.monotonic(), layer)
            except Exception:  # a sink bug must not look like a malformed RTP packet
                logger.exception("passthrough sink failed on a frame")


def _decoder_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any],
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    if isinstance(output_q, PassthroughSink):
        _passthrough_worker(loop, input_q, output_q)
        return
    assert originals.decoder_worker is not None
    stats["decoded_frames_fallback"] += 1
    originals.decoder_worker(loop, input_q, output_q, decode_error)


def install_passthrough() -> None:
    """Check the internals and install the decoder_worker hook, the RTP guard, the Opus
    FEC/DTX parameters and RED (`media/adapter/red.py`). Idempotent; call before peers."""
    with install_lock:
        if not originals.internals_checked:
            check_aiortc_internals()
            originals.internals_checked = True
        if originals.decoder_worker is None:
            originals.decoder_worker = aiortc.rtcrtpreceiver.decoder_worker
            aiortc.rtcrtpreceiver.decoder_worker = _decoder_worker
        install_fast_clock()
        install_rtp_guard()
        enable_opus_fec_and_dtx()
        enable_red()


def received_counts(receiver: Any) -> tuple[int, int]:
    """RTP packets `receiver` expected (sequence-number span, wraps included) and received
    (RTX repairs included) so far, over all its remote streams: aiortc's per-SSRC
    `StreamStatistics` in `RTCRtpReceiver.__remote_streams`. (0, 0) before the first packet."""
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None) or {}
    expected = received = 0
    for stream in list(streams.values()):
        expected += stream.packets_expected
        received += stream.packets_received
    return expected, received

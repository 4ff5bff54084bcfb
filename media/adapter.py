"""Every aiortc/aioice internal the passthrough SFU touches, in one place (aiortc pinned to 1.16.0).

What is replaced or used, and why:

- `aiortc.rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)` runs in the
  receiver's thread and decodes `(codec, JitterFrame)` tuples. `RTCRtpReceiver.receive()` looks
  it up at call time, so replacing the module attribute is enough. Our replacement checks whether
  `output_q` (the remote track's `_queue`) is a `PassthroughSink` installed by `attach_sink()` in
  the `track` event; if so it replaces `put` on that receiver's `input_q` instance (the
  `queue.Queue` that `_handle_rtp_packet` fills from the event loop) so that each JitterFrame is
  wrapped as an `av.Packet` (pts = RTP timestamp, time_base = 1/clockRate) and handed to the
  sink right there, on the event loop, and the thread exits: no decode and no thread hop. Any
  other track gets the original decoder.
- `RTCRtpSender._send_keyframe()` is what an incoming PLI/FIR calls; on the `pack()` path it
  is a no-op, so `on_keyframe_request()` replaces it per sender instance.
- `RTCRtpReceiver._send_rtcp_pli(media_ssrc)` asks the publisher for a keyframe.
- `RTCRtpReceiver._handle_rtp_packet(packet, arrival_time_ms)` is wrapped per receiver instance
  to read the RFC 6464 audio-level header extension (cheaper than decoding Opus).
- `aioice.ice.get_host_addresses(use_ipv4, use_ipv6)` is replaced by `restrict_host_addresses()`.
- `RTCPeerConnection.createOffer()` resets every transceiver's codecs and header extensions to
  aiortc's defaults (`aiortc.rtcpeerconnection.CODECS` / `HEADER_EXTENSIONS`, opus=96, VP8=97,
  mid=1, audio-level=2, abs-send-time=3) before building the offer, even for m-lines already
  negotiated with other numbers. A renegotiation offer then renumbers what the browser
  negotiated (Chrome: opus=111, VP8=96, rtx=97, its own extension ids): Chrome refuses changed
  extension ids, and accepts changed payload types but then sends VP8 as PT 97, which the
  server's already started receiver takes for RTX. `create_offer(pc)` swaps in per-connection
  tables built from what was negotiated for the duration of the (fully synchronous) call.
- `RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)` is replaced (class-wide) so that
  nothing a remote party sends ends the transport's receive loop: aiortc 1.16 raises
  `struct.error` for an ssrc-audio-level extension of the wrong length, which killed the whole
  bundled connection. Such a packet is kept without its header extensions; one that does not
  parse at all, or whose handling raises, is dropped (counted in `stats`).

- `RTCRtpReceiver.__jitter_buffer` (an `aiortc.jitterbuffer.JitterBuffer`) is replaced per
  passthrough receiver by `complete_frames_early()`. aiortc's buffer hands a frame over only when
  a packet of the *next* frame arrives (and holds audio back 4 packets more): through the SFU
  that is one frame interval of added video latency (66 ms at 15 fps) and 80-100 ms of audio.
  The replacement completes a video frame at its RTP marker bit (the last packet of a frame,
  RFC 7741 / RFC 6184) when every packet from the buffer's origin to it is present, and passes
  each Opus packet (one frame per packet) on as it arrives, dropping late duplicates. Its
  `add(packet) -> (pli_flag, frame | None)` contract and loss handling are aiortc's.
- For video, `LossTolerantVideo` (see `loss_tolerant_video()`) replaces that buffer instead: a
  packet that NACK/RTX does not recover within about two round trips no longer holds back every
  later frame (aiortc's buffer waits until 512 newer packets push the gap out); the incomplete
  frames are dropped and output resumes at the next keyframe. The round trip is aiortc's
  `RTCRtpSender.__rtt` (from receiver reports) on the same connection.
- `RTCRtpSender._handle_rtcp_packet(packet)` is wrapped per subscriber sender by
  `on_link_back()` to notice RTCP resuming after the subscriber's link was down.
- `aiortc.clock.current_ntp_time()` and `current_ms()` are replaced (module attributes, read
  at call time as `clock.current_ntp_time()`) by equivalents computed from `time.time_ns()`
  instead of `datetime.now(utc) - NTP_EPOCH`: every sent RTP packet calls `current_ntp_time()`
  twice (abs-send-time, SR bookkeeping) and every received one `current_ms()`; profiled in a
  room of 8 the datetime arithmetic was about 6% of the SFU worker.

`check_aiortc_internals()` verifies all of the above at start-up and raises
`AiortcInternalsChanged` naming what differs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
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
import aiortc.clock
import aiortc.codecs.opus
import aiortc.codecs.vpx
import aiortc.jitterbuffer
import aiortc.rtcdtlstransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtp
import av

logger = logging.getLogger(__name__)

EXPECTED_AIORTC_VERSION = "1.16.0"

_original_decoder_worker: Callable[..., None] | None = None
_original_get_host_addresses: Callable[[bool, bool], list[str]] | None = None
_original_handle_rtp_data: Callable[..., Any] | None = None
_original_clock: tuple[Callable[[], int], Callable[[], int]] | None = None
_install_lock = threading.Lock()
#: The internals passed `check_aiortc_internals` in this process (they cannot change in it).
#: Checked once: the check parses aiortc's source, and on Python 3.11 `ast.parse` fails now
#: and then with a spurious "AST constructor recursion depth mismatch" when another thread
#: parses at the same time (CPython gh-106905; 3.11's traceback formatting parses too). It
#: failed a node's creation once in a loaded test run.
_internals_checked = False

# Counters: passthrough frames delivered without any codec call (read by tests and benches).
stats = {
    "passthrough_frames": 0,
    "decoded_frames_fallback": 0,
    "rtp_malformed": 0,  # RTP packets whose header or extensions did not parse
    "rtp_dropped_malformed": 0,  # of those, dropped (the rest kept without extensions)
}


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
    receiver_cls: Any = aiortc.rtcrtpreceiver.RTCRtpReceiver
    expect(
        "self.__decoder_queue," in receive_src
        and "self.__decoder_queue.put((codec, encoded_frame))"
        in inspect.getsource(receiver_cls._handle_rtp_packet)
        and "self.__decoder_queue.put(None)"
        in inspect.getsource(receiver_cls._RTCRtpReceiver__stop_decoder),
        "RTCRtpReceiver puts frames and the final None on the decoder_worker's input_q"
        " (a queue.Queue) from the event loop",
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
    offer_src = inspect.getsource(aiortc.rtcpeerconnection.RTCPeerConnection.createOffer)
    expect(
        "CODECS[transceiver.kind]" in offer_src
        and "HEADER_EXTENSIONS[transceiver.kind]" in offer_src
        and "await" not in offer_src,
        "RTCPeerConnection.createOffer is synchronous and reads CODECS/HEADER_EXTENSIONS",
    )
    handle_src = inspect.getsource(
        _original_handle_rtp_data or aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtp_data
    )
    expect(
        "RtpPacket.parse(data, self._rtp_header_extensions_map)" in handle_src
        and "self._rtp_router.route_rtp(packet)" in handle_src,
        "RTCDtlsTransport._handle_rtp_data parses with the header extension map and routes",
    )
    clock: Any = aiortc.clock
    expect(
        _params(_original_clock[0] if _original_clock else clock.current_ntp_time) == []
        and _params(_original_clock[1] if _original_clock else clock.current_ms) == []
        and datetime.datetime(1900, 1, 1, tzinfo=datetime.UTC) == clock.NTP_EPOCH
        and "clock.current_ntp_time()"
        in inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender._run_rtp)
        and "clock.current_ms()" in inspect.getsource(aiortc.rtcdtlstransport.RTCDtlsTransport),
        "aiortc.clock.current_ntp_time()/current_ms() (NTP epoch 1900), called as clock.*()",
    )
    jb: Any = aiortc.jitterbuffer.JitterBuffer
    expect(
        _params(jb.add) == ["self", "packet"]
        and _params(jb.remove) == ["self", "count"]
        and all(
            f"self.{name}" in inspect.getsource(jb) for name in ("_origin", "_packets", "_capacity")
        )
        and "self.__jitter_buffer.add(packet)" in inspect.getsource(receiver_cls._handle_rtp_packet)
        and "self.__jitter_buffer = JitterBuffer(" in inspect.getsource(receiver_cls.__init__),
        "RTCRtpReceiver.__jitter_buffer: JitterBuffer(_origin, _packets, _capacity, add, remove)",
    )
    expect(
        "self.__nack_generator = NackGenerator()" in inspect.getsource(receiver_cls.__init__)
        and "self.missing: set[int]"
        in inspect.getsource(aiortc.rtcrtpreceiver.NackGenerator.__init__),
        "RTCRtpReceiver.__nack_generator: NackGenerator with a `missing` set of sequence numbers",
    )
    sender_cls: Any = aiortc.rtcrtpsender.RTCRtpSender
    expect(
        _params(sender_cls._handle_rtcp_packet) == ["self", "packet"]
        and "recipient._handle_rtcp_packet(packet)"
        in inspect.getsource(aiortc.rtcdtlstransport.RTCDtlsTransport)
        and "self.__rtt" in inspect.getsource(sender_cls.__init__),
        "RTCRtpSender._handle_rtcp_packet(self, packet) called per recipient; RTCRtpSender.__rtt",
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


class _MarkerCompletedVideo(aiortc.jitterbuffer.JitterBuffer):
    """aiortc's video buffer, but a frame is complete at its marker bit, not at the next frame."""

    def __init__(self) -> None:
        super().__init__(capacity=512, is_video=True)  # aiortc's own video capacity
        self._highest: int | None = None

    def add(self, packet: Any) -> tuple[bool, Any]:
        pli_flag, frame = super().add(packet)
        seq = packet.sequence_number
        filled_gap = self._highest is not None and _seq_before(seq, self._highest)
        if not filled_gap:
            self._highest = seq
        if frame is None and (packet.marker or filled_gap):
            frame = self._take_marked_frame()
        return pli_flag, frame

    def _take_marked_frame(self) -> Any:
        """The frame at the origin if all of its packets, up to a marked one, are here."""
        origin = self._origin
        if origin is None:
            return None
        packets: list[Any] = []
        timestamp = None
        for count in range(self._capacity):
            packet = self._packets[(origin + count) % self._capacity]
            if packet is None or (timestamp is not None and packet.timestamp != timestamp):
                return None
            timestamp = packet.timestamp
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return aiortc.jitterbuffer.JitterFrame(
                    data=b"".join(p._data for p in packets), timestamp=timestamp
                )
        return None


class _ImmediateAudio(aiortc.jitterbuffer.JitterBuffer):
    """Each Opus RTP packet is a whole frame: pass it on at once; drop late or repeated ones."""

    def __init__(self) -> None:
        super().__init__(capacity=16)

    def add(self, packet: Any) -> tuple[bool, Any]:
        seq = packet.sequence_number
        if self._origin is not None and _seq_before(seq, self._origin):
            return False, None
        self._origin = (seq + 1) & 0xFFFF
        return False, aiortc.jitterbuffer.JitterFrame(data=packet._data, timestamp=packet.timestamp)


def _seq_before(seq: int, reference: int) -> bool:
    """`seq` is up to MAX_MISORDER packets before `reference` (RTP sequence numbers wrap)."""
    behind = (reference - seq) & 0xFFFF
    return 0 < behind <= aiortc.jitterbuffer.MAX_MISORDER


def early_frame_buffer(kind: str) -> aiortc.jitterbuffer.JitterBuffer:
    """A reassembly buffer that hands a frame over as soon as it is complete (see top)."""
    return _ImmediateAudio() if kind == "audio" else _MarkerCompletedVideo()


def complete_frames_early(receiver: Any, kind: str) -> None:
    """Give a passthrough receiver an `early_frame_buffer` (before its first packet)."""
    receiver._RTCRtpReceiver__jitter_buffer = early_frame_buffer(kind)


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

    __slots__ = ("ended", "loop", "sink", "time_bases")

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: PassthroughSink) -> None:
        self.loop = loop
        self.sink = sink
        self.ended = False
        self.time_bases: dict[int, Fraction] = {}

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
        packet = av.Packet(encoded_frame.data)
        packet.pts = packet.dts = encoded_frame.timestamp
        packet.time_base = time_base
        stats["passthrough_frames"] += 1
        try:
            self.sink.on_frame(packet, time.monotonic())
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
    assert _original_decoder_worker is not None
    stats["decoded_frames_fallback"] += 1
    _original_decoder_worker(loop, input_q, output_q, decode_error)


def install_passthrough() -> None:
    """Check the internals and install the decoder_worker hook and the RTP guard. Idempotent;
    call before peers."""
    global _original_decoder_worker, _original_handle_rtp_data, _internals_checked
    with _install_lock:
        if not _internals_checked:
            check_aiortc_internals()
            _internals_checked = True
        if _original_decoder_worker is None:
            _original_decoder_worker = aiortc.rtcrtpreceiver.decoder_worker
            aiortc.rtcrtpreceiver.decoder_worker = _decoder_worker
        _install_fast_clock()
        if _original_handle_rtp_data is None:
            _original_handle_rtp_data = aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtp_data
            aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtp_data = _guarded_handle_rtp_data  # type: ignore[method-assign]


# ---------------------------------------------------------------- clock

_NTP_UNIX_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01


def _fast_current_ntp_time() -> int:
    """aiortc.clock.current_ntp_time() (64-bit NTP, microsecond resolution), without datetime."""
    seconds, ns = divmod(time.time_ns(), 1_000_000_000)
    return ((seconds + _NTP_UNIX_OFFSET_S) << 32) | (((ns // 1000) << 32) // 1_000_000)


def _fast_current_ms() -> int:
    """aiortc.clock.current_ms(): milliseconds since the NTP epoch, without datetime."""
    return time.time_ns() // 1_000_000 + _NTP_UNIX_OFFSET_S * 1000


def _install_fast_clock() -> None:
    global _original_clock
    clock: Any = aiortc.clock
    if _original_clock is None:
        _original_clock = (clock.current_ntp_time, clock.current_ms)
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


# ---------------------------------------------------------------- renegotiation offers


def _negotiated_tables(
    pc: Any,
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]] | None:
    """Codec and header extension tables for `pc`'s next offer, numbered as already negotiated.

    Codecs per kind: those negotiated on the first m-line of that kind (aiortc keeps its own
    codec parameters and the remote's dynamic payload types there); a kind never negotiated
    gets aiortc's defaults moved off payload types the other kind uses (one BUNDLE shares the
    payload type space in Chrome). Header extensions: aiortc's per kind, with the id already
    negotiated for that uri on any m-line (BUNDLE shares the id space), else a free id.
    None when nothing was negotiated yet (then aiortc's defaults are right).
    """
    module: Any = aiortc.rtcpeerconnection
    negotiated: dict[str, list[Any]] = {}
    ext_ids: dict[str, int] = {}
    for transceiver in pc.getTransceivers():
        if transceiver.mid is None or transceiver.currentDirection is None:
            continue
        if transceiver.kind not in negotiated and transceiver._codecs:
            negotiated[transceiver.kind] = [copy.deepcopy(c) for c in transceiver._codecs]
        for ext in transceiver._headerExtensions:
            ext_ids.setdefault(ext.uri, ext.id)
    if not negotiated:
        return None
    codecs: dict[str, list[Any]] = {}
    used = {c.payloadType for table in negotiated.values() for c in table}
    for kind in ("audio", "video"):
        if kind in negotiated:
            codecs[kind] = negotiated[kind]
            continue
        remap: dict[int, int] = {}
        table = []
        free = (pt for pt in aiortc.rtp.DYNAMIC_PAYLOAD_TYPES if pt not in used)
        for codec in module.CODECS[kind]:
            codec = copy.deepcopy(codec)
            if codec.payloadType in aiortc.rtp.DYNAMIC_PAYLOAD_TYPES and codec.payloadType in used:
                new = next(free, None)
                if new is None:
                    continue
                used.add(new)
                remap[codec.payloadType] = new
                codec.payloadType = new
            table.append(codec)
        for codec in table:
            apt = codec.parameters.get("apt")
            if apt in remap:
                codec.parameters = {**codec.parameters, "apt": remap[apt]}
        codecs[kind] = table
    taken = set(ext_ids.values())
    extensions: dict[str, list[Any]] = {}
    for kind, defaults in module.HEADER_EXTENSIONS.items():
        extensions[kind] = []
        for ext in defaults:
            ext_id = ext_ids.get(ext.uri)
            if ext_id is None:
                ext_id = next((i for i in range(1, 15) if i not in taken), None)
                if ext_id is None:
                    continue
                taken.add(ext_id)
                ext_ids[ext.uri] = ext_id
            extensions[kind].append(aiortc.RTCRtpHeaderExtensionParameters(id=ext_id, uri=ext.uri))
    return codecs, extensions


async def create_offer(pc: Any) -> Any:
    """`pc.createOffer()` that keeps the payload types and header extension ids negotiated so
    far (see the module docstring); new m-lines get the same numbering."""
    tables = _negotiated_tables(pc)
    if tables is None:
        return await pc.createOffer()
    module: Any = aiortc.rtcpeerconnection
    saved = (module.CODECS, module.HEADER_EXTENSIONS)
    module.CODECS, module.HEADER_EXTENSIONS = tables
    try:
        # createOffer has no await (checked at start-up): the swap is invisible to other peers.
        return await pc.createOffer()
    finally:
        module.CODECS, module.HEADER_EXTENSIONS = saved


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

    def handle(packet: Any, arrival_time_ms: int) -> Any:  # returns original's coroutine
        level = packet.extensions.audio_level
        if level is not None:
            callback(-int(level[1]))
        return original(packet, arrival_time_ms)

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


# ---------------------------------------------------------------- loss-tolerant video reassembly
#
# Replaces `_MarkerCompletedVideo` for passthrough video (see `loss_tolerant_video`). Kept apart
# from the rest of the adapter so it can move on its own; it touches no aiortc internals beyond
# what `complete_frames_early` already does (the receiver's `__jitter_buffer` attribute, the
# `add(packet) -> (pli_flag, JitterFrame | None)` contract, `RtpPacket` fields and `_data`).

#: Shortest and longest wait for a missing packet once the frames after it are complete.
LOSS_WAIT_MIN_S = 0.1
LOSS_WAIT_MAX_S = 1.0
#: Round trip assumed before one is measured.
DEFAULT_RTT_S = 0.1
#: No video packet from a publisher for this long, then one: its link was down.
RESUME_AFTER_S = 0.5
_REASSEMBLY_CAPACITY = 512  # packets held at most (aiortc's video capacity)
_MAX_MISORDER = 100  # aiortc.jitterbuffer.MAX_MISORDER: further back means a new sequence
_MAX_TRACKED_GAP = 64  # longer runs of missing packets are an outage, not a loss to time


def loss_wait_s(rtt_s: float | None) -> float:
    """How long a frame waits for a retransmission: two round trips, within bounds."""
    rtt = DEFAULT_RTT_S if rtt_s is None else rtt_s
    return min(LOSS_WAIT_MAX_S, max(LOSS_WAIT_MIN_S, 2 * rtt))


def vp8_starts_frame(payload: bytes) -> bool:
    """RFC 7741 §4.2: S bit set and partition index 0 is the first packet of a frame."""
    return len(payload) > 0 and payload[0] & 0x17 == 0x10


def h264_starts_keyframe(payload: bytes) -> bool:
    """RFC 6184: a STAP-A, an SPS, or the first fragment (FU-A) of an IDR slice."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7, 24):
        return True
    return (
        nal_type == 28
        and len(payload) > 1
        and bool(payload[1] & 0x80)
        and payload[1] & 0x1F in (5, 7)
    )


class LossTolerantVideo:
    """Video reassembly that never waits for a lost packet longer than a bound.

    Like `_MarkerCompletedVideo`, a frame leaves at its marker bit (or when the next frame
    begins) once every packet of it is present, in order. Unlike aiortc's buffer, a gap does
    not hold back every later frame until 512 newer packets push it out:

    - The wait for a missing packet starts once the frame holding it is otherwise over (a
      marked packet after the gap has arrived): a keyframe that takes a second to cross a slow
      uplink is not cut short while its own packets still arrive. After `wait_s()`
      (`loss_wait_s` of the round trip, or longer if retransmissions were seen to take longer,
      at most LOSS_WAIT_MAX_S) the incomplete frame(s) are dropped, `on_keyframe_needed
      (False)` asks for a keyframe (the caller throttles), and nothing is handed over until a
      complete keyframe: a subscriber's decoder never sees a frame that refers to a dropped one.
    - While a keyframe is awaited, frames before a keyframe that has started arriving are
      dropped at once, so output resumes as soon as that keyframe is complete.
    - Packets of frames already handed over or dropped (late retransmissions, duplicates) are
      discarded.
    - The first packet after `RESUME_AFTER_S` of silence with packets missing before it (the
      publisher's link was down) drops
      whatever was held, waits for a keyframe and asks for one with `on_keyframe_needed(True)`:
      at once, not throttled.

    `clock()` is monotonic seconds (tests inject their own). `add` only ever returns
    `pli_flag=False`: keyframe requests go through `on_keyframe_needed`, which the SFU throttles.
    """

    def __init__(
        self,
        codec: str,
        *,
        on_keyframe_needed: Callable[[bool], None] | None = None,
        max_wait_s: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        nack_missing: set[int] | None = None,
    ) -> None:
        self.codec = codec
        # the receiver's NackGenerator.missing: packets given up on are no longer asked for
        self._nack_missing = nack_missing
        self._on_keyframe_needed = on_keyframe_needed
        self._max_wait_s = max_wait_s or (lambda: loss_wait_s(None))
        self._clock = clock
        self._packets: dict[int, Any] = {}  # extended sequence number -> RtpPacket
        self._next: int | None = None  # extended seq of the first packet not handed over
        self._highest = 0  # highest extended seq seen
        self._last_marker = -1  # highest extended seq of a stored marked packet
        self._before_next: Any = None  # the packet at _next - 1, if it was seen
        self._blocked_since: float | None = None
        self._last_arrival: float | None = None
        self._gap_seen_at: dict[int, float] = {}  # missing extended seq -> when noticed
        self._recovery_s: collections.deque[float] = collections.deque(maxlen=16)
        self.waiting_keyframe = False
        # counters (diagnostics and tests)
        self.frames_out = 0
        self.frames_dropped = 0
        self.stalls = 0  # gaps given up on after the bound
        self.late_packets = 0
        self.resumes = 0

    # -- the receiver's contract

    def add(self, packet: Any) -> tuple[bool, Any]:
        now = self._clock()
        ext = self._extend(packet.sequence_number)
        # silence, and packets were lost meanwhile (a quiet screen share loses none)
        resumed = (
            self._last_arrival is not None
            and now - self._last_arrival > RESUME_AFTER_S
            and ext > self._highest + 1
        )
        self._last_arrival = now
        if self._next is None or resumed:
            if resumed:
                self.resumes += 1
            self._restart(ext, need_keyframe=resumed, urgent=True)
        elif ext < self._next:
            if self._next - ext < _MAX_MISORDER:
                self.late_packets += 1  # already handed over or given up on
                return False, self._drain(now)
            self._restart(ext, need_keyframe=True, urgent=False)  # a new sequence
        elif ext in self._packets:
            return False, self._drain(now)
        self._packets[ext] = packet
        self._note_gaps(ext, now)
        self._highest = max(self._highest, ext)
        if packet.marker:
            self._last_marker = max(self._last_marker, ext)
        assert self._next is not None
        if ext - self._next >= _REASSEMBLY_CAPACITY:
            self._give_up(now)  # far more held than any bound allows: skip at once
        return False, self._drain(now)

    @property
    def capacity(self) -> int:
        return _REASSEMBLY_CAPACITY

    # -- internals

    def _note_gaps(self, ext: int, now: float) -> None:
        """Learn how long retransmissions take here: a wait shorter than that drops frames
        that were about to complete (the round trip is unknown while a publisher subscribes to
        nobody, and a retransmission can queue behind a keyframe on a slow uplink)."""
        if ext > self._highest + 1:
            if ext - self._highest <= _MAX_TRACKED_GAP:
                for missing in range(self._highest + 1, ext):
                    self._gap_seen_at[missing] = now
        elif ext < self._highest:
            seen_at = self._gap_seen_at.pop(ext, None)
            if seen_at is not None:
                self._recovery_s.append(now - seen_at)

    def wait_s(self) -> float:
        """The current bound: `max_wait_s()`, or more if retransmissions were seen to take
        longer (with a margin), never above LOSS_WAIT_MAX_S."""
        learned = 1.25 * max(self._recovery_s, default=0.0)
        return min(LOSS_WAIT_MAX_S, max(self._max_wait_s(), learned))

    def _extend(self, seq: int) -> int:
        """RTP sequence number -> monotonic extended number (nearest to the highest seen)."""
        if self._next is None:
            return seq
        delta = (seq - self._highest) & 0xFFFF
        return self._highest + delta if delta < 0x8000 else self._highest - (0x10000 - delta)

    def _restart(self, ext: int, *, need_keyframe: bool, urgent: bool) -> None:
        dropped_packets = bool(self._packets)
        self._packets.clear()
        self._next = ext
        self._highest = ext
        self._last_marker = -1
        self._before_next = None
        self._blocked_since = None
        self._gap_seen_at.clear()
        self._stop_asking_before_next()
        if need_keyframe:
            if dropped_packets:
                self.frames_dropped += 1
            self._want_keyframe(urgent)

    def _stop_asking_before_next(self) -> None:
        """Retransmissions of packets given up on would only crowd the uplink: stop NACKing."""
        missing = self._nack_missing
        if missing and self._next is not None:
            for seq in [s for s in missing if self._extend(s) < self._next]:
                missing.discard(seq)

    def _want_keyframe(self, urgent: bool) -> None:
        self.waiting_keyframe = True
        if self._on_keyframe_needed is not None:
            self._on_keyframe_needed(urgent)

    def _starts_frame(self, ext: int) -> bool | None:
        """Whether the packet at `ext` begins a frame; None if that cannot be told."""
        packet = self._packets[ext]
        before = self._before_next if ext == self._next else self._packets.get(ext - 1)
        if before is not None:
            return bool(before.marker or before.timestamp != packet.timestamp)
        if self.codec == "vp8":
            return vp8_starts_frame(packet.payload)
        return None

    def _starts_keyframe(self, ext: int) -> bool:
        packet = self._packets[ext]
        if self.codec == "h264":
            return self._starts_frame(ext) is not False and h264_starts_keyframe(packet.payload)
        return bool(self._starts_frame(ext)) and is_keyframe(self.codec, packet._data)

    def _frame_at_next(self) -> tuple[int | None, int]:
        """(last seq of the complete frame at `_next` or None, first missing seq from `_next`)."""
        assert self._next is not None
        ext = self._next
        packet = self._packets.get(ext)
        if packet is None:
            return None, ext
        timestamp = packet.timestamp
        while True:
            if packet.marker:
                return ext, ext + 1
            following = self._packets.get(ext + 1)
            if following is None:
                return None, ext + 1
            if following.timestamp != timestamp:
                return ext, ext + 1  # the marked packet was lost; the next frame began
            ext += 1
            packet = following

    def _advance(self, to: int) -> None:
        """Forget every packet before `to`."""
        assert self._next is not None
        if to - self._next > len(self._packets):
            for ext in [e for e in self._packets if e < to]:
                del self._packets[ext]
        else:
            for ext in range(self._next, to):
                self._packets.pop(ext, None)
        self._before_next = self._packets.get(to - 1)
        self._next = to
        self._blocked_since = None
        if self._gap_seen_at:
            self._gap_seen_at = {e: t for e, t in self._gap_seen_at.items() if e >= to}

    def _skip_to_frame(self, after: int, *, keyframe: bool) -> bool:
        """Drop everything before the first known frame start (keyframe start) after `after`."""
        for ext in sorted(e for e in self._packets if e > after):
            if self._starts_keyframe(ext) if keyframe else self._starts_frame(ext):
                self._advance(ext)
                return True
        return False

    def _give_up(self, now: float) -> None:
        """Drop the blocked frame(s) and wait for a keyframe."""
        assert self._next is not None
        self.stalls += 1
        self.frames_dropped += 1
        _, missing = self._frame_at_next()
        if not self._skip_to_frame(missing, keyframe=False):
            self._advance(self._highest + 1)
        self._stop_asking_before_next()
        self._want_keyframe(False)  # again if the awaited keyframe was the frame lost

    def _drain(self, now: float) -> Any:
        """The next frame to hand over, if any (one per call: the receiver takes one per packet;
        frames still complete here leave with the following packets)."""
        while self._packets:
            assert self._next is not None
            end, missing = self._frame_at_next()
            if end is not None:
                packets = [self._packets[e] for e in range(self._next, end + 1)]
                self._advance(end + 1)
                data = b"".join(p._data for p in packets)
                if self.waiting_keyframe and not is_keyframe(self.codec, data):
                    self.frames_dropped += 1
                    continue
                self.waiting_keyframe = False
                self.frames_out += 1
                return aiortc.jitterbuffer.JitterFrame(data=data, timestamp=packets[0].timestamp)
            # waiting for a keyframe, the frame at the origin is of no use: jump to one that began
            if (
                self.waiting_keyframe
                and not (self._next in self._packets and self._starts_keyframe(self._next))
                and self._skip_to_frame(self._next, keyframe=True)
            ):
                self.frames_dropped += 1
                self._stop_asking_before_next()
                continue
            if missing >= self._last_marker:
                self._blocked_since = None  # the frame is still arriving: no loss yet
                return None
            if self._blocked_since is None:
                self._blocked_since = now
            # a keyframe waits as long as allowed: giving it up costs another request and
            # another keyframe, which on a congested uplink loses packets again
            keyframe = self._next in self._packets and self._starts_keyframe(self._next)
            if now - self._blocked_since < (LOSS_WAIT_MAX_S if keyframe else self.wait_s()):
                return None
            self._give_up(now)
        return None


def loss_tolerant_video(
    receiver: Any,
    codec: str,
    *,
    on_keyframe_needed: Callable[[bool], None],
    max_wait_s: Callable[[], float] | None = None,
) -> LossTolerantVideo:
    """Give a passthrough video receiver a `LossTolerantVideo` (before its first packet)."""
    nack = receiver._RTCRtpReceiver__nack_generator
    buffer = LossTolerantVideo(
        codec,
        on_keyframe_needed=on_keyframe_needed,
        max_wait_s=max_wait_s,
        nack_missing=nack.missing if nack is not None else None,
    )
    receiver._RTCRtpReceiver__jitter_buffer = buffer
    return buffer


def round_trip_time_s(pc: Any) -> float | None:
    """The smoothed round trip aiortc measured from RTCP receiver reports on any of `pc`'s
    senders (the same path as its receivers under BUNDLE); None before the first report."""
    rtts = [
        rtt
        for sender in pc.getSenders()
        if (rtt := getattr(sender, "_RTCRtpSender__rtt", None)) is not None
    ]
    return max(rtts) if rtts else None


#: No RTCP from a subscriber for this long, then some: its link was down (receivers report
#: every 0.5-1.5 s in aiortc, about every second in Chrome).
LINK_SILENT_S = 2.5


def on_link_back(
    sender: Any,
    callback: Callable[[], None],
    *,
    silent_s: float = LINK_SILENT_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Call `callback` when RTCP about `sender`'s stream arrives again after `silent_s` without
    any: the subscriber's link returned (and its decoder lost whatever was sent meanwhile)."""
    original = sender._handle_rtcp_packet
    last: list[float] = []

    def handle(packet: Any) -> Any:  # returns original's coroutine
        now = clock()
        if last and now - last[0] > silent_s:
            callback()
        last[:] = [now]
        return original(packet)

    sender._handle_rtcp_packet = handle

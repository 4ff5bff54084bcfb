"""What the adapter relies on in aiortc/aioice, checked (`check_aiortc_internals`), and what
it replaced there (`originals`, shared by the modules that install the replacements)."""

from __future__ import annotations

import datetime
import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
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

logger = logging.getLogger(__name__)

EXPECTED_AIORTC_VERSION = "1.16.0"


@dataclass(slots=True)
class Originals:
    """What the adapter replaced in aiortc/aioice (None: not replaced yet), to call or restore."""

    decoder_worker: Callable[..., None] | None = None
    get_host_addresses: Callable[[bool, bool], list[str]] | None = None
    handle_rtp_data: Callable[..., Any] | None = None
    clock: tuple[Callable[[], int], Callable[[], int]] | None = None
    find_common_codecs: Callable[[list[Any], list[Any]], list[Any]] | None = None
    get_encoder: Callable[[Any], Any] | None = None
    get_decoder: Callable[[Any], Any] | None = None
    #: The internals passed `check_aiortc_internals` in this process (they cannot change in
    #: it). Checked once: the check parses aiortc's source, and on Python 3.11 `ast.parse`
    #: fails now and then with a spurious "AST constructor recursion depth mismatch" when
    #: another thread parses at the same time (CPython gh-106905; 3.11's traceback formatting
    #: parses too). It failed a node's creation once in a loaded test run.
    internals_checked: bool = False


originals = Originals()
#: Held while replacing anything process-wide.
install_lock = threading.Lock()

# Counters: passthrough frames delivered without any codec call (read by tests and benches).
stats = {
    "passthrough_frames": 0,
    "decoded_frames_fallback": 0,
    "rtp_malformed": 0,  # RTP packets whose header or extensions did not parse
    "rtp_dropped_malformed": 0,  # of those, dropped (the rest kept without extensions)
    "red_recovered": 0,  # audio frames lost upstream, forwarded from a later RED packet
    "red_malformed": 0,  # RED payloads whose block headers did not fit the packet
}


class AiortcInternalsChanged(RuntimeError):
    """The installed aiortc does not have the internals media/adapter relies on."""


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def check_aiortc_internals() -> None:
    """Raise AiortcInternalsChanged if aiortc/aioice differ from what this adapter expects."""
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    worker = originals.decoder_worker or aiortc.rtcrtpreceiver.decoder_worker
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
        _params(aiortc.rtcrtpreceiver.RTCRtpReceiver._send_rtcp_nack)
        == ["self", "media_ssrc", "lost"],
        "RTCRtpReceiver._send_rtcp_nack(self, media_ssrc, lost)",
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
    sender_src = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender._handle_rtcp_packet)
    expect("self._send_keyframe()" in sender_src, "RTCRtpSender handles PLI/FIR via _send_keyframe")
    expect(
        "unpack_remb_fci(packet.fci)" in sender_src
        and "self._ssrc" in inspect.getsource(sender_cls.__init__)
        and "fraction_lost" in inspect.signature(aiortc.rtp.RtcpReceiverInfo).parameters,
        "RTCRtpSender gets REMB (unpack_remb_fci) and receiver reports (fraction_lost); _ssrc",
    )
    expect(
        any(c.mimeType.lower() == "audio/opus" for c in aiortc.codecs.CODECS["audio"])
        and vars(aiortc.rtcpeerconnection).get("CODECS") is aiortc.codecs.CODECS,
        "aiortc.codecs.CODECS['audio'] has Opus and is the table negotiation uses",
    )
    next_src = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame)
    expect(".pack(data)" in next_src, "RTCRtpSender packs non-Frame data without encoding")
    expect(
        "self.__encoder = get_encoder(codec)" in next_src
        and "decoder = get_decoder(codec)"
        in inspect.getsource(originals.decoder_worker or aiortc.rtcrtpreceiver.decoder_worker)
        and "find_common_codecs(CODECS[media.kind], media.rtp.codecs)"
        in inspect.getsource(aiortc.rtcpeerconnection.RTCPeerConnection.setRemoteDescription),
        "RTCRtpSender.__encoder = get_encoder(codec), decoder_worker's get_decoder(codec) and"
        " setRemoteDescription's find_common_codecs, all module globals read at call time",
    )
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
        originals.handle_rtp_data or aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtp_data
    )
    expect(
        "RtpPacket.parse(data, self._rtp_header_extensions_map)" in handle_src
        and "self._rtp_router.route_rtp(packet)" in handle_src,
        "RTCDtlsTransport._handle_rtp_data parses with the header extension map and routes",
    )
    clock: Any = aiortc.clock
    expect(
        _params(originals.clock[0] if originals.clock else clock.current_ntp_time) == []
        and _params(originals.clock[1] if originals.clock else clock.current_ms) == []
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
    hosts = originals.get_host_addresses or aioice.ice.get_host_addresses
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

"""Every aiortc/aioice internal the passthrough SFU touches, in this package and nowhere else
(aiortc pinned to 1.16.0). Callers import the package (`from media import adapter`).

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
- `RTCRtpReceiver.__remote_streams` (aiortc's per-SSRC `StreamStatistics`) is read by
  `received_counts()`: packets expected and received from a publisher, for its upstream grade.
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
  packet that NACK/RTX does not recover within two and a half round trips no longer holds back
  every later frame (aiortc's buffer waits until 512 newer packets push the gap out); the
  incomplete frames are dropped and output resumes at the next keyframe. The round trip is aiortc's
  `RTCRtpSender.__rtt` (from receiver reports) on the same connection.
- `RTCRtpSender._handle_rtcp_packet(packet)` is wrapped per subscriber sender by
  `on_link_back()` to notice RTCP resuming after the subscriber's link was down, and by
  `on_congestion_feedback()` to read the subscriber's REMB and receiver-report loss (aiortc
  parses REMB only to retarget its own encoder, which the passthrough senders do not have).
- `aiortc.codecs.CODECS["audio"]`'s Opus entry gets `useinbandfec=1; usedtx=1`
  (`enable_opus_fec_and_dtx()`, at install): aiortc copies the local codec's parameters into
  every answer and offer, so senders use Opus in-band FEC and DTX.
- RED (RFC 2198 redundant audio, `red`): `aiortc.codecs.CODECS["audio"]` gets `audio/red`
  (payload type 63); `aiortc.rtcpeerconnection.find_common_codecs` is wrapped so that RED,
  where common, goes first with the remote's payload type and an fmtp naming the common Opus
  (`red_first`); `aiortc.rtcrtpsender.get_encoder` and `aiortc.rtcrtpreceiver.get_decoder`
  return `RedEncoder` / `RedDecoder` for it. The passthrough receive path splits RED blocks
  and forwards a frame lost upstream from the next packet (`RedReceiveState`); the SFU's RED
  senders repeat as many earlier frames as `set_audio_redundancy(sender, n)` says (reading
  `RTCRtpSender.__encoder`).
- `aiortc.clock.current_ntp_time()` and `current_ms()` are replaced (module attributes, read
  at call time as `clock.current_ntp_time()`) by equivalents computed from `time.time_ns()`
  instead of `datetime.now(utc) - NTP_EPOCH`: every sent RTP packet calls `current_ntp_time()`
  twice (abs-send-time, SR bookkeeping) and every received one `current_ms()`; profiled in a
  room of 8 the datetime arithmetic was about 6% of the SFU worker.

`check_aiortc_internals()` verifies all of the above at start-up and raises
`AiortcInternalsChanged` naming what differs.

Modules: `internals` (the check, what was replaced, counters), `receive` (passthrough sink and
decoder_worker hook), `jitter` (early frame completion), `rtp` (clock, malformed RTP guard),
`negotiation` (offers, codec pinning and preferences), `rtcp` (PLI both ways, audio level),
`network` (host addresses), `bitstream` (keyframes and VP8 size from bytes; no aiortc),
`loss` (loss-tolerant video reassembly, link-back detection), `red` (redundant audio).
"""

from __future__ import annotations

from media.adapter.bitstream import (
    BASE_LAYER,
    TemporalLayer,
    is_keyframe,
    vp8_descriptor,
    vp8_dimensions,
    vp8_temporal_layer,
)
from media.adapter.internals import (
    EXPECTED_AIORTC_VERSION,
    AiortcInternalsChanged,
    check_aiortc_internals,
    stats,
)
from media.adapter.jitter import complete_frames_early, early_frame_buffer
from media.adapter.loss import (
    DEFAULT_RTT_S,
    LINK_SILENT_S,
    LOSS_WAIT_MAX_S,
    LOSS_WAIT_MIN_S,
    RESUME_AFTER_S,
    LossTolerantVideo,
    loss_tolerant_video,
    loss_wait_s,
    on_link_back,
    round_trip_time_s,
)
from media.adapter.negotiation import (
    audio_codec_preferences,
    create_offer,
    pin_negotiated_codecs,
    video_codec_preferences,
)
from media.adapter.network import restrict_host_addresses
from media.adapter.receive import (
    PassthroughSink,
    attach_sink,
    install_passthrough,
    received_counts,
)
from media.adapter.red import RED_PAYLOAD_TYPE, RedReceiveState, set_audio_redundancy
from media.adapter.rtcp import (
    OPUS_FMTP,
    enable_opus_fec_and_dtx,
    floor_remb,
    floor_reported_loss,
    observe_audio_level,
    on_congestion_feedback,
    on_keyframe_request,
    send_pli,
)

__all__ = [
    "BASE_LAYER",
    "DEFAULT_RTT_S",
    "EXPECTED_AIORTC_VERSION",
    "LINK_SILENT_S",
    "LOSS_WAIT_MAX_S",
    "LOSS_WAIT_MIN_S",
    "OPUS_FMTP",
    "RED_PAYLOAD_TYPE",
    "RESUME_AFTER_S",
    "AiortcInternalsChanged",
    "LossTolerantVideo",
    "PassthroughSink",
    "RedReceiveState",
    "TemporalLayer",
    "attach_sink",
    "audio_codec_preferences",
    "check_aiortc_internals",
    "complete_frames_early",
    "create_offer",
    "early_frame_buffer",
    "enable_opus_fec_and_dtx",
    "floor_remb",
    "floor_reported_loss",
    "install_passthrough",
    "is_keyframe",
    "loss_tolerant_video",
    "loss_wait_s",
    "observe_audio_level",
    "on_congestion_feedback",
    "on_keyframe_request",
    "on_link_back",
    "pin_negotiated_codecs",
    "received_counts",
    "restrict_host_addresses",
    "round_trip_time_s",
    "send_pli",
    "set_audio_redundancy",
    "stats",
    "video_codec_preferences",
    "vp8_descriptor",
    "vp8_dimensions",
    "vp8_temporal_layer",
]

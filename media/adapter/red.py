"""Redundant audio (RFC 2198 RED, `audio/red`) around aiortc, which knows no RED.

Browsers offer `red/48000/2` with `fmtp <opus>/<opus>` beside Opus. With it:

- a publisher's browser sends each Opus frame together with the one before it (when the
  server's answer lists RED before Opus, as Chrome requires); the passthrough receive path
  splits the blocks and hands on a frame lost upstream from the next packet's copy
  (`RedReceiveState`), so what the others hear has no gap;
- the server sends each subscriber's audio as RED, with the previous frame repeated while that
  subscriber's link loses audio (`set_audio_redundancy`); its browser's NetEq fills a lost
  packet from the next one. Opus in-band FEC cannot do this through the SFU: it works only
  when the publisher's encoder hears about the loss, and then for everyone.

What is changed in aiortc (installed by `enable_red()`, from `install_passthrough`):

- `aiortc.codecs.CODECS["audio"]` gets a RED entry (payload type 63, as Chrome numbers it).
- `aiortc.rtcpeerconnection.find_common_codecs` (read at call time by setRemoteDescription) is
  wrapped: where RED is common, it takes the remote's payload type, its fmtp names the common
  Opus payload type, and it goes first; RED without Opus is dropped.
- `aiortc.rtcrtpsender.get_encoder` / `aiortc.rtcrtpreceiver.get_decoder` return `RedEncoder`
  / `RedDecoder` for `audio/red` (aiortc raises for codecs it does not know). The SFU's senders
  only `pack()`; aiortc clients (tests) `encode()` and decode.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import aiortc.codecs
import aiortc.codecs.opus
import aiortc.jitterbuffer
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import av

from media.adapter.bitstream import RedBlock, red_blocks, red_payload
from media.adapter.internals import originals, stats

RED_MIME = "audio/red"
#: The audio the SFU forwards: Opus, plain or in RED.
FORWARDED_AUDIO = ("audio/opus", RED_MIME)
#: Chrome's payload type for audio/red; aiortc treats 35-63 as static, so it must match.
RED_PAYLOAD_TYPE = 63
OPUS_CLOCK = 48000
#: Most redundant frames a sender repeats per packet.
MAX_REDUNDANCY = 2


def is_red(codec: Any) -> bool:
    return str(codec.mimeType).lower() == RED_MIME


def _is_opus(codec: Any) -> bool:
    return str(codec.mimeType).lower() == "audio/opus"


def red_primary_type(codec: Any) -> int | None:
    """The payload type a RED codec's fmtp (`111/111`) names, or None."""
    for key in codec.parameters:
        first = str(key).split("/", 1)[0]
        if first.isdigit():
            return int(first)
    return None


def red_first(codecs: Sequence[Any], remote: Sequence[Any] = ()) -> list[Any]:
    """`codecs` with RED fixed up: first, numbered as in `remote` when it is there, its fmtp
    naming the Opus payload type of `codecs`. Without Opus, RED is left out."""
    opus = next((c for c in codecs if _is_opus(c)), None)
    out: list[Any] = []
    red: Any = None
    for codec in codecs:
        if is_red(codec):
            red = copy.copy(codec)
        else:
            out.append(codec)
    if red is None or opus is None:
        return out
    remote_red = next((c for c in remote if is_red(c)), None)
    if remote_red is not None:
        red.payloadType = remote_red.payloadType
    red.parameters = {f"{opus.payloadType}/{opus.payloadType}": None}
    return [red, *out]


def _find_common_codecs(local: list[Any], remote: list[Any]) -> list[Any]:
    assert originals.find_common_codecs is not None
    common = originals.find_common_codecs(local, remote)
    if any(is_red(c) for c in common):
        return red_first(common, remote)
    return list(common)


class RedEncoder:
    """aiortc `Encoder` for `audio/red`. `pack()` (the SFU's senders): the Opus frame with the
    last `redundancy` frames before it. `encode()` (aiortc clients): Opus-encode, then the same."""

    def __init__(self, primary_type: int) -> None:
        self.primary_type = primary_type
        self.redundancy = 1
        self._history: list[tuple[int, bytes]] = []  # (timestamp, frame), oldest first
        self._opus: Any = None

    def _wrap(self, frame: bytes, timestamp: int) -> bytes:
        keep = self._history[-self.redundancy :] if self.redundancy > 0 else []
        payload = red_payload(self.primary_type, frame, timestamp, keep)
        self._history.append((timestamp, frame))
        del self._history[:-MAX_REDUNDANCY]
        return payload

    def pack(self, packet: av.Packet[Any]) -> tuple[list[bytes], int]:
        assert packet.pts is not None and packet.time_base is not None
        timestamp = int(packet.pts * packet.time_base * OPUS_CLOCK)
        ts32 = timestamp & 0xFFFFFFFF
        return [self._wrap(bytes(packet), ts32)], timestamp

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int | None]:
        if self._opus is None:
            self._opus = aiortc.codecs.opus.OpusEncoder()
        payloads, timestamp = self._opus.encode(frame, force_keyframe)
        if timestamp is None:
            return payloads, timestamp
        return [self._wrap(p, timestamp & 0xFFFFFFFF) for p in payloads], timestamp


class RedDecoder:
    """aiortc `Decoder` for `audio/red` (aiortc clients): decodes each packet's primary block."""

    def __init__(self) -> None:
        self._opus = aiortc.codecs.opus.OpusDecoder()

    def decode(self, encoded_frame: Any) -> list[Any]:
        blocks = red_blocks(encoded_frame.data, encoded_frame.timestamp)
        if not blocks:
            return []
        primary = blocks[-1]
        return list(
            self._opus.decode(aiortc.jitterbuffer.JitterFrame(primary.data, primary.timestamp))
        )


def _get_encoder(codec: Any) -> Any:
    if is_red(codec):
        return RedEncoder(red_primary_type(codec) or 111)
    assert originals.get_encoder is not None
    return originals.get_encoder(codec)


def _get_decoder(codec: Any) -> Any:
    if is_red(codec):
        return RedDecoder()
    assert originals.get_decoder is not None
    return originals.get_decoder(codec)


class RedReceiveState:
    """Per passthrough receiver: the frames to forward from each received audio packet. A
    packet's primary frame always (the reassembly buffer already dropped repeated packets); a
    redundant copy (RED) only when no frame that new was forwarded yet, that is when the packet
    that carried it first was lost."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None  # RTP timestamp of the newest frame forwarded

    def _newer(self, timestamp: int) -> bool:
        """Later than the newest frame forwarded (RTP timestamps wrap); False before any."""
        return self.last is not None and 0 < ((timestamp - self.last) & 0xFFFFFFFF) < 0x80000000

    def frames(self, codec: Any, data: bytes, timestamp: int) -> list[tuple[int, bytes]]:
        if not is_red(codec):
            self.last = timestamp
            return [(timestamp, data)]
        blocks: list[RedBlock] | None = red_blocks(data, timestamp)
        if blocks is None:
            stats["red_malformed"] += 1
            return []
        out: list[tuple[int, bytes]] = []
        for block in blocks[:-1]:
            if self._newer(block.timestamp):
                stats["red_recovered"] += 1
                self.last = block.timestamp
                out.append((block.timestamp, block.data))
        if blocks:
            primary = blocks[-1]
            self.last = primary.timestamp
            out.append((primary.timestamp, primary.data))
        return out


def set_audio_redundancy(sender: Any, frames: int) -> bool:
    """Repeat the last `frames` (0..MAX_REDUNDANCY) audio frames in each packet `sender` sends.
    False when it does not send RED (not negotiated, or no frame sent yet)."""
    encoder = getattr(sender, "_RTCRtpSender__encoder", None)
    if not isinstance(encoder, RedEncoder):
        return False
    encoder.redundancy = max(0, min(MAX_REDUNDANCY, frames))
    return True


def enable_red() -> None:
    """Install the RED codec entry and the three wrappers (see the module docstring).
    Process-wide; idempotent; called by `install_passthrough`, under its lock."""
    audio = aiortc.codecs.CODECS["audio"]
    opus = next(c for c in audio if _is_opus(c))
    if not any(is_red(c) for c in audio):
        red = aiortc.RTCRtpCodecParameters(
            mimeType=RED_MIME,
            clockRate=OPUS_CLOCK,
            channels=2,
            payloadType=RED_PAYLOAD_TYPE,
            parameters={f"{opus.payloadType}/{opus.payloadType}": None},
        )
        audio.insert(audio.index(opus) + 1, red)
    if originals.find_common_codecs is None:
        module: Any = aiortc.rtcpeerconnection
        originals.find_common_codecs = module.find_common_codecs
        module.find_common_codecs = _find_common_codecs
    sender_module: Any = aiortc.rtcrtpsender
    receiver_module: Any = aiortc.rtcrtpreceiver
    if originals.get_encoder is None:
        originals.get_encoder = sender_module.get_encoder
        sender_module.get_encoder = _get_encoder
    if originals.get_decoder is None:
        originals.get_decoder = receiver_module.get_decoder
        receiver_module.get_decoder = _get_decoder

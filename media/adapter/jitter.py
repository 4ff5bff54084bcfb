"""Reassembly that hands each frame over as soon as it is complete, replacing a passthrough
receiver's `RTCRtpReceiver.__jitter_buffer` (see the package docstring)."""

from __future__ import annotations

from typing import Any

import aiortc.jitterbuffer


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

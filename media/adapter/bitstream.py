"""What the SFU reads in encoded frames without decoding them: keyframes (VP8, H.264) and VP8
dimensions, VP8 temporal layer ids (RFC 7741). Pure functions on bytes."""

from __future__ import annotations

from typing import NamedTuple


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


class TemporalLayer(NamedTuple):
    """A VP8 frame's temporal layer (RFC 7741 §4.2): `tid` 0 is the base layer; `sync` (the Y
    bit) means the frame references only the base layer, so a receiver of the layers below
    `tid` may start receiving layer `tid` at it."""

    tid: int
    sync: bool


BASE_LAYER = TemporalLayer(0, False)


def vp8_temporal_layer(payload: bytes) -> TemporalLayer | None:
    """The TID and Y bit from the VP8 payload descriptor at the start of an RTP payload (RFC
    7741 §4.2): X bit → extension byte (I L T K) → PictureID (1 or 2 bytes if I) → TL0PICIDX
    (if L) → the TID/Y/KEYIDX byte (if T or K; TID only counts if T). None when the descriptor
    carries no TID (no X or no T bit: the stream has no temporal layers) or is truncated."""
    if len(payload) < 2 or not payload[0] & 0x80:
        return None
    ext = payload[1]
    if not ext & 0x20:  # T
        return None
    i = 2
    if ext & 0x80:  # I: PictureID, 15 bits if its M bit is set
        if i >= len(payload):
            return None
        i += 2 if payload[i] & 0x80 else 1
    if ext & 0x40:  # L: TL0PICIDX
        i += 1
    if i >= len(payload):
        return None
    byte = payload[i]
    return TemporalLayer(byte >> 6, bool(byte & 0x20))

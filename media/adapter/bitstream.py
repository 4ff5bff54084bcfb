"""What the SFU reads in encoded frames without decoding them: keyframes (VP8, H.264) and VP8
dimensions. Pure functions on bytes."""

from __future__ import annotations


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

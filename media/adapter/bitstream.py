"""What the SFU reads in encoded frames without decoding them: keyframes (VP8, H.264) and VP8
dimensions, VP8 temporal layer ids (RFC 7741), and RFC 2198 redundant audio (RED) blocks. Pure
functions on bytes."""

from __future__ import annotations

from collections.abc import Sequence
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


class Vp8Descriptor(NamedTuple):
    """What the SFU reads in the VP8 payload descriptor at the start of an RTP payload (RFC 7741
    §4.2); each field None when the descriptor does not carry it or is truncated before it.

    `picture`: (PictureID, its modulus, 2**7 or 2**15); consecutive frames of a stream have
    consecutive PictureIDs. `tl0`: TL0PICIDX, the running index (mod 256) of the last
    base-layer frame, which a base-layer frame increments. `layer`: the frame's TID and Y bit
    (None when the T bit is clear: the stream has no temporal layers)."""

    picture: tuple[int, int] | None
    tl0: int | None
    layer: TemporalLayer | None


_NO_DESCRIPTOR = Vp8Descriptor(None, None, None)


def vp8_descriptor(payload: bytes) -> Vp8Descriptor:
    """Parse the VP8 payload descriptor once: X bit → extension byte (I L T K) → PictureID (1
    or 2 bytes if I, 15 bits if its M bit is set) → TL0PICIDX (if L) → the TID/Y/KEYIDX byte
    (if T or K; TID only counts if T)."""
    n = len(payload)
    if n < 2 or not payload[0] & 0x80:
        return _NO_DESCRIPTOR
    ext = payload[1]
    i = 2
    picture = None
    if ext & 0x80:  # I
        if i >= n:
            return _NO_DESCRIPTOR
        if payload[i] & 0x80:
            if i + 1 < n:
                picture = ((payload[i] & 0x7F) << 8 | payload[i + 1], 1 << 15)
            i += 2
        else:
            picture = (payload[i], 1 << 7)
            i += 1
    tl0 = None
    if ext & 0x40:  # L
        tl0 = payload[i] if i < n else None
        i += 1
    layer = None
    if ext & 0x20 and i < n:  # T
        layer = TemporalLayer(payload[i] >> 6, bool(payload[i] & 0x20))
    return Vp8Descriptor(picture, tl0, layer)


def vp8_temporal_layer(payload: bytes) -> TemporalLayer | None:
    """The TID and Y bit from the VP8 payload descriptor (`vp8_descriptor`), or None when it
    carries no TID (no X or no T bit: the stream has no temporal layers) or is truncated."""
    return vp8_descriptor(payload).layer


#: RFC 2198 limits: a redundant block's timestamp offset has 14 bits, its length 10.
RED_MAX_OFFSET = (1 << 14) - 1
RED_MAX_BLOCK = (1 << 10) - 1


class RedBlock(NamedTuple):
    timestamp: int  # RTP timestamp of this block (the packet's minus its offset), mod 2**32
    payload_type: int
    data: bytes


def red_blocks(payload: bytes, timestamp: int) -> list[RedBlock] | None:
    """The blocks of an RFC 2198 (RED) payload, oldest first, the primary last; empty blocks
    are left out. None when the payload is malformed (headers or lengths past its end)."""
    headers: list[tuple[int, int, int]] = []  # payload type, timestamp offset, length
    i = 0
    n = len(payload)
    while True:
        if i >= n:
            return None
        first = payload[i]
        if not first & 0x80:  # the primary block's 1-byte header ends the list
            headers.append((first & 0x7F, 0, -1))
            i += 1
            break
        if i + 4 > n:
            return None
        word = int.from_bytes(payload[i + 1 : i + 4], "big")
        headers.append((first & 0x7F, word >> 10, word & 0x3FF))
        i += 4
    blocks: list[RedBlock] = []
    for payload_type, offset, length in headers:
        size = n - i if length < 0 else length
        if i + size > n:
            return None
        if size:
            ts = (timestamp - offset) & 0xFFFFFFFF
            blocks.append(RedBlock(ts, payload_type, payload[i : i + size]))
        i += size
    return blocks


def red_payload(
    payload_type: int,
    primary: bytes,
    timestamp: int,
    redundant: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """An RFC 2198 payload: `redundant` ((timestamp, data), oldest first, each earlier than
    `timestamp` by at most RED_MAX_OFFSET and at most RED_MAX_BLOCK long; others are left out)
    then `primary`, all of `payload_type`."""
    headers = bytearray()
    body = bytearray()
    for ts, data in redundant:
        offset = (timestamp - ts) & 0xFFFFFFFF
        if not 0 < offset <= RED_MAX_OFFSET or len(data) > RED_MAX_BLOCK:
            continue
        headers.append(0x80 | payload_type)
        headers += ((offset << 10) | len(data)).to_bytes(3, "big")
        body += data
    headers.append(payload_type & 0x7F)
    return bytes(headers + body + primary)

"""Test-only VP8 temporal layer labels for aiortc publishers (aiortc's encoder has none).

`label_l1t3()` wraps `Vp8Encoder.encode` for as long as it is active: every frame's RTP payload
descriptors get a TID in the L1T3 pattern 0 2 1 2 from each keyframe on, with the layer-sync bit
on the first TL2 and TL1 frame after it (as libvpx sets it), and a TL0PICIDX. The stream is not
really temporally scalable (each frame refers to the one before), so a subscriber that is sent
only some layers decodes with artefacts; what this exercises is which frames the SFU forwards
to whom. The SFU's own senders re-packetize with `pack`, not `encode`, so they are untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor

PATTERN = (0, 2, 1, 2)


def _labelled(original: Any) -> Any:
    def encode(self: Any, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, timestamp = original(self, frame, force_keyframe)
        if not payloads:
            return payloads, timestamp
        _, data = VpxPayloadDescriptor.parse(payloads[0])
        index = 0 if data[0] & 1 == 0 else getattr(self, "_test_since_key", 0) + 1
        self._test_since_key = index
        tid = PATTERN[index % 4]
        sync = index in (1, 2)  # the first TL2 and TL1 frame after the keyframe
        out = []
        for payload in payloads:
            descr, rest = VpxPayloadDescriptor.parse(payload)
            descr.tid = (tid, int(sync))
            descr.tl0picidx = (index // 4) & 0xFF
            out.append(bytes(descr) + rest)
        return out, timestamp

    return encode


@contextlib.contextmanager
def label_l1t3() -> Iterator[None]:
    original = Vp8Encoder.encode
    Vp8Encoder.encode = _labelled(original)  # type: ignore[method-assign]
    try:
        yield
    finally:
        Vp8Encoder.encode = original  # type: ignore[method-assign]

"""Negotiation around aiortc's internals: renegotiation offers that keep the payload types and
header extension ids already negotiated (`create_offer`), and an answer restricted to the codecs
we forward (`pin_negotiated_codecs`, `video_codec_preferences`, `audio_codec_preferences`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import aiortc
import aiortc.rtcpeerconnection
import aiortc.rtp

from media.adapter.red import FORWARDED_AUDIO, is_red, red_first


def _forwarded_audio(codec: Any) -> bool:
    return str(codec.mimeType).lower() in FORWARDED_AUDIO


def _negotiated_tables(pc: Any) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Codec and header extension tables for `pc`'s next offer, numbered as already negotiated.

    Codecs per kind: those negotiated on the first m-line of that kind (aiortc keeps its own
    codec parameters and the remote's dynamic payload types there); a kind never negotiated
    gets aiortc's defaults moved off payload types the other kind uses (one BUNDLE shares the
    payload type space in Chrome); for audio only Opus and RED (what the SFU forwards; its
    audio senders set no codec preferences, see `audio_codec_preferences`). RED goes first,
    its fmtp naming the table's Opus. Header extensions: aiortc's per kind, with the id already
    negotiated for that uri on any m-line (BUNDLE shares the id space), else a free id.
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
            if kind == "audio" and not _forwarded_audio(codec):
                continue
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
    codecs["audio"] = red_first(codecs["audio"])
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
    module: Any = aiortc.rtcpeerconnection
    saved = (module.CODECS, module.HEADER_EXTENSIONS)
    module.CODECS, module.HEADER_EXTENSIONS = tables
    try:
        # createOffer has no await (checked at start-up): the swap is invisible to other peers.
        return await pc.createOffer()
    finally:
        module.CODECS, module.HEADER_EXTENSIONS = saved


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
    """RED and Opus, for `pin_negotiated_codecs`. Not for setCodecPreferences: aiortc compares
    a preference's parameters with the codec's, and RED's fmtp names the Opus payload type of
    each connection. The audio table of `create_offer` is already restricted to these."""
    caps = aiortc.RTCRtpSender.getCapabilities("audio").codecs
    return [c for c in caps if _forwarded_audio(c)]


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
    if transceiver.kind == "audio":
        primary = red_first(primary)  # RED first (a browser sends it only then), or none
    transceiver._codecs = primary + rtx
    return any(not is_red(c) for c in primary)

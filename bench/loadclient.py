"""Cheap aiortc load peers for SFU benchmarks: send the pre-encoded clip, count received frames
without decoding.

(`bench/sfu.py` has a video-only `LoadClient` bound to the MediaNode API; this one is
transport-neutral — it only makes/accepts SDP — so the same peer works against Janus and our
SFU, and it sends Opus as well.)

Receive side: each remote track is marked passthrough (`media.adapter.attach_sink`), so aiortc
depayloads RTP into frames and hands them to a counter; no codec call. Send side: `ClipTrack`s,
whose senders pack pre-encoded packets; a PLI/FIR from the server rewinds the clip to its
keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from bench.media_clip import Clip, ClipTrack
from media import adapter

CLIENT_RCVBUF_BYTES = 4 * 1024 * 1024
_rcvbuf_installed = False


def prepare_process(host_addresses: list[str], rcvbuf_bytes: int = CLIENT_RCVBUF_BYTES) -> None:
    """Call once per process before any peer: passthrough receive hook, ICE host addresses,
    and large UDP receive buffers for this process's ICE sockets.

    Many load peers share one Python event loop; on a busy 2-core machine the loop stalls long
    enough for the default 208 KiB socket buffer to overflow (seen: RcvbufErrors on the client's
    sockets only, 40-60 % of the load lost, the server dropping nothing). A bigger buffer
    (capped by net.core.rmem_max) absorbs the stalls. It applies to the load clients only —
    never to the server under test (Janus, or the SFU's worker process).
    """
    global _rcvbuf_installed
    adapter.install_passthrough()
    adapter.restrict_host_addresses(host_addresses)
    if rcvbuf_bytes and not _rcvbuf_installed:
        _rcvbuf_installed = True
        original = aioice.ice.StunProtocol.connection_made

        def connection_made(self: Any, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
            original(self, transport)

        aioice.ice.StunProtocol.connection_made = connection_made  # type: ignore[method-assign]


def _config() -> RTCConfiguration:
    """No ICE servers (never aiortc's default STUN); max-bundle, because with aiortc's default
    (balanced) the answerer to an offer carrying two m-lines of one kind (Janus's multistream
    subscriber offer: audio, video, audio, video ...) leaves the second audio m-line on a
    transport that never connects: its packets are routed by payload type into the first audio
    receiver (aiortc 1.16, RTCPeerConnection.__createTransceiver + setRemoteDescription)."""
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


@dataclass
class TrackCount:
    kind: str
    frames: int = 0
    packets: int = 0
    lost: int = 0  # sequence-number gaps (RTP counting mode)
    _last_seq: int = -1

    def on_rtp(self, packet: Any) -> None:
        self.packets += 1
        if self._last_seq >= 0:
            gap = (packet.sequence_number - self._last_seq) & 0xFFFF
            if 1 < gap < 0x8000:
                self.lost += gap - 1
        self._last_seq = packet.sequence_number
        if self.kind == "audio" or packet.marker:
            self.frames += 1


@dataclass(eq=False)
class LoadPeer:
    """One RTCPeerConnection (explicitly without ICE servers).

    Receive counting, `depacketize=False` (default, cheapest): each receiver's
    `_handle_rtp_packet` is replaced by a counter (a frame = a video packet with the marker bit,
    i.e. the last packet of a frame; an audio packet), so no jitter buffer, no NACK, no decoder
    thread traffic: what is left per packet is SRTP and RTP parsing. `depacketize=True` keeps
    aiortc's jitter buffer and NACKs and counts reassembled frames through a passthrough sink
    (still no decoding) — more faithful, about twice the client CPU.
    """

    name: str
    depacketize: bool = False
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(_config()))
    received: dict[str, TrackCount] = field(default_factory=dict)
    senders: list[ClipTrack] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        count = self.received.setdefault(f"{track.kind}:{track.id}", TrackCount(track.kind))
        if not self.depacketize:
            receiver = next(
                t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track
            )

            async def handle_rtp(packet: Any, arrival_time_ms: int) -> None:
                count.on_rtp(packet)

            receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]  # cf. adapter.observe_audio_level
            return

        def on_frame(packet: av.Packet[Any], arrival: float, layer: object = None) -> None:
            count.frames += 1

        adapter.attach_sink(track, adapter.PassthroughSink(on_frame, lambda: None))

    def add_clip_senders(self, clip: Clip, *, audio: bool = True) -> None:
        tracks = [ClipTrack.video(clip)] + ([ClipTrack.audio(clip)] if audio else [])
        for track in tracks:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            adapter.on_keyframe_request(transceiver.sender, track.request_keyframe)
            self.senders.append(track)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def answer(self, offer_sdp: str) -> str:
        """Answer a server offer (serialized: servers may renegotiate while one is pending)."""
        async with self.lock:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            return str(self.pc.localDescription.sdp)

    def frames(self, kind: str) -> int:
        return sum(c.frames for c in self.received.values() if c.kind == kind)

    def lost(self, kind: str) -> int:
        return sum(c.lost for c in self.received.values() if c.kind == kind)

    def packets(self, kind: str) -> int:
        return sum(c.packets for c in self.received.values() if c.kind == kind)

    def flowing(self, kind: str) -> int:
        """Remote tracks of `kind` that delivered at least one frame."""
        return sum(1 for c in self.received.values() if c.kind == kind and c.frames > 0)

    async def close(self) -> None:
        await self.pc.close()


def totals(peers: list[LoadPeer]) -> dict[str, int]:
    """Frames, RTP packets and lost packets received, per kind, summed over peers."""
    out = {}
    for kind in ("video", "audio"):
        out[kind] = sum(p.frames(kind) for p in peers)
        out[f"{kind}_packets"] = sum(p.packets(kind) for p in peers)
        out[f"{kind}_lost"] = sum(p.lost(kind) for p in peers)
    return out


def all_flowing(peers: list[LoadPeer], per_peer: int) -> bool:
    """Every receiving peer gets `per_peer` video and `per_peer` audio tracks with frames."""
    return all(p.flowing("video") >= per_peer and p.flowing("audio") >= per_peer for p in peers)


def rewinds(peers: list[LoadPeer]) -> int:
    return sum(t.keyframes_sent_on_request for p in peers for t in p.senders)


def sent(peers: list[LoadPeer]) -> dict[str, int]:
    """Frames the peers' clip tracks have handed to their senders, per kind."""
    return {
        kind: sum(t.n for p in peers for t in p.senders if t.kind == kind)
        for kind in ("video", "audio")
    }

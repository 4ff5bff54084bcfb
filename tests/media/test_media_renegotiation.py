"""Renegotiation with browser-style numbering, and malformed RTP from one participant.

Browsers number payload types and RTP header extensions their own way (Chrome: opus=111,
VP8=96, rtx=97; ssrc-audio-level=1, abs-send-time=2, mid=4). aiortc 1.16's createOffer resets
every m-line to its own defaults (opus=96, VP8=97; mid=1, audio-level=2, abs-send-time=3):
Chrome refuses the changed extension ids, and after accepting changed payload types sends VP8
as PT 97, which the server's running receiver takes for RTX. These clients are aiortc peers
whose offers carry Chrome's numbers.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiortc import RTCSessionDescription, sdp
from aiortc.rtp import pack_header_extensions, unpack_header_extensions

from media import adapter
from media.interfaces import PeerDescription, SessionDescription
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import EventPump, TestClient, wait_until

pytestmark = pytest.mark.media

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
CHROME_EXTMAP = {AUDIO_LEVEL: 1, ABS_SEND_TIME: 2, MID: 4}
CHROME_PT = {"opus": 111, "vp8": 96, "rtx": 97}


def chrome_numbering(text: str) -> str:
    """An aiortc offer renumbered as Chrome numbers it (VP8 + Opus only)."""
    desc = sdp.SessionDescription.parse(text)
    for media in desc.media:
        keep = []
        remap: dict[int, int] = {}
        for codec in media.rtp.codecs:
            name = codec.mimeType.split("/")[1].lower()
            if name in ("opus", "vp8"):
                assert codec.payloadType is not None
                remap[codec.payloadType] = CHROME_PT[name]
                codec.payloadType = CHROME_PT[name]
                keep.append(codec)
        for codec in media.rtp.codecs:
            apt = codec.parameters.get("apt")
            if codec.mimeType.lower() == "video/rtx" and isinstance(apt, int) and apt in remap:
                codec.payloadType = CHROME_PT["rtx"]
                codec.parameters = {"apt": remap[apt]}
                keep.append(codec)
        media.rtp.codecs = keep
        media.fmt = [c.payloadType for c in keep]
        for ext in media.rtp.headerExtensions:
            ext.id = CHROME_EXTMAP[ext.uri]
    return str(desc)


class ChromeNumberedClient(TestClient):
    """Offers with Chrome's numbers; answers server offers as aiortc does."""

    async def join(self) -> None:
        async with self.lock:
            for track in (self.video, self.audio):
                if track is not None:
                    self.pc.addTransceiver(track, direction="sendonly")
            offer = await self.pc.createOffer()
            offer.sdp = chrome_numbering(offer.sdp)
            await self.pc.setLocalDescription(offer)
            answer = await self.node.accept_offer(
                room_id=self.room_id,
                peer_id=self.peer_id,
                offer=SessionDescription("offer", self.pc.localDescription.sdp),
                ice_servers=[],
                grant=self.grant,
            )
            await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))


def numbering(text: str) -> list[tuple[str, dict[str, int], dict[str, int]]]:
    """Per m-line: (kind, codec name → PT, extension uri → id)."""
    out = []
    for media in sdp.SessionDescription.parse(text).media:
        codecs = {
            c.mimeType.split("/")[1].lower(): int(c.payloadType or 0) for c in media.rtp.codecs
        }
        extensions = {e.uri: e.id for e in media.rtp.headerExtensions}
        out.append((media.kind, codecs, extensions))
    return out


async def test_renegotiation_offers_keep_the_browsers_payload_types_and_extension_ids(
    node: SfuMediaNode, pump: EventPump
) -> None:
    first = pump.add(ChromeNumberedClient(node, "r", "chrome1"))
    await first.join()
    second = pump.add(ChromeNumberedClient(node, "r", "chrome2"))
    await second.join()
    for client, other in ((first, "chrome2"), (second, "chrome1")):
        await wait_until(
            lambda c=client, o=other: (
                c.frames_from(o, "video") >= 5 and c.frames_from(o, "audio") >= 10
            ),
            15,
            f"{client.peer_id} receiving {other}",
        )
    offers = [
        e.description.sdp
        for e in pump.events
        if isinstance(e, PeerDescription) and e.peer_id in ("chrome1", "chrome2")
    ]
    assert len(offers) >= 2
    for text in offers:
        lines = numbering(text)
        assert len(lines) == 4  # own audio + video, the other's audio + video
        for kind, codecs, extensions in lines:
            if kind == "audio":
                assert codecs == {"opus": 111}, text
            else:
                assert codecs == {"vp8": 96, "rtx": 97}, text
            for uri, ext_id in extensions.items():
                assert ext_id == CHROME_EXTMAP[uri], (uri, ext_id, text)
    assert not pump.errors
    for client in (first, second):
        await client.close()


def malform_audio_level(data: bytes, audio_pt: int, audio_level_id: int) -> bytes:
    """The same RTP packet with a 2-byte ssrc-audio-level extension (RFC 6464 says 1 byte)."""
    if len(data) < 12 or data[1] & 0x7F != audio_pt or not data[0] & 0x10:
        return data
    pos = 12 + 4 * (data[0] & 0x0F)
    profile, length = struct.unpack("!HH", data[pos : pos + 4])
    end = pos + 4 + 4 * length
    elements = [
        (i, v + b"\x00" if i == audio_level_id else v)
        for i, v in unpack_header_extensions(profile, data[pos + 4 : end])
    ]
    profile, value = pack_header_extensions(elements)
    return data[:pos] + struct.pack("!HH", profile, len(value) // 4) + value + data[end:]


async def test_malformed_audio_level_extension_from_one_peer_disturbs_nobody(
    node: SfuMediaNode, pump: EventPump
) -> None:
    clients = [pump.add(TestClient(node, "r", name)) for name in ("p0", "p1", "bad")]
    for client in clients:
        await client.join()
    bad = clients[2]
    for client in clients:
        others = {c.peer_id for c in clients} - {client.peer_id}
        await wait_until(
            lambda c=client, o=others: (
                c.publishers("video", 3) == o and c.publishers("audio", 5) == o
            ),
            15,
            f"{client.peer_id} receiving everyone",
        )

    transceiver = next(t for t in bad.pc.getTransceivers() if t.kind == "audio")
    audio_pt = int(transceiver._codecs[0].payloadType or 0)
    level_id = next(e.id for e in transceiver._headerExtensions if e.uri == AUDIO_LEVEL)
    transport = transceiver.sender.transport
    send_rtp = transport._send_rtp

    async def send_malformed(data: bytes) -> None:
        await send_rtp(malform_audio_level(data, audio_pt, level_id))

    malformed_before = adapter.stats["rtp_malformed"]
    transport._send_rtp = send_malformed  # type: ignore[method-assign]
    await asyncio.sleep(0.5)
    before = {
        (c.peer_id, o.peer_id, kind): c.frames_from(o.peer_id, kind)
        for c in clients
        for o in clients
        if o is not c
        for kind in ("audio", "video")
    }
    await asyncio.sleep(2.0)
    assert adapter.stats["rtp_malformed"] - malformed_before > 20
    for (subscriber, publisher, kind), frames in before.items():
        client = next(c for c in clients if c.peer_id == subscriber)
        now = client.frames_from(publisher, kind)
        # 2 s: about 30 video frames at 15 fps (aiortc's pacing), 100 audio frames.
        assert now - frames >= (10 if kind == "video" else 40), (subscriber, publisher, kind)
    bad_session = node._rooms["r"].peers["bad"]
    assert bad_session.pc.connectionState == "connected"
    assert not pump.errors
    for client in clients:
        await client.close()

"""Passthrough recording of a real 3-party session into WebM, reopened with PyAV."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import av
import pytest

from media.forwarding import TrackForwarder
from media.interfaces import RecordingFile, RecordingStopped
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import (
    CodecCalls,
    EventPump,
    PatternVideoTrack,
    TestClient,
    ToneAudioTrack,
    receive_event,
    wait_until,
)

pytestmark = pytest.mark.media

AUDIO_FRAMES = 100  # 2 s of 20 ms Opus frames per peer
VIDEO_FRAMES = 45  # 1.5 s at aiortc's 30 fps pts spacing, after the first recorded keyframe
VIDEO_FRAME_S = 1 / 30
SETTLE_S = 20  # deadline for what was sent to arrive, however loaded the machine


def decode_all(path: Path) -> dict[str, int]:
    counts = {"video": 0, "audio": 0}
    with av.open(str(path)) as container:
        for stream in container.streams:
            assert stream.type in counts
        for frame in container.decode(*container.streams):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return counts


def _packets(report: Any, stats_type: str, field: str) -> int:
    return sum(getattr(s, field) for s in report.values() if s.type == stats_type)


async def _settled(node: SfuMediaNode, room_id: str, clients: list[TestClient]) -> bool:
    """Every source is held at its gate and the node received every RTP packet it sent."""
    forwarders: dict[tuple[str, str], TrackForwarder] = {
        (f.publisher_id, f.kind): f for f in node._rooms[room_id].forwarders()
    }
    for client in clients:
        for track in (client.video, client.audio):
            assert track is not None
            if not track.gate.idle:
                return False
            (sender,) = [s for s in client.pc.getSenders() if s.track is track]
            sent = _packets(await sender.getStats(), "outbound-rtp", "packetsSent")
            receiver = forwarders[(client.peer_id, track.kind)].receiver
            if _packets(await receiver.getStats(), "inbound-rtp", "packetsReceived") != sent:
                return False
    return True


async def settle(node: SfuMediaNode, room_id: str, clients: list[TestClient], what: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not await _settled(node, room_id, clients):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {SETTLE_S} s waiting for {what} to arrive")
        await asyncio.sleep(0.05)


async def test_three_party_recording_yields_playable_webm_with_matching_hashes(
    node: SfuMediaNode, pump: EventPump, tmp_path: Path
) -> None:
    """The peers' sources are gated, so the test knows exactly which frames were sent while
    recording: each file must hold all of them and nothing else, however loaded the machine."""
    clients = [pump.add(TestClient(node, "rec", f"p{i}")) for i in range(3)]
    for client in clients:
        await client.join()
    for client in clients:
        await wait_until(lambda c=client: len(c.publishers("video", 3)) == 2, 15, "video")
    videos = [c.video for c in clients if c.video is not None]
    audios = [c.audio for c in clients if c.audio is not None]
    sources: list[PatternVideoTrack | ToneAudioTrack] = [*videos, *audios]
    for track in sources:
        track.gate.hold()
    await settle(node, "rec", clients, "the frames sent before recording")
    forwarders: dict[tuple[str, str], TrackForwarder] = {
        (f.publisher_id, f.kind): f for f in node._rooms["rec"].forwarders()
    }
    calls = CodecCalls()
    started = time.time()
    with calls.installed():
        await node.start_recording(room_id="rec", directory=tmp_path)
        # Video is recorded from a keyframe (asked for at the start): release one frame at a
        # time until each publisher's keyframe has arrived; earlier frames are not recorded.
        keyframes_before = {
            c.peer_id: forwarders[(c.peer_id, "video")].keyframes_in for c in clients
        }
        recorded_video = {c.peer_id: 0 for c in clients}
        deadline = time.monotonic() + SETTLE_S
        while not all(recorded_video.values()):
            assert time.monotonic() < deadline, f"no keyframe after the start: {recorded_video}"
            for client in clients:
                if not recorded_video[client.peer_id]:
                    assert client.video is not None
                    client.video.gate.allow(1)
            await settle(node, "rec", clients, "a video frame")
            for client in clients:
                forwarder = forwarders[(client.peer_id, "video")]
                if forwarder.keyframes_in > keyframes_before[client.peer_id]:
                    recorded_video[client.peer_id] = 1
        for video in videos:
            video.gate.allow(VIDEO_FRAMES)
        for audio in audios:
            audio.gate.allow(AUDIO_FRAMES)
        await settle(node, "rec", clients, "the frames sent while recording")
        files = await node.stop_recording(room_id="rec")
    stopped_at = time.time()
    for client in clients:
        await client.close()

    assert {(f.peer_id, f.kind) for f in files} == {
        (f"p{i}", kind) for i in range(3) for kind in ("video", "audio")
    }
    stopped = await receive_event(pump, RecordingStopped, 2, room_id="rec")
    assert stopped.files == files and not stopped.interrupted
    for record in files:
        assert isinstance(record, RecordingFile)
        assert record.path.parent == tmp_path
        assert hashlib.sha256(record.path.read_bytes()).hexdigest() == record.sha256
        assert record.size_bytes == record.path.stat().st_size
        assert started <= record.started_at_unix <= stopped_at
        counts = await asyncio.to_thread(decode_all, record.path)
        # Every frame sent from the first recorded one arrived and decodes, and nothing else
        # is in the file; its duration is that of the frames' own timestamps.
        if record.kind == "video":
            assert counts == {"video": 1 + VIDEO_FRAMES, "audio": 0}
            assert abs(record.duration_s - VIDEO_FRAMES * VIDEO_FRAME_S) <= 0.002
        else:
            assert counts == {"video": 0, "audio": AUDIO_FRAMES}
            assert abs(record.duration_s - AUDIO_FRAMES * 0.020) <= 0.001
    # the recording itself decoded and encoded nothing: only this test's decode_all did
    relay = calls.relay_calls(node)
    assert relay["video_encode"] == relay["audio_encode"] == 0


async def test_opus_file_has_an_opus_head(
    node: SfuMediaNode, pump: EventPump, tmp_path: Path
) -> None:
    client = pump.add(TestClient(node, "rec", "solo", video=False))
    await client.join()
    await wait_until(lambda: node._rooms["rec"].forwarders(), 5, "published")
    await node.start_recording(room_id="rec", directory=tmp_path)
    await asyncio.sleep(1.0)
    (record,) = await node.stop_recording(room_id="rec")
    with av.open(str(record.path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        assert bytes(stream.codec_context.extradata or b"").startswith(b"OpusHead")
    await client.close()

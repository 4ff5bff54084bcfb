"""Passthrough recording of a real 3-party session into WebM, reopened with PyAV."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import av
import pytest

from media.interfaces import RecordingFile, RecordingStopped
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import CodecCalls, EventPump, TestClient, receive_event, wait_until

pytestmark = pytest.mark.media

RECORD_S = 3.0


def decode_all(path: Path) -> dict[str, int]:
    counts = {"video": 0, "audio": 0}
    with av.open(str(path)) as container:
        for stream in container.streams:
            assert stream.type in counts
        for frame in container.decode(*container.streams):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return counts


async def test_three_party_recording_yields_playable_webm_with_matching_hashes(
    node: SfuMediaNode, pump: EventPump, tmp_path: Path
) -> None:
    clients = [pump.add(TestClient(node, "rec", f"p{i}")) for i in range(3)]
    for client in clients:
        await client.join()
    for client in clients:
        await wait_until(lambda c=client: len(c.publishers("video", 3)) == 2, 15, "video")
    calls = CodecCalls()
    started = time.time()
    with calls.installed():
        await node.start_recording(room_id="rec", directory=tmp_path)
        await asyncio.sleep(RECORD_S)
        files = await node.stop_recording(room_id="rec")
    window_s = time.time() - started  # what was really recorded, however loaded the machine
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
        assert started - 1 <= record.started_at_unix <= started + window_s
        # the media timeline of what arrived in the window: a loaded publisher sends late frames
        # in a burst, so their timestamps may span a little more than the wall-clock window
        assert RECORD_S - 1.5 <= record.duration_s <= window_s + 0.5
        counts = await asyncio.to_thread(decode_all, record.path)
        if record.kind == "video":
            assert counts["video"] >= 15  # from its first keyframe onwards
        else:
            assert counts["audio"] >= 50
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

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
        # Nothing is missing from the file's first frame (video: the keyframe asked for at the
        # start) to the stop. When that first frame came depends on the publisher: on a loaded
        # machine its keyframe comes late, and its frames in bursts, so their timestamps may
        # span a little more or less than the wall-clock time they arrived in.
        covered_s = started + window_s - record.started_at_unix
        assert covered_s - 1.0 <= record.duration_s <= covered_s + 0.5
        if record.kind == "audio":  # no keyframe to wait for: the whole window
            assert record.duration_s >= RECORD_S - 1.5
        counts = await asyncio.to_thread(decode_all, record.path)
        if record.kind == "video":  # 30 fps sent; at least 5 fps however loaded
            assert counts["video"] >= max(3, 5 * record.duration_s)
        else:  # 50 packets a second sent
            assert counts["audio"] >= 15 * record.duration_s
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

"""A full disk while recording: the recording stops and is reported as interrupted at once,
what was written stays readable, and the call goes on for everybody."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from media.interfaces import RecordingStopped
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import EventPump, TestClient, receive_event, wait_until

pytestmark = pytest.mark.media

DISK_BYTES = 200_000  # a few seconds of 3 video streams at most


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_disk_full_stops_recording_and_the_call_goes_on(
    node: SfuMediaNode, pump: EventPump, tiny_disk: Path
) -> None:
    clients = [pump.add(TestClient(node, "full", f"p{i}")) for i in range(3)]
    for client in clients:
        await client.join()
    for client in clients:
        await wait_until(lambda c=client: len(c.publishers("video", 3)) == 2, 15, "video")
    await node.start_recording(room_id="full", directory=tiny_disk)

    stopped = await receive_event(pump, RecordingStopped, 30, room_id="full")
    assert stopped.interrupted  # reported by itself, nobody called stop_recording
    with pytest.raises(Exception, match="not being recorded"):
        await node.stop_recording(room_id="full")

    # The call goes on: every client still receives fresh video from both others.
    def video_frames(client: TestClient) -> int:
        return sum(client.frames_from(other.peer_id, "video") for other in clients)

    before = {c.peer_id: video_frames(c) for c in clients}
    await asyncio.sleep(1.5)
    for client in clients:
        assert video_frames(client) > before[client.peer_id] + 10, client.peer_id

    # What was written before the disk filled up is readable.
    readable = 0
    for record in stopped.files:
        try:
            with av.open(str(record.path)) as container:
                readable += sum(1 for _ in container.demux())
        except av.error.FFmpegError:
            continue
    assert readable > 0
    for client in clients:
        await client.close()

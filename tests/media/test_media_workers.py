"""WorkerPoolMediaNode: the same SFU in worker processes; kill -9 of a worker mid-recording."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest

from media import adapter
from media.errors import MediaSaturated
from media.interfaces import PeerFailed, RecordingStopped
from media.sfu import SfuMediaNode
from media.workers import WorkerPoolMediaNode
from tests.media.rtc_clients import EventPump, TestClient, receive_event, wait_until

pytestmark = pytest.mark.media


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPoolMediaNode]:
    adapter.restrict_host_addresses(["127.0.0.1"])  # for the test's own client peers
    async with WorkerPoolMediaNode(workers=2, host_addresses=["127.0.0.1"]) as pool:
        yield pool


async def _join(pump: EventPump, pool: WorkerPoolMediaNode, room: str, n: int) -> list[TestClient]:
    clients = [pump.add(TestClient(pool, room, f"p{i}")) for i in range(n)]
    for client in clients:
        await client.join()
    for client in clients:
        await wait_until(
            lambda c=client: len(c.publishers("video", 3)) == n - 1, 20, "video via worker"
        )
    return clients


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(*container.streams))


async def test_rooms_are_pinned_to_workers_and_forward_without_codecs(
    pool: WorkerPoolMediaNode,
) -> None:
    pump = EventPump(pool)
    try:
        a = await _join(pump, pool, "room-a", 2)
        b = await _join(pump, pool, "room-b", 2)
        assert pool.worker_pid_for_room("room-a") != pool.worker_pid_for_room("room-b")
        stats = await pool.adapter_stats()
        assert sum(s["passthrough_frames"] for s in stats) > 0
        assert sum(s["decoded_frames_fallback"] for s in stats) == 0  # no decoding receiver
        for client in a + b:
            await client.close()
    finally:
        await pump.close()


async def test_kill_9_of_a_worker_mid_recording_fails_peers_and_leaves_playable_files(
    pool: WorkerPoolMediaNode, tmp_path: Path
) -> None:
    pump = EventPump(pool)
    try:
        clients = await _join(pump, pool, "rec", 3)
        await pool.start_recording(room_id="rec", directory=tmp_path)
        await asyncio.sleep(2.5)
        victim = pool.worker_pid_for_room("rec")
        os.kill(victim, signal.SIGKILL)

        for i in range(3):
            await receive_event(pump, PeerFailed, 10, room_id="rec", peer_id=f"p{i}")
        stopped = await receive_event(pump, RecordingStopped, 10, room_id="rec")
        assert stopped.interrupted
        assert {(f.peer_id, f.kind) for f in stopped.files} == {
            (f"p{i}", kind) for i in range(3) for kind in ("video", "audio")
        }
        for record in stopped.files:
            frames = await asyncio.to_thread(_decoded_frames, record.path)
            assert frames >= (10 if record.kind == "video" else 40), record
            assert record.duration_s > 0.5

        await wait_until(
            lambda: victim not in pool.worker_pids() and all(pool.worker_pids()),
            15,
            "worker restarted",
        )
        for client in clients:
            await client.close()
        again = await _join(pump, pool, "after", 2)
        for client in again:
            await client.close()
    finally:
        await pump.close()


class SaturatedWorkerZero(SfuMediaNode):
    """The SFU of worker process 0 reports its loop lagging 1 s (saturated); the others 0."""

    def __init__(self, **kwargs: Any) -> None:
        lag = 1.0 if multiprocessing.current_process().name.endswith("-0") else 0.0
        super().__init__(load_probe=lambda: lag, **kwargs)


class EveryWorkerSaturated(SfuMediaNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(load_probe=lambda: 1.0, **kwargs)


async def test_a_new_room_refused_by_a_saturated_worker_goes_to_another(
    tmp_path: Path,
) -> None:
    """Issue #18 item 7: the pool places a new room on the least loaded worker; when that one
    is saturated (MediaSaturated from its loop-lag probe) the room goes to the next, and only
    when every worker refuses does the offer fail with `media_saturated`."""
    adapter.restrict_host_addresses(["127.0.0.1"])
    node_class = f"{__name__}:SaturatedWorkerZero"
    async with WorkerPoolMediaNode(
        workers=2, host_addresses=["127.0.0.1"], node_class=node_class
    ) as pool:
        pump = EventPump(pool)
        try:
            # worker 0 carries no room, so it is tried first, and refuses
            clients = await _join(pump, pool, "room-a", 2)
            assert pool.worker_pid_for_room("room-a") == pool.worker_pids()[1]
            for client in clients:
                await client.close()
        finally:
            await pump.close()
    async with WorkerPoolMediaNode(
        workers=2, host_addresses=["127.0.0.1"], node_class=f"{__name__}:EveryWorkerSaturated"
    ) as pool:
        pump = EventPump(pool)
        try:
            client = pump.add(TestClient(pool, "room-b", "p0"))
            with pytest.raises(MediaSaturated):
                await client.join()
            await client.close()
        finally:
            await pump.close()

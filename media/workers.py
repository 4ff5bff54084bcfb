"""`WorkerPoolMediaNode`: the SFU in worker processes, one per core, each room pinned to one.

    WorkerPoolMediaNode ──Pipe (length-prefixed pickle)──► worker process: SfuMediaNode
           ▲   (request id, method, kwargs) ──────────────►
           └── ("result"|"error", id, ...) / ("event", MediaEvent) ◄──

Processes are started with multiprocessing's "spawn" context (no forked event loop or aiortc
state). The parent reads each pipe in a small thread and hands messages to its event loop.
A worker that dies (even kill -9) is seen as EOF on its pipe: pending calls fail with
`MediaFailure`, every peer of its rooms gets `PeerFailed`, each open recording is reported as
`RecordingStopped(interrupted=True)` with the files found on disk (flushed, playable), and the
worker is restarted. Rooms it held are gone; their clients rejoin through signaling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import av

from media import errors
from media.bandwidth import BandwidthSettings
from media.errors import MediaFailure, RecordingError
from media.interfaces import (
    IceCandidate,
    IceServer,
    MediaEvent,
    PeerFailed,
    PublishGrant,
    RecordingFile,
    RecordingStopped,
    SessionDescription,
    TrackKind,
)

logger = logging.getLogger(__name__)

RPC_TIMEOUT_S = 30.0
WORKER_START_TIMEOUT_S = 30.0
MAX_QUEUED_EVENTS = 10_000
_ALLOWED_METHODS = frozenset(
    {
        "accept_offer",
        "accept_answer",
        "add_candidate",
        "close_peer",
        "set_forwarding",
        "set_receive_video",
        "request_keyframe",
        "start_recording",
        "stop_recording",
        "close_room",
        "subscription_stats",
        "adapter_stats",
    }
)


# ---------------------------------------------------------------- worker process side


def _worker_main(conn: multiprocessing.connection.Connection, options: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_worker(conn, options))


async def _worker(conn: multiprocessing.connection.Connection, options: dict[str, Any]) -> None:
    import importlib

    from media import adapter

    module_name, _, class_name = options.pop("node_class", "media.sfu:SfuMediaNode").partition(":")
    node_class = getattr(importlib.import_module(module_name), class_name)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = ("close",)
            loop.call_soon_threadsafe(inbox.put_nowait, message)
            if message[0] == "close":
                return

    node = node_class(**options)
    threading.Thread(target=read, name="media-worker-rpc", daemon=True).start()

    def send(message: Any) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            conn.send(message)

    async def forward_events() -> None:
        async for event in node.events():
            send(("event", event))

    async def call(request_id: int, method: str, kwargs: dict[str, Any]) -> None:
        try:
            if method not in _ALLOWED_METHODS:
                raise MediaFailure(f"unknown media method {method}")
            if method == "adapter_stats":
                result: Any = dict(adapter.stats)
            elif method == "subscription_stats":
                result = node.subscription_stats(**kwargs)
            else:
                result = await getattr(node, method)(**kwargs)
            send(("result", request_id, result))
        except MediaFailure as exc:
            send(("error", request_id, type(exc).__name__, str(exc)))
        except Exception as exc:
            logger.exception("media worker: %s failed", method)
            send(("error", request_id, "MediaFailure", f"{type(exc).__name__}: {exc}"))

    events_task = asyncio.create_task(forward_events())
    calls: set[asyncio.Task[None]] = set()
    send(("ready", os.getpid()))
    while True:
        message = await inbox.get()
        if message[0] == "close":
            break
        _, request_id, method, kwargs = message
        task = asyncio.create_task(call(request_id, method, kwargs))
        calls.add(task)
        task.add_done_callback(calls.discard)
    await node.close()
    events_task.cancel()
    for task in calls:
        task.cancel()
    await asyncio.gather(events_task, *calls, return_exceptions=True)
    send(("closed",))


# ---------------------------------------------------------------- parent side


@dataclass(eq=False)
class _Worker:
    index: int
    process: Any
    conn: multiprocessing.connection.Connection
    pid: int = 0
    ready: asyncio.Future[int] | None = None
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    rooms: set[str] = field(default_factory=set)
    dead: bool = False


@dataclass(eq=False)
class _RoomState:
    worker: _Worker
    peers: set[str] = field(default_factory=set)
    recording_dir: Path | None = None


class WorkerPoolMediaNode:
    """MediaNode running `SfuMediaNode`s in worker processes.

    Args:
        workers: number of processes (default: os.cpu_count()).
        video_codec, host_addresses, ice_connect_timeout_s, keyframe_min_interval_s,
            bandwidth: passed to each worker's SfuMediaNode.
        restart_workers: start a new process when one dies.
        node_class: "module:Class" of the node each worker runs (an SfuMediaNode subclass;
            the benchmark's re-encoding baseline uses this).

    Call `await start()` (or use it as `async with`) before the first request.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        video_codec: Literal["vp8", "h264"] = "vp8",
        host_addresses: list[str] | None = None,
        ice_connect_timeout_s: float | None = None,
        keyframe_min_interval_s: float | None = None,
        bandwidth: BandwidthSettings | None = None,
        restart_workers: bool = True,
        node_class: str = "media.sfu:SfuMediaNode",
    ) -> None:
        self.worker_count = workers or os.cpu_count() or 1
        self._options: dict[str, Any] = {"video_codec": video_codec, "node_class": node_class}
        if host_addresses is not None:
            self._options["host_addresses"] = list(host_addresses)
        if ice_connect_timeout_s is not None:
            self._options["ice_connect_timeout_s"] = ice_connect_timeout_s
        if keyframe_min_interval_s is not None:
            self._options["keyframe_min_interval_s"] = keyframe_min_interval_s
        if bandwidth is not None:
            self._options["bandwidth"] = bandwidth
        self.restart_workers = restart_workers
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._rooms: dict[str, _RoomState] = {}
        self._events: asyncio.Queue[MediaEvent] = asyncio.Queue(maxsize=MAX_QUEUED_EVENTS)
        self._next_id = 0
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> WorkerPoolMediaNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._workers = [self._spawn(i) for i in range(self.worker_count)]
        await asyncio.gather(*(self._wait_ready(w) for w in self._workers))

    def _spawn(self, index: int) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._options),
            name=f"onedoor-media-{index}",
            daemon=True,
        )
        process.start()
        child_conn.close()
        loop = asyncio.get_running_loop()
        worker = _Worker(index, process, parent_conn, ready=loop.create_future())
        threading.Thread(
            target=self._read, args=(worker, loop), name=f"media-pool-rpc-{index}", daemon=True
        ).start()
        return worker

    async def _wait_ready(self, worker: _Worker) -> None:
        assert worker.ready is not None
        async with asyncio.timeout(WORKER_START_TIMEOUT_S):
            worker.pid = await worker.ready

    def _read(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._on_worker_exit, worker)
                return
            try:
                loop.call_soon_threadsafe(self._on_message, worker, message)
            except RuntimeError:
                return

    def _on_message(self, worker: _Worker, message: Any) -> None:
        kind = message[0]
        if kind == "ready":
            if worker.ready is not None and not worker.ready.done():
                worker.ready.set_result(message[1])
        elif kind == "event":
            self._emit(message[1])
        elif kind in ("result", "error"):
            future = worker.pending.pop(message[1], None)
            if future is None or future.done():
                return
            if kind == "result":
                future.set_result(message[2])
            else:
                cls = getattr(errors, message[2], MediaFailure)
                if not (isinstance(cls, type) and issubclass(cls, MediaFailure)):
                    cls = MediaFailure
                future.set_exception(cls(message[3]))

    def _emit(self, event: MediaEvent) -> None:
        if isinstance(event, PeerFailed):
            room = self._rooms.get(event.room_id)
            if room is not None:
                room.peers.discard(event.peer_id)
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("media event queue full, dropping %s", type(event).__name__)

    def _on_worker_exit(self, worker: _Worker) -> None:
        if worker.dead:
            return
        worker.dead = True
        for future in worker.pending.values():
            if not future.done():
                future.set_exception(MediaFailure("media worker died"))
        worker.pending.clear()
        if worker.ready is not None and not worker.ready.done():
            worker.ready.set_exception(MediaFailure("media worker died during start"))
        if self._closing:
            return
        logger.error("media worker %d (pid %s) died", worker.index, worker.pid)
        for room_id in sorted(worker.rooms):
            room = self._rooms.pop(room_id, None)
            if room is None:
                continue
            for peer_id in sorted(room.peers):
                self._emit(PeerFailed(room_id, peer_id, "media worker died"))
            if room.recording_dir is not None:
                self._spawn_task(self._report_interrupted(room_id, room.recording_dir))
        worker.rooms.clear()
        with contextlib.suppress(OSError):
            worker.conn.close()
        if self.restart_workers:
            self._spawn_task(self._restart(worker.index))

    async def _restart(self, index: int) -> None:
        await asyncio.to_thread(self._workers[index].process.join, 5)
        fresh = self._spawn(index)
        self._workers[index] = fresh
        try:
            await self._wait_ready(fresh)
        except (MediaFailure, TimeoutError):
            logger.exception("media worker %d did not restart", index)

    async def _report_interrupted(self, room_id: str, directory: Path) -> None:
        files = await asyncio.to_thread(_describe_left_files, room_id, directory)
        self._emit(RecordingStopped(room_id, files, interrupted=True))

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ RPC

    def _worker_for(
        self, room_id: str, *, create: bool, avoid: frozenset[int] = frozenset()
    ) -> _RoomState:
        room = self._rooms.get(room_id)
        if room is not None:
            return room
        if not create:
            raise errors.PeerNotFound(f"no media room {room_id}")
        live = [w for w in self._workers if not w.dead and w.pid]
        if not live:
            raise MediaFailure("no media worker available")
        candidates = [w for w in live if w.index not in avoid]
        if not candidates:
            raise errors.MediaSaturated("every media worker is saturated")
        worker = min(candidates, key=lambda w: (len(w.rooms), w.index))
        worker.rooms.add(room_id)
        room = self._rooms[room_id] = _RoomState(worker)
        return room

    async def _call(self, worker: _Worker, method: str, **kwargs: Any) -> Any:
        if worker.dead:
            raise MediaFailure("media worker died")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = future
        try:
            worker.conn.send((("call"), request_id, method, kwargs))
        except (OSError, BrokenPipeError) as exc:
            worker.pending.pop(request_id, None)
            raise MediaFailure("media worker unreachable") from exc
        try:
            async with asyncio.timeout(RPC_TIMEOUT_S):
                return await future
        except TimeoutError as exc:
            worker.pending.pop(request_id, None)
            raise errors.NegotiationTimeout(f"media worker did not answer {method}") from exc

    # ------------------------------------------------------------ MediaNode

    async def accept_offer(
        self,
        *,
        room_id: str,
        peer_id: str,
        offer: SessionDescription,
        ice_servers: list[IceServer],
        grant: PublishGrant,
    ) -> SessionDescription:
        # A new room refused by a saturated worker (its loop lags: media.load) goes to the
        # next least loaded one; a room a worker already carries stays there (issue #18 item 7).
        new_room = room_id not in self._rooms
        refused: set[int] = set()
        while True:
            room = self._worker_for(room_id, create=True, avoid=frozenset(refused))
            try:
                answer: SessionDescription = await self._call(
                    room.worker,
                    "accept_offer",
                    room_id=room_id,
                    peer_id=peer_id,
                    offer=offer,
                    ice_servers=ice_servers,
                    grant=grant,
                )
            except errors.MediaSaturated:
                if not new_room or room.peers or self._rooms.get(room_id) is not room:
                    raise
                refused.add(room.worker.index)
                room.worker.rooms.discard(room_id)
                del self._rooms[room_id]
                logger.info(
                    "media worker %d saturated: room %s tries another", room.worker.index, room_id
                )
                continue
            room.peers.add(peer_id)
            return answer

    async def accept_answer(
        self, *, room_id: str, peer_id: str, answer: SessionDescription
    ) -> None:
        room = self._worker_for(room_id, create=False)
        await self._call(
            room.worker, "accept_answer", room_id=room_id, peer_id=peer_id, answer=answer
        )

    async def add_candidate(
        self, *, room_id: str, peer_id: str, candidate: IceCandidate | None
    ) -> None:
        room = self._worker_for(room_id, create=False)
        await self._call(
            room.worker, "add_candidate", room_id=room_id, peer_id=peer_id, candidate=candidate
        )

    async def close_peer(self, *, room_id: str, peer_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        room.peers.discard(peer_id)
        await self._call(room.worker, "close_peer", room_id=room_id, peer_id=peer_id)

    async def set_forwarding(
        self, *, room_id: str, peer_id: str, kind: TrackKind, enabled: bool
    ) -> None:
        room = self._worker_for(room_id, create=False)
        await self._call(
            room.worker,
            "set_forwarding",
            room_id=room_id,
            peer_id=peer_id,
            kind=kind,
            enabled=enabled,
        )

    async def set_receive_video(self, *, room_id: str, peer_id: str, enabled: bool) -> None:
        room = self._worker_for(room_id, create=False)
        await self._call(
            room.worker, "set_receive_video", room_id=room_id, peer_id=peer_id, enabled=enabled
        )

    async def request_keyframe(self, *, room_id: str, peer_id: str) -> None:
        room = self._worker_for(room_id, create=False)
        await self._call(room.worker, "request_keyframe", room_id=room_id, peer_id=peer_id)

    async def start_recording(self, *, room_id: str, directory: Path) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            raise RecordingError(f"no media room {room_id}")
        await self._call(room.worker, "start_recording", room_id=room_id, directory=directory)
        room.recording_dir = Path(directory)

    async def stop_recording(self, *, room_id: str) -> tuple[RecordingFile, ...]:
        room = self._rooms.get(room_id)
        if room is None:
            raise RecordingError(f"room {room_id} is not being recorded")
        files: tuple[RecordingFile, ...] = await self._call(
            room.worker, "stop_recording", room_id=room_id
        )
        room.recording_dir = None
        return files

    async def close_room(self, *, room_id: str) -> None:
        room = self._rooms.pop(room_id, None)
        if room is None:
            return
        room.worker.rooms.discard(room_id)
        await self._call(room.worker, "close_room", room_id=room_id)

    async def events(self) -> AsyncIterator[MediaEvent]:
        while True:
            yield await self._events.get()

    async def close(self) -> None:
        self._closing = True
        for worker in self._workers:
            if not worker.dead:
                with contextlib.suppress(OSError, BrokenPipeError):
                    worker.conn.send(("close",))
        for worker in self._workers:
            await asyncio.to_thread(worker.process.join, 10)
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join, 5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------ diagnostics

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def worker_pid_for_room(self, room_id: str) -> int:
        return self._worker_for(room_id, create=False).worker.pid

    async def subscription_stats(self, room_id: str) -> list[Any]:
        room = self._worker_for(room_id, create=False)
        result: list[Any] = await self._call(room.worker, "subscription_stats", room_id=room_id)
        return result

    async def worker_cpu_s(self) -> float:
        """User+system CPU seconds of all live workers (for benchmarks)."""
        import psutil

        total = 0.0
        for worker in self._workers:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(worker.pid).cpu_times()
                total += times.user + times.system
        return total

    async def adapter_stats(self) -> list[dict[str, int]]:
        return [await self._call(w, "adapter_stats") for w in self._workers if not w.dead]


def _describe_left_files(room_id: str, directory: Path) -> tuple[RecordingFile, ...]:
    """Files a dead worker left behind: hashed, and their duration read back with PyAV."""
    from media.recorder import TrackKey, describe_file, safe_name

    files = []
    prefix = f"{safe_name(room_id)}-"
    for path in sorted(directory.glob(f"{prefix}*.webm")):
        parts = path.stem[len(prefix) :].rsplit("-", 2)  # peer, kind, track
        if len(parts) != 3 or parts[1] not in ("audio", "video"):
            continue
        kind: TrackKind = "audio" if parts[1] == "audio" else "video"
        duration_s = 0.0
        try:
            with av.open(str(path)) as container:
                for packet in container.demux():
                    if packet.pts is not None and packet.time_base is not None:
                        duration_s = max(duration_s, float(packet.pts * packet.time_base))
        except av.FFmpegError:
            logger.warning("recording %s left unreadable after worker death", path)
        started = path.stat().st_mtime - duration_s
        files.append(
            describe_file(room_id, TrackKey(parts[0], kind, parts[2]), path, started, duration_s)
        )
    return tuple(files)

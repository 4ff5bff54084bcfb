"""A small client of the real `onedoor.v1` signaling protocol, for benchmarks (bench/join.py,
bench/soak.py) and the soak test.

- `Staff`: a signed-in staff member's HTTP side (cookie + CSRF): create sessions, issue join
  tokens (`POST /api/sessions`, `POST /api/sessions/{id}/tokens`).
- `SigClient`: one WebSocket (`GET /ws`, subprotocol `onedoor.v1`). A reader task resolves
  requests by `re` (ack / error / answer / pong), hands server `offer`s to a callback, and keeps
  a bounded backlog of everything else for `expect()`.
- `MediaParticipant`: a `SigClient` plus a `bench.loadclient.LoadPeer` (pre-encoded clip
  senders, receive counting without decoding): offers its tracks, answers the server's
  renegotiation offers, one negotiation step at a time.

Every peer connection is built with explicit `iceServers` (empty): see bench/loadclient.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from bench.loadclient import LoadPeer
from bench.media_clip import Clip

PROTOCOL = "onedoor.v1"
REPLY_TYPES = ("ack", "error", "answer", "pong")
DEFAULT_TIMEOUT_S = 20.0


class SignalingError(RuntimeError):
    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = str(message.get("code"))
        self.message = message


class Staff:
    """HTTP side of a signed-in staff member (cookie header and CSRF token from
    `ServerProcess.sign_in`)."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, cookie: str, csrf: str):
        self.http, self.base_url, self.cookie, self.csrf = http, base_url, cookie, csrf

    async def api(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Cookie": self.cookie, "X-CSRF-Token": self.csrf, "Accept": "application/json"}
        async with self.http.post(self.base_url + path, json=body, headers=headers) as resp:
            data: dict[str, Any] = await resp.json()
            if resp.status >= 300:
                raise RuntimeError(f"POST {path}: {resp.status} {data}")
            return data

    async def create_session(
        self, title: str = "bench", capacity: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "mediation", "title": title}
        if capacity is not None:
            body["capacity"] = capacity
        return await self.api("/api/sessions", body)

    async def issue_token(self, session_id: int, display_name: str) -> str:
        issued = await self.api(
            f"/api/sessions/{session_id}/tokens", {"display_name": display_name, "role": "party"}
        )
        return str(issued["token"])


class SigClient:
    _ids = itertools.count(1)

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        *,
        cookie: str | None = None,
        name: str = "",
        backlog: int = 256,
    ) -> None:
        self.http, self.base_url, self.cookie, self.name = http, base_url, cookie, name
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.backlog: deque[dict[str, Any]] = deque(maxlen=backlog)
        self._arrived = asyncio.Condition()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.on_offer: Callable[[str], Coroutine[Any, Any, None]] | None = None
        #: Called (as a task) with a server `error` that answers no request of ours.
        self.on_error: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None
        self._offer_tasks: set[asyncio.Task[None]] = set()
        self.hello: dict[str, Any] = {}
        self.welcome: dict[str, Any] = {}
        self.peer_id = ""
        self.status = "connecting"  # connecting, lobby, joined, left, closed
        self.close_code: int | None = None
        self.errors: list[dict[str, Any]] = []  # server errors not answering a request

    # ------------------------------------------------------------------ socket
    async def connect(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        self.ws = await self.http.ws_connect(
            self.base_url + "/ws",
            protocols=(PROTOCOL,),
            headers=headers,
            autoping=True,
            heartbeat=None,
            max_msg_size=1 << 20,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
        )
        self._reader = asyncio.create_task(self._read(), name=f"sig-read:{self.name}")
        self.hello = await self.expect("hello", timeout_s)
        return self.hello

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data: dict[str, Any] = json.loads(msg.data)
                re_id = data.get("re")
                fut = self._pending.pop(re_id, None) if re_id is not None else None
                if fut is not None and data["type"] in REPLY_TYPES:
                    if not fut.done():
                        fut.set_result(data)
                    continue
                self._track_state(data)
                if data["type"] == "offer" and self.on_offer is not None:
                    task = asyncio.create_task(self.on_offer(data["sdp"]))
                    self._offer_tasks.add(task)
                    task.add_done_callback(self._offer_tasks.discard)
                    continue
                if data["type"] == "error":
                    self.errors.append(data)
                    if self.on_error is not None:
                        task = asyncio.create_task(self.on_error(data))
                        self._offer_tasks.add(task)
                        task.add_done_callback(self._offer_tasks.discard)
                async with self._arrived:
                    self.backlog.append(data)
                    self._arrived.notify_all()
        finally:
            self.close_code = self.ws.close_code
            if self.status != "left":
                self.status = "closed"
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"socket closed ({self.close_code})"))
            self._pending.clear()
            async with self._arrived:
                self._arrived.notify_all()

    def _track_state(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "welcome":
            self.welcome = data
            self.peer_id = data["peer_id"]
            self.status = data["status"]
        elif kind == "admitted":
            self.status = "joined"
        elif kind == "paused":
            self.status = "lobby"
        elif kind in ("denied", "removed", "session_ended"):
            self.status = "left"

    async def send(self, type_: str, **fields: Any) -> str:
        assert self.ws is not None
        msg_id = f"{next(self._ids)}"
        await self.ws.send_str(json.dumps({"type": type_, "id": msg_id, **fields}))
        return msg_id

    async def request(
        self, type_: str, timeout_s: float = DEFAULT_TIMEOUT_S, **fields: Any
    ) -> dict[str, Any]:
        """Send; return the ack/answer/pong answering it; raise SignalingError on `error`."""
        assert self.ws is not None
        msg_id = f"{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await self.ws.send_str(json.dumps({"type": type_, "id": msg_id, **fields}))
            async with asyncio.timeout(timeout_s):
                reply = await fut
        finally:
            self._pending.pop(msg_id, None)
        if reply["type"] == "error":
            raise SignalingError(reply)
        return reply

    async def expect(
        self, type_: str | tuple[str, ...], timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> dict[str, Any]:
        """Take the oldest backlog message of `type_` (waiting for it)."""
        types = (type_,) if isinstance(type_, str) else type_
        async with asyncio.timeout(timeout_s), self._arrived:
            while True:
                for msg in self.backlog:
                    if msg["type"] in types:
                        self.backlog.remove(msg)
                        return msg
                if not self.open and self._reader is not None and self._reader.done():
                    raise ConnectionError(f"{self.name}: socket closed ({self.close_code})")
                await self._arrived.wait()

    # ------------------------------------------------------------------ protocol
    async def join(
        self,
        room_id: str,
        *,
        token: str | None = None,
        role: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"room_id": room_id}
        if token is not None:
            fields["token"] = token
        if role is not None:
            fields["role"] = role
        await self.request("join", timeout_s, **fields)
        return await self.expect("welcome", timeout_s)

    async def ping(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
        started = time.perf_counter()
        await self.request("ping", timeout_s)
        return time.perf_counter() - started

    async def leave(self, timeout_s: float = 5.0) -> None:
        if self.open and self.status in ("joined", "lobby"):
            with contextlib.suppress(Exception):
                await self.request("leave", timeout_s)
        self.status = "left"

    async def close(self) -> None:
        for task in list(self._offer_tasks):
            task.cancel()
        await asyncio.gather(*self._offer_tasks, return_exceptions=True)
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await asyncio.gather(self._reader, return_exceptions=True)


class MediaParticipant:
    """A signaling client with one aiortc peer connection to the SFU: sends the pre-encoded
    clip, counts what it receives (no decoding), answers the server's renegotiation offers."""

    def __init__(self, sig: SigClient, *, depacketize: bool = False) -> None:
        self.sig = sig
        self.peer = LoadPeer(sig.name, depacketize=depacketize)
        self.renegotiations = 0
        self.negotiation_errors: list[str] = []
        self.publishes_audio = False
        self.expect_video = 0  # remote tracks the caller expects (bookkeeping for benches)
        self.expect_audio = 0
        #: Media connections rebuilt after a failure (the web client's self-heal, issue #18).
        self.rebuilds = 0
        self.rebuild_errors: list[str] = []
        self._depacketize = depacketize
        self._published: tuple[Clip, bool, int | None] | None = None
        self._rebuilding = False
        self._closing = False
        sig.on_offer = self._answer_server_offer
        sig.on_error = self._on_server_error
        self._watch(self.peer)

    def _watch(self, peer: LoadPeer) -> None:
        """Our own side noticing the connection is gone (ICE consent lost) rebuilds it too."""

        @peer.pc.on("connectionstatechange")
        def _changed() -> None:
            if peer is self.peer and peer.pc.connectionState in ("failed", "closed"):
                task = asyncio.create_task(self.rebuild())
                self.sig._offer_tasks.add(task)
                task.add_done_callback(self.sig._offer_tasks.discard)

    async def _on_server_error(self, error: dict[str, Any]) -> None:
        if error.get("code") == "media_failed":
            await self.rebuild()

    async def rebuild(self) -> None:
        """A new peer connection and offer, as the web client does after `media_failed` (the
        server forgot the old one) or its own connection failing."""
        if self._rebuilding or self._closing or self._published is None:
            return
        if self.sig.status != "joined":
            return
        self._rebuilding = True
        old, self.peer = self.peer, LoadPeer(self.sig.name, depacketize=self._depacketize)
        self._watch(self.peer)
        try:
            with contextlib.suppress(Exception):
                await old.close()
            clip, audio, video_fps = self._published
            await self.publish(clip, audio=audio, video_fps=video_fps)
            self.rebuilds += 1
        except Exception as e:  # reported by the caller (the soak lists them)
            self.rebuild_errors.append(f"{type(e).__name__}: {e}")
        finally:
            self._rebuilding = False

    async def _answer_server_offer(self, sdp: str) -> None:
        try:
            reply = await self.peer.answer(sdp)  # takes peer.lock
            await self.sig.request("answer", sdp=reply)
            self.renegotiations += 1
        except Exception as e:  # reported by the caller (the soak counts them)
            self.negotiation_errors.append(f"{type(e).__name__}: {e}")

    async def publish(
        self, clip: Clip, *, audio: bool = True, video_fps: int | None = None
    ) -> None:
        """Offer our clip tracks; apply the server's answer (server offers wait for it).
        `video_fps` plays the clip's frames at another rate (same packets, fewer per second)."""
        self._published = (clip, audio, video_fps)
        async with self.peer.lock:
            self.peer.add_clip_senders(clip, audio=audio)
            self.publishes_audio = audio
            if video_fps:
                for track in self.peer.senders:
                    if track.kind == "video":
                        track.rate, track.step = video_fps, 90_000 // video_fps
            offer = await self.peer.offer()
            reply = await self.sig.request("offer", sdp=offer)
            await self.peer.accept_answer(reply["sdp"])

    @property
    def connection_state(self) -> str:
        return str(self.peer.pc.connectionState)

    async def close(self, *, leave: bool = True) -> None:
        self._closing = True
        if leave:
            await self.sig.leave()
        with contextlib.suppress(Exception):
            await self.peer.close()
        await self.sig.close()

"""Test rig for signaling: a hand-written MediaNode fake, WebSocket participants, and an app
factory that wires `signaling.ws.setup` into `create_app` with test limits."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from media.errors import InvalidDescription, MediaSaturated, PeerNotFound
from media.interfaces import (
    IceCandidate,
    IceServer,
    MediaEvent,
    PeerDescription,
    PublishGrant,
    RecordingFile,
    RecordingStopped,
    SessionDescription,
    TrackKind,
)
from server.kernel.settings import Settings
from signaling.config import Limits
from signaling.protocol import PROTOCOL
from signaling.ws import limits_key, media_factory_key, prefix_key

Client = TestClient[Any, Any]
TIMEOUT_S = 5.0


class FakeMediaNode:
    """Implements media.interfaces.MediaNode: answers offers with a canned SDP, records what
    it was told, and lets a test push media events (renegotiation offers, speakers)."""

    def __init__(self) -> None:
        self.peers: dict[tuple[str, str], PublishGrant] = {}
        self.forwarding: dict[tuple[str, str, str], bool] = {}
        self.receive_video: dict[tuple[str, str], bool] = {}
        self.candidates: list[tuple[str, IceCandidate | None]] = []
        self.answers: list[tuple[str, str]] = []
        self.recording: dict[str, Path] = {}
        self.closed_rooms: list[str] = []
        self._events: asyncio.Queue[MediaEvent] = asyncio.Queue()
        self.saturated = False  # like a media worker whose loop lags: no new room

    async def accept_offer(
        self, *, room_id: str, peer_id: str, offer: SessionDescription,
        ice_servers: list[IceServer], grant: PublishGrant,
    ) -> SessionDescription:  # fmt: skip
        if not offer.sdp.startswith("v=0"):
            raise InvalidDescription("not an SDP")
        if self.saturated and not any(r == room_id for r, _ in self.peers):
            raise MediaSaturated("media worker saturated")  # as SfuMediaNode: no new room
        self.peers[(room_id, peer_id)] = grant
        return SessionDescription("answer", f"v=0 answer-for-{peer_id}")

    async def accept_answer(
        self, *, room_id: str, peer_id: str, answer: SessionDescription
    ) -> None:
        if (room_id, peer_id) not in self.peers:
            raise PeerNotFound(peer_id)
        self.answers.append((peer_id, answer.sdp))

    async def add_candidate(
        self, *, room_id: str, peer_id: str, candidate: IceCandidate | None
    ) -> None:
        self.candidates.append((peer_id, candidate))

    async def close_peer(self, *, room_id: str, peer_id: str) -> None:
        self.peers.pop((room_id, peer_id), None)

    async def set_forwarding(
        self, *, room_id: str, peer_id: str, kind: TrackKind, enabled: bool
    ) -> None:
        self.forwarding[(room_id, peer_id, kind)] = enabled

    async def request_keyframe(self, *, room_id: str, peer_id: str) -> None:
        return None

    async def set_receive_video(self, *, room_id: str, peer_id: str, enabled: bool) -> None:
        self.receive_video[(room_id, peer_id)] = enabled

    async def start_recording(self, *, room_id: str, directory: Path) -> None:
        self.recording[room_id] = directory

    async def stop_recording(self, *, room_id: str) -> tuple[RecordingFile, ...]:
        directory = self.recording.pop(room_id)
        files = []
        for room, peer in self.peers:
            if room != room_id:
                continue
            data = f"webm {peer}".encode()
            files.append(RecordingFile(
                room_id=room_id, peer_id=peer, kind="video", path=directory / f"{peer}.webm",
                sha256=hashlib.sha256(data).hexdigest(), started_at_unix=time.time() - 5,
                duration_s=5.0, size_bytes=len(data)))  # fmt: skip
        # As the real node does (media/interfaces.py): the files also arrive as an event.
        self._events.put_nowait(RecordingStopped(room_id, tuple(files)))
        return tuple(files)

    async def close_room(self, *, room_id: str) -> None:
        self.closed_rooms.append(room_id)

    def push(self, event: MediaEvent) -> None:
        self._events.put_nowait(event)

    def server_offer(self, room_id: str, peer_id: str) -> None:
        self.push(PeerDescription(room_id, peer_id, SessionDescription("offer", "v=0 srv")))

    async def events(self) -> AsyncIterator[MediaEvent]:
        while True:
            yield await self._events.get()

    async def close(self) -> None:
        return None


def build_app(
    settings: Settings,
    *,
    media: Any = None,
    limits: Limits | None = None,
    prefix: str | None = None,
) -> web.Application:
    """`create_app` (which calls `signaling.ws.setup`) with a fake media node."""
    from server.app import create_app

    app = create_app(settings)
    fake = media if media is not None else FakeMediaNode()

    async def factory(_: Settings) -> Any:
        return fake

    app[media_factory_key] = factory
    app[limits_key] = limits or Limits(heartbeat_s=5.0, lease_ms=1000, attach_timeout_s=0.5)
    if prefix is not None:
        app[prefix_key] = prefix
    return app


class Participant:
    """One browser: its own cookie jar, one signaling socket, a message backlog."""

    _ids = itertools.count(1)

    def __init__(self, session: aiohttp.ClientSession, base: str, name: str) -> None:
        self.session = session
        self.base = base
        self.name = name
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.backlog: list[dict[str, Any]] = []
        self.peer_id = ""  # set by join
        self.resume_token = ""
        self.csrf: str | None = None

    @classmethod
    async def create(cls, server: TestServer, name: str) -> Participant:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        return cls(session, str(server.make_url("/")).rstrip("/"), name)

    async def sign_in(self, username: str, password: str = "demo-pass-2026") -> None:
        import re

        async with self.session.get(self.base + "/login") as resp:
            page = await resp.text()
        match = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert match
        self.csrf = match.group(1)
        async with self.session.post(
            self.base + "/login",
            data={"username": username, "password": password, "_csrf": self.csrf},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303, await resp.text()

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf or "", "Accept": "application/json"}
        async with self.session.request(method, self.base + path, json=body,
                                        headers=headers) as resp:  # fmt: skip
            return resp.status, await resp.json()

    async def connect(self, protocol: str | None = PROTOCOL) -> dict[str, Any]:
        self.ws = await self.session.ws_connect(
            self.base + "/ws", protocols=(protocol,) if protocol else (), autoping=True
        )
        self.backlog = []
        return await self.expect("hello")

    async def send(self, type_: str, **fields: Any) -> str:
        assert self.ws is not None
        msg_id = str(next(self._ids))
        await self.ws.send_str(json.dumps({"type": type_, "id": msg_id, **fields}))
        return msg_id

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send and return the ack or error answering it (other messages stay in the backlog)."""
        msg_id = await self.send(type_, **fields)
        return await self.expect_where(lambda m: m.get("re") == msg_id and m["type"] in
                                       ("ack", "error", "pong", "answer"))  # fmt: skip

    async def _next(self) -> dict[str, Any]:
        assert self.ws is not None
        async with asyncio.timeout(TIMEOUT_S):
            msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return {"type": "_closed", "code": self.ws.close_code, "msg": str(msg.type)}
        data: dict[str, Any] = json.loads(msg.data)
        if data.get("resume_token"):  # welcome and admitted carry the current one
            self.resume_token = data["resume_token"]
        return data

    async def expect_where(self, pred: Any) -> dict[str, Any]:
        for i, m in enumerate(self.backlog):
            if pred(m):
                return self.backlog.pop(i)
        while True:
            try:
                m = await self._next()
            except TimeoutError:
                raise AssertionError(
                    f"{self.name}: nothing matching; backlog {self.backlog}"
                ) from None
            if pred(m):
                return m
            if m["type"] == "_closed":
                raise AssertionError(f"{self.name}: socket closed ({m}); backlog {self.backlog}")
            self.backlog.append(m)

    async def expect(self, type_: str, **match: Any) -> dict[str, Any]:
        return await self.expect_where(
            lambda m: m["type"] == type_ and all(m.get(k) == v for k, v in match.items())
        )

    async def expect_closed(self) -> int | None:
        assert self.ws is not None
        while True:
            m = await self._next()
            if m["type"] == "_closed":
                return self.ws.close_code
            self.backlog.append(m)

    def seen(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.backlog if m["type"] == type_]

    async def join(self, room_id: str, **fields: Any) -> dict[str, Any]:
        ack = await self.request("join", room_id=room_id, **fields)
        assert ack["type"] == "ack", ack
        welcome = await self.expect("welcome")
        self.peer_id = welcome["peer_id"]
        self.resume_token = welcome["resume_token"]
        return welcome

    async def drop(self) -> None:
        """The connection goes away without `leave` (network loss, closed laptop)."""
        if self.ws is not None:
            await self.ws.close()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.session.close()


async def new_session(host: Participant, kind: str = "mediation", **extra: Any) -> dict[str, Any]:
    status, body = await host.api("POST", "/api/sessions", {"kind": kind, **extra})
    assert status == 201, body
    return dict(body)


async def new_token(host: Participant, session_id: int, name: str = "张三",
                    role: str = "party", **extra: Any) -> dict[str, Any]:  # fmt: skip
    status, body = await host.api(
        "POST", f"/api/sessions/{session_id}/tokens", {"display_name": name, "role": role, **extra}
    )
    assert status == 201, body
    return dict(body)


async def host_and_admitted_guest(
    people: Any, host_user: str = "mediator01", **session_extra: Any
) -> tuple[Participant, Participant, dict[str, Any]]:
    """A host in a new mediation room (`session_extra` for POST /api/sessions) and a guest who
    came by a join link and was admitted; returns (host, guest, session)."""
    host = await people("host", host_user)
    sess = await new_session(host, **session_extra)
    await host.connect()
    await host.join(sess["room_id"])
    guest = await people("guest")
    tok = await new_token(host, sess["id"])
    await guest.connect()
    await guest.join(sess["room_id"], token=tok["token"])
    await host.request("admit", peer_id=guest.peer_id)
    await guest.expect("admitted")
    return host, guest, sess

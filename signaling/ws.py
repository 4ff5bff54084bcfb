"""The aiohttp edge of signaling: `GET /ws`, the REST endpoints hosts use to create sessions and
issue or revoke join tokens, the QR image of a join link, and the cleanup context that builds the
bus, the room directory, the media node and the signaling node. The only module here that
imports aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field

from media.bandwidth import BandwidthSettings
from media.interfaces import MediaNode
from server.audit.service import record as audit
from server.auth.permissions import Action
from server.cases.access import CaseNotFound, check_visible, visible_case_id
from server.http import keys
from server.http.auth import client_ip, current_staff, protected, public
from server.http.openapi import documented
from server.kernel.db import utcnow
from server.kernel.errors import InvalidInput, NotFound
from server.kernel.ids import parse_id
from server.kernel.settings import Settings
from server.kernel.tasks import cancel_and_wait
from server.org import service as org
from server.sessions import service as sessions
from server.sessions.errors import JoinTokenNotFound
from server.sessions.schemas import SessionKind
from server.sessions.tokens import verify_join_token
from signaling import errors
from signaling.bus import SignalBus, make_bus, make_directory
from signaling.config import Limits, NodeConfig
from signaling.node import SignalingNode
from signaling.protocol import PROTOCOL, Error, Hello, encode
from signaling.roomstate import GUEST_ROLES
from signaling.tokens import join_link_qr_png

logger = logging.getLogger(__name__)

MediaFactory = Callable[[Settings], Awaitable[MediaNode]]

#: The running signaling node (its bus offers `subscribe_events()` to other parts).
node_key: web.AppKey[SignalingNode] = web.AppKey("signaling_node", SignalingNode)
bus_key: web.AppKey[SignalBus] = web.AppKey("signaling_bus")
#: Set before start-up to override (tests, benchmarks).
media_factory_key: web.AppKey[MediaFactory] = web.AppKey("signaling_media_factory")
limits_key: web.AppKey[Limits] = web.AppKey("signaling_limits", Limits)
prefix_key: web.AppKey[str] = web.AppKey("signaling_redis_prefix", str)

#: Frames queued for one slow client before it is disconnected.
MAX_QUEUED_FRAMES = 1024
DEFAULT_TOKEN_TTL = timedelta(hours=24)
MAX_TOKEN_TTL = timedelta(days=30)


async def default_media(settings: Settings) -> MediaNode:
    """`media_workers == 0`: the SFU in this process; otherwise a pool of worker processes."""
    hosts = list(settings.media_host_addresses) or None
    bandwidth = BandwidthSettings(
        pause_below_ratio=settings.media_video_pause_ratio,
        resume_above_ratio=settings.media_video_resume_ratio,
        pause_loss=settings.media_video_pause_loss,
        resume_loss=settings.media_video_resume_loss,
        heavy_loss=max(0.25, settings.media_video_pause_loss),
        min_pause_s=settings.media_video_min_pause_s,
        max_pause_s=max(40.0, settings.media_video_min_pause_s),
    )
    if settings.media_workers == 0:
        from media.sfu import SfuMediaNode

        return SfuMediaNode(
            video_codec=settings.media_video_codec, host_addresses=hosts, bandwidth=bandwidth
        )
    from media.workers import WorkerPoolMediaNode

    pool = WorkerPoolMediaNode(
        workers=settings.media_workers,
        video_codec=settings.media_video_codec,
        host_addresses=hosts,
        bandwidth=bandwidth,
    )
    await pool.start()
    return pool


async def signaling_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings]
    factory = app.get(media_factory_key, default_media)
    media = await factory(settings)
    prefix = app.get(prefix_key, "onedoor:")
    redis = app[keys.redis]
    bus = make_bus(redis, settings.node_id, prefix)
    turn_secret = settings.turn_secret.get_secret_value().encode() if settings.turn_secret else b""
    config = NodeConfig(
        node_id=settings.node_id,
        secret=settings.secret_bytes(),
        grace_s=settings.signaling_grace_s,
        default_capacity=settings.room_capacity,
        stun_urls=list(settings.stun_urls),
        turn_urls=list(settings.turn_urls),
        turn_secret=turn_secret,
        turn_ttl_s=settings.turn_ttl_s,
        recordings_dir=settings.effective_recordings_dir,
        limits=app.get(limits_key, Limits()),
        join_rate_per_min=settings.join_rate_per_min,
        lobby_lead=timedelta(minutes=settings.session_lobby_open_min),
    )
    node = SignalingNode(
        config=config,
        bus=bus,
        directory=make_directory(redis, prefix),
        media=media,
        db=app[keys.db],
        cipher=app[keys.pii],
        deadlines=app[keys.deadline_clock],
        ratelimiter=app.get(keys.ratelimiter),
    )
    await node.start()
    app[node_key] = node
    app[bus_key] = bus
    try:
        yield
    finally:
        await node.close()
        await media.close()


class WsTransport:
    """Writes frames in order without a task switch per frame when the socket keeps up.

    A frame is written eagerly (the first step of `send_str` runs at once; it finishes without
    suspending unless the socket applies backpressure). Frames that arrive while a write is
    suspended wait in a bounded deque drained by one writer task; a client that cannot keep up
    is disconnected instead of growing memory.
    """

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._frames: deque[str] = deque()
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._busy = False
        self._drivers: set[asyncio.Task[None]] = set()
        self.task = asyncio.create_task(self._write(), name="ws-writer")

    def send_text(self, text: str) -> None:
        if self._close is not None:
            return
        if self._busy or self._frames:
            if len(self._frames) >= MAX_QUEUED_FRAMES:
                self.close(WSCloseCode.TRY_AGAIN_LATER, "client too slow")
                return
            self._frames.append(text)
            self._wake.set()
            return
        coro = self.ws.send_str(text)
        try:
            suspended_on = coro.send(None)
        except StopIteration:
            return  # written without suspending: the common case
        except (ConnectionResetError, RuntimeError):
            self.close(WSCloseCode.GOING_AWAY, "gone")
            return
        self._busy = True
        driver = asyncio.ensure_future(self._finish(coro, suspended_on))
        self._drivers.add(driver)
        driver.add_done_callback(self._drivers.discard)

    async def _finish(self, coro: Any, suspended_on: Any) -> None:
        """Drive a started `send_str` to its end (it waits for the socket to drain, for the
        send lock, or for a large frame compressed in an executor under permessage-deflate).

        The coroutine yielded `suspended_on` to whoever drives it, as it would to its task: the
        future is already marked as awaited (`_asyncio_future_blocking`), so `await`ing it here
        would be refused at once ("await wasn't used with future") and resuming the coroutine
        before the future is done fails the same way. Wait for it to be done without awaiting
        it, as a Task does, and only then resume the coroutine (which reads its result).
        """
        try:
            while True:
                if suspended_on is None:
                    await asyncio.sleep(0)
                else:
                    await asyncio.wait((suspended_on,))
                try:
                    suspended_on = coro.send(None)
                except StopIteration:
                    return
        except (ConnectionResetError, RuntimeError):
            self.close(WSCloseCode.GOING_AWAY, "gone")
        finally:
            coro.close()
            self._busy = False
            self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._wake.set()

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._frames and not self._busy:
                self._busy = True
                try:
                    await self.ws.send_str(self._frames.popleft())
                except (ConnectionResetError, RuntimeError):
                    return
                finally:
                    self._busy = False
            if self._close is not None and not self._busy and not self._frames:
                code, reason = self._close
                with contextlib.suppress(Exception):
                    await self.ws.close(code=code, message=reason.encode()[:120])
                return

    async def stop(self) -> None:
        await cancel_and_wait([self.task, *self._drivers])


@public("signaling socket: staff authenticate by cookie, guests by join token in `join`")
async def websocket(request: web.Request) -> web.StreamResponse:
    node = request.app[node_key]
    limits = node.config.limits
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,),
        heartbeat=limits.heartbeat_s,
        # Frames up to 4x the message limit get a typed error; beyond that aiohttp closes (1009).
        max_msg_size=limits.max_message_bytes * 4,
    )
    await ws.prepare(request)
    request.app[keys.websockets].add(ws)
    if ws.ws_protocol != PROTOCOL:
        supported = f"supported: {PROTOCOL}"
        err = errors.BadMessage(f"use the WebSocket subprotocol {PROTOCOL} ({supported})")
        await ws.send_str(encode(Error(code=err.code, message=str(err), message_zh=err.message_zh)))
        await ws.close(
            code=errors.CLOSE_CODES["protocol_error"],
            message=f"unsupported subprotocol; {supported}".encode(),
        )
        return ws
    gauge = request.app[keys.metrics].websockets
    gauge.inc()
    transport = WsTransport(ws)
    edge = node.connect(transport, current_staff(request), client_ip(request))
    transport.send_text(
        encode(
            Hello(
                node_id=node.config.node_id,
                heartbeat_s=limits.heartbeat_s,
                max_message_bytes=limits.max_message_bytes,
                grace_s=node.config.grace_s,
            )
        )
    )
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await edge.on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                edge.send(
                    Error(
                        code="bad_message",
                        message="binary frames are not used",
                        message_zh=errors.BadMessage.message_zh,
                    )
                )
            else:
                break
    finally:
        gauge.dec()
        edge.on_closed()
        transport.close(WSCloseCode.GOING_AWAY, "bye")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await transport.task
        await transport.stop()
    return ws


# ------------------------------------------------------------------------------ REST


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


DbId = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]


class CreateSession(_Body):
    kind: Literal["reception", "mediation"]
    title: str = Field(default="", max_length=200)
    #: The case, by its case number (案件编号); a case the creator may not see is 404
    #: `case_not_found`, like one that does not exist.
    case_no: str | None = Field(default=None, max_length=40)
    case_id: DbId | None = None
    capacity: int | None = Field(default=None, ge=2, le=64)
    recording_allowed: bool = True


class IssueToken(_Body):
    display_name: str = Field(min_length=1, max_length=64)
    role: Literal["party", "agent", "observer"] = "party"
    valid_from: datetime | None = None
    ttl_s: int = Field(
        default=int(DEFAULT_TOKEN_TTL.total_seconds()), ge=60, le=int(MAX_TOKEN_TTL.total_seconds())
    )
    site_id: DbId | None = None


class SessionCreated(_Body):
    id: int
    room_id: str
    kind: str
    capacity: int
    state: str


class TokenIssued(_Body):
    jti: str
    token: str
    room_id: str
    url: str
    qr_url: str
    not_before: datetime
    expires_at: datetime


class JoinQrQuery(BaseModel):
    token: str = Field(description="the join token of the link (its credential)")


class TokenRevoked(_Body):
    jti: str
    revoked: bool


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise InvalidInput("the body must be JSON") from None


@documented(
    "Create a reception or mediation session (a signaling room)",
    tags=("signaling",),
    body=CreateSession,
    response=SessionCreated,
    status=201,
)
@protected(Action.session_create)
async def create_session(request: web.Request) -> web.Response:
    staff = current_staff(request)
    assert staff is not None
    body = CreateSession.model_validate(await _json(request))
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        case_id = body.case_id
        try:
            if body.case_no and body.case_no.strip():
                case_id = await visible_case_id(session, staff=staff, case_no=body.case_no)
            elif case_id is not None:
                await check_visible(session, staff=staff, case_id=case_id)
        except CaseNotFound:
            raise CaseNotFound("no such case that you may see", field="case_no") from None
        view = await sessions.create_session(
            session,
            kind=SessionKind(body.kind),
            title=body.title,
            case_id=case_id,
            capacity=body.capacity or settings.room_capacity,
            host_site_id=staff.site_id,
            created_by_id=staff.staff_id,
            recording_allowed=body.recording_allowed,
            now=utcnow(),
        )
        await audit(
            session,
            actor=staff.actor,
            action="signaling.session.created",
            object_type="call_session",
            object_id=str(view.id),
            ip=client_ip(request),
            detail={"room_id": view.room_id, "kind": body.kind, "case_id": case_id},
        )
    return web.json_response(
        {
            "id": view.id,
            "room_id": view.room_id,
            "kind": view.kind.value,
            "capacity": view.capacity,
            "state": view.state.value,
        },
        status=201,
    )


@documented(
    "Issue a join token (link and QR code) for a resident or outside party",
    tags=("signaling",),
    body=IssueToken,
    response=TokenIssued,
    status=201,
)
@protected(Action.session_invite)
async def issue_token(request: web.Request) -> web.Response:
    staff = current_staff(request)
    assert staff is not None
    session_id = parse_id(request.match_info["session_id"])
    if session_id is None:
        raise NotFound("no such session")
    body = IssueToken.model_validate(await _json(request))
    now = utcnow()
    not_before = body.valid_from or now
    expires_at = not_before + timedelta(seconds=body.ttl_s)
    role = body.role
    assert role in GUEST_ROLES
    async with request.app[keys.db].begin() as session:
        view = await sessions.get_session_by_id(session, session_id=session_id)
        if body.site_id is not None and not await org.site_name(session, site_id=body.site_id):
            raise InvalidInput("no such site", field="site_id")
        if not view.open:
            raise errors.SessionClosed("the session has ended")
        issued = await sessions.issue_join_token(
            session,
            secret=request.app[keys.settings].secret_bytes(),
            session_id=view.id,
            role=role,
            display_name=body.display_name,
            not_before=not_before,
            expires_at=expires_at,
            issued_by_id=staff.staff_id,
            site_id=body.site_id,
        )
        jti, token = issued.jti, issued.token
        await audit(
            session,
            actor=staff.actor,
            action="signaling.token.issued",
            object_type="call_session",
            object_id=str(view.id),
            ip=client_ip(request),
            detail={"jti": jti, "role": role, "expires_at": expires_at.isoformat()},
        )
    return web.json_response(
        {
            "jti": jti,
            "token": token,
            "room_id": view.room_id,
            "url": f"/join/{token}",
            "qr_url": f"/api/rooms/{view.room_id}/qr.png?token={token}",
            "not_before": not_before.isoformat(),
            "expires_at": expires_at.isoformat(),
        },
        status=201,
    )


@documented(
    "Revoke a join token (refused from now on, also on resume)",
    tags=("signaling",),
    response=TokenRevoked,
)
@protected(Action.session_invite)
async def revoke_token(request: web.Request) -> web.Response:
    staff = current_staff(request)
    assert staff is not None
    jti = request.match_info["jti"]
    if len(jti) > 40:
        raise NotFound("no such join token")
    async with request.app[keys.db].begin() as session:
        try:
            session_id = await sessions.revoke_join_token(session, jti=jti, now=utcnow())
        except JoinTokenNotFound:
            raise NotFound("no such join token") from None
        await audit(
            session,
            actor=staff.actor,
            action="signaling.token.revoked",
            object_type="call_session",
            object_id=str(session_id),
            ip=client_ip(request),
            detail={"jti": jti},
        )
    return web.json_response({"jti": jti, "revoked": True})


@documented(
    "PNG QR code of a join link",
    tags=("signaling",),
    query=JoinQrQuery,
    content_type="image/png",
)
@public("the QR code of a join link; the token in the query is the credential")
async def join_qr(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    try:
        grant = verify_join_token(request.app[keys.settings].secret_bytes(), token, now=utcnow())
    except (errors.TokenInvalid, errors.TokenExpired):
        raise NotFound("no such join link") from None
    if grant.room_id != request.match_info["room_id"]:
        raise NotFound("no such join link")
    url = str(request.url.with_path(f"/join/{token}").with_query(None))
    png = await asyncio.to_thread(join_link_qr_png, url)
    return web.Response(
        body=png, content_type="image/png", headers={"Cache-Control": "private, no-store"}
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/ws", websocket)
    app.router.add_post("/api/sessions", create_session)
    app.router.add_post(r"/api/sessions/{session_id}/tokens", issue_token)
    app.router.add_post("/api/tokens/{jti}/revoke", revoke_token)
    app.router.add_get("/api/rooms/{room_id}/qr.png", join_qr)
    app.cleanup_ctx.append(signaling_context)

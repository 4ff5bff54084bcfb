"""The edge side: `Edge` is one client WebSocket connected to this node. It enforces the limits
(size, rate), parses each frame once, authenticates the join (staff cookie or join token) or the
resume, and hands everything else to the room's owner, on this node or another. No aiohttp
here: `ws.py` feeds it text frames and gives it a `Transport` to write to.

    browser ─WS─► Edge (limits, parse, join/resume) ──Attach/PeerMessage/Detach──► owner
                    ▲                                       (EdgeContext.to_room, .attach)
                    └── Out/Close/ClaimUpdate/Attached/Refused (delivered by the node)

It sees its node only through `EdgeContext`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import datetime
from typing import Literal, Protocol

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth.permissions import Action, StaffIdentity
from server.kernel.errors import OUTAGE_ERRORS, AppError
from server.kernel.logging import peer_id_var, room_id_var
from server.sessions.tokens import verify_join_token
from signaling import errors, store
from signaling.config import NodeConfig
from signaling.envelopes import Attach, Attached, AttachReply, Detach, PeerMessage, RoomBound
from signaling.protocol import (
    ClientMessage,
    Join,
    Ping,
    Pong,
    Resume,
    Role,
    ServerMessage,
    client_adapter,
    encode,
    error_message,
)
from signaling.roomstate import ROLE_PERMISSIONS, MemberSpec
from signaling.tokens import ResumeClaim, verify_resume_token

logger = logging.getLogger(__name__)


class Transport(Protocol):
    """One client connection as the node sees it (ws.py wraps a WebSocketResponse)."""

    def send_text(self, text: str) -> None:
        """Queue a frame; never blocks (a slow client is closed by the transport)."""
        ...

    def close(self, code: int, reason: str) -> None: ...


class EdgeContext(Protocol):
    """What an edge needs from its node (`SignalingNode` implements it)."""

    @property
    def config(self) -> NodeConfig: ...

    @property
    def db(self) -> async_sessionmaker[AsyncSession]: ...

    def now(self) -> datetime: ...

    async def check_join_rate(self, ip: str) -> None:
        """Raises JoinRateLimited when `ip` redeemed too many join links this minute."""
        ...

    def count_identity(self, identity: str) -> bool:
        """One more connection for `identity`; False: it has too many already."""
        ...

    def uncount_identity(self, identity: str) -> None: ...

    async def attach(self, view: store.SessionView, msg: Attach, edge: Edge) -> AttachReply:
        """Deliver the attach to the room's owner and wait for its answer."""
        ...

    def to_room(self, room_id: str, msg: RoomBound) -> None:
        """To the room's owner (this node: a direct call)."""
        ...

    def attached_here(self, room_id: str, edge: Edge) -> None:
        """`edge` took its place in `room_id` (re-attached if the room's owner changes)."""
        ...

    def forget(self, edge: Edge) -> None:
        """The connection is gone."""
        ...


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def parse(text: str) -> ClientMessage:
    """Raises BadMessage (naming the field) or UnknownType."""
    try:
        return client_adapter.validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        if first["type"] == "union_tag_not_found":
            raise errors.BadMessage("type: a message needs a string type", field="type") from None
        if first["type"] == "union_tag_invalid":
            name = _peek(text, "type")
            if name is None:  # a number, an object, a very long string...
                raise errors.BadMessage("type: must be a message type name", field="type") from None
            raise errors.UnknownType(f"unknown message type {name!r}", field="type") from None
        # "(message)": the text is not a JSON object at all (no field to name)
        loc = ".".join(str(p) for p in first["loc"][1:]) or "(message)"
        raise errors.BadMessage(f"{loc}: {first['msg']}", field=loc) from None


def _peek(text: str, key: str) -> str | None:
    try:
        value = json.loads(text).get(key)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and len(value) <= 64 else None


class Edge:
    """One WebSocket connection on this node."""

    def __init__(
        self, ctx: EdgeContext, transport: Transport, staff: StaffIdentity | None, ip: str
    ) -> None:
        self.ctx = ctx
        self.transport = transport
        self.staff = staff
        self.ip = ip
        self.conn_id = f"{ctx.config.node_id}/{secrets.token_urlsafe(8)}"
        self.state: Literal["new", "joining", "attached", "closed"] = "new"
        self.room_id: str | None = None
        self.peer_id: str | None = None
        self.identity: str | None = None
        self.claim: ResumeClaim | None = None
        self.owner: str | None = None
        self.bucket = TokenBucket(ctx.config.limits.rate_per_s, ctx.config.limits.burst)
        self.violations = 0
        #: The owner's answer to our attach, while we wait for it (set by the node).
        self.pending: asyncio.Future[AttachReply] | None = None
        self._reattaching = False

    def send(self, msg: ServerMessage) -> None:
        self.transport.send_text(encode(msg))

    async def on_text(self, text: str) -> None:
        """One text frame from the client. Never raises for bad input."""
        limits = self.ctx.config.limits
        re = None
        try:
            if len(text) > limits.max_message_bytes or (
                len(text) * 4 > limits.max_message_bytes
                and len(text.encode()) > limits.max_message_bytes
            ):
                raise errors.MessageTooLarge(
                    f"messages are limited to {limits.max_message_bytes} bytes"
                )
            if not self.bucket.take():
                self.violations += 1
                if self.violations > limits.max_violations:
                    self.send(error_message(errors.RateLimited("too many messages; closing"), None))
                    self.transport.close(errors.CLOSE_CODES["rate_limited"], "rate limited")
                    return
                raise errors.RateLimited("too many messages; slow down")
            self.violations = 0
            msg = parse(text)
            re = msg.id
            if isinstance(msg, Ping):
                self.send(Pong(re=msg.id))
            elif isinstance(msg, Join):
                await self._join(msg)
            elif isinstance(msg, Resume):
                await self._resume(msg)
            elif self.state != "attached" or self.room_id is None or self.peer_id is None:
                raise errors.NotJoined("join a room first")
            else:
                self.ctx.to_room(self.room_id, PeerMessage(self.conn_id, self.peer_id, text, msg))
        except AppError as e:
            if re is None:
                re = _peek(text, "id")
            self.send(error_message(e, re))
        except OUTAGE_ERRORS as e:
            # Redis or the database is restarting: a retryable answer; the socket stays up.
            logger.warning("backing service unavailable during %s: %s", _peek(text, "type"),
                           type(e).__name__)  # fmt: skip
            self.send(error_message(errors.RoomUnavailable("a backing service is unavailable"), re))

    # ----- join and resume

    async def _join(self, msg: Join) -> None:
        if self.state != "new":
            raise errors.AlreadyJoined("this connection already joined a room")
        ctx, now = self.ctx, self.ctx.now()
        if msg.token is not None:
            await ctx.check_join_rate(self.ip)
        async with ctx.db.begin() as session:
            view = await store.get_session(session, room_id=msg.room_id)
            if not view.open:
                raise errors.SessionClosed("the session has ended")
            if msg.token is not None:
                grant = verify_join_token(ctx.config.secret, msg.token, now=now)
                if grant.room_id != msg.room_id:
                    raise errors.TokenInvalid("the link is for another session")
                await store.check_join_token(session, jti=grant.jti, session_id=view.id)
                spec = MemberSpec(
                    peer_id=new_peer_id(),
                    identity=grant.identity,
                    display_name=grant.display_name,
                    role=grant.role,
                    is_staff=False,
                    permissions=grant.permissions,
                    site_id=grant.site_id,
                    site_name=await store.site_name(session, site_id=grant.site_id),
                )
            elif self.staff is not None:
                role = staff_room_role(self.staff, msg.role)
                spec = MemberSpec(
                    peer_id=new_peer_id(),
                    identity=self.staff.actor,
                    display_name=self.staff.display_name,
                    role=role,
                    is_staff=True,
                    permissions=ROLE_PERMISSIONS[role],
                    site_id=self.staff.site_id,
                    site_name=await store.site_name(session, site_id=self.staff.site_id),
                )
            else:
                raise errors.NotAuthenticated("sign in or use an invitation link")
        await self._attach(view, spec, mode="join", status=None, re=msg.id)

    async def _resume(self, msg: Resume) -> None:
        if self.state != "new":
            raise errors.AlreadyJoined("this connection already joined a room")
        ctx, now = self.ctx, self.ctx.now()
        claim = verify_resume_token(ctx.config.secret, msg.resume_token, now=now)
        if claim.is_staff and (self.staff is None or self.staff.staff_id != claim.staff_id):
            raise errors.NotAuthenticated("sign in again to resume")
        async with ctx.db.begin() as session:
            view = await store.get_session(session, room_id=claim.room_id)
            if not view.open:
                raise errors.SessionClosed("the session has ended")
            if claim.jti is not None:
                await store.check_join_token(session, jti=claim.jti, session_id=view.id)
        await self._attach(
            view, _spec_from_claim(claim), mode="resume", status=claim.status, re=msg.id
        )

    async def _attach(
        self,
        view: store.SessionView,
        spec: MemberSpec,
        *,
        mode: Literal["join", "resume"],
        status: Literal["lobby", "joined"] | None,
        re: str | None,
    ) -> None:
        ctx = self.ctx
        if self.identity != spec.identity:
            if not ctx.count_identity(spec.identity):
                raise errors.TooManyConnections("too many connections for this identity")
            if self.identity is not None:
                ctx.uncount_identity(self.identity)
            self.identity = spec.identity
        self.state = "joining"
        env = Attach(self.conn_id, ctx.config.node_id, spec, mode, status, re)
        try:
            reply = await ctx.attach(view, env, self)
        except BaseException:
            self.state = "new" if self.state == "joining" else self.state
            # The owner may still take the attach (it answered too late, or we were cancelled):
            # it must not keep a place for a connection nobody serves (a ghost). A detach for
            # a connection it never attached changes nothing.
            ctx.to_room(view.room_id, Detach(self.conn_id, spec.peer_id))
            raise
        if not isinstance(reply, Attached):
            self.state = "new"
            return  # the owner already sent the typed error
        self.state = "attached"
        self.room_id, self.peer_id = view.room_id, reply.peer_id
        self.claim = reply.claim
        room_id_var.set(view.room_id)
        peer_id_var.set(self.peer_id)
        ctx.attached_here(view.room_id, self)
        logger.info("participant attached (%s)", mode)

    def resolve(self, reply: AttachReply) -> None:
        if self.pending is not None and not self.pending.done():
            self.pending.set_result(reply)

    async def reattach(self) -> None:
        """The room's owner changed (node died): take our place on the new owner."""
        if self._reattaching or self.claim is None or self.state != "attached":
            return
        self._reattaching = True
        try:
            async with self.ctx.db.begin() as session:
                view = await store.get_session(session, room_id=self.claim.room_id)
            spec = _spec_from_claim(self.claim)
            env = Attach(
                self.conn_id, self.ctx.config.node_id, spec, "resume", self.claim.status, None
            )
            reply = await self.ctx.attach(view, env, self)
            if isinstance(reply, Attached):
                self.claim = reply.claim
            else:
                self.transport.close(errors.CLOSE_CODES["resume_failed"], "resume failed")
        except AppError as e:
            self.send(error_message(e, None))
            self.transport.close(errors.CLOSE_CODES["resume_failed"], "resume failed")
        except Exception:
            logger.exception("re-attaching after owner change failed")
            self.transport.close(errors.CLOSE_CODES["resume_failed"], "resume failed")
        finally:
            self._reattaching = False

    def on_closed(self) -> None:
        """The socket is gone (clean or not): the owner starts the grace period."""
        if self.state == "closed":
            return
        if self.state == "attached" and self.room_id and self.peer_id:
            self.ctx.to_room(self.room_id, Detach(self.conn_id, self.peer_id))
        self.state = "closed"
        self.ctx.forget(self)


def new_peer_id() -> str:
    return "p-" + secrets.token_urlsafe(6)


def _spec_from_claim(c: ResumeClaim) -> MemberSpec:
    return MemberSpec(
        peer_id=c.peer_id,
        identity=c.identity,
        display_name=c.display_name,
        role=c.role,
        is_staff=c.is_staff,
        permissions=c.permissions,
        site_id=c.site_id,
        site_name=c.site_name,
    )


def staff_room_role(staff: StaffIdentity, requested: Role | None) -> Role:
    """Staff who may host take host/mediator/official/observer; others official/observer."""
    if not staff.can(Action.session_join) and not staff.can(Action.session_host):
        raise errors.Forbidden("your roles may not join sessions")
    can_host = staff.can(Action.session_host)
    default: Role = "host" if can_host else "official"
    role = requested or default
    allowed: set[Role] = {"official", "observer"}
    if can_host:
        allowed |= {"host", "mediator"}
    if role not in allowed:
        raise errors.Forbidden(f"you may not join as {role}")
    return role

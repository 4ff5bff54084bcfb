"""One signaling node: the edge of every WebSocket connected to it, and the owner of the rooms
whose lease it holds. No aiohttp here: `signaling/ws.py` feeds text frames into `Edge` and
gives it a `Transport` to write to.

    browser ─WS─► Edge (parse, limits, auth) ──attach/msg/detach──► RoomActor (owner node)
                    ▲                                                  │ Room (pure state)
                    └───────────── out/close/attached ◄────────────────┤ Lane per peer ─► MediaNode
                                                                       └─► Journal (DB), events

Edge and owner may be the same node (direct calls) or two nodes (SignalBus, Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media.errors import MediaFailure
from media.interfaces import (
    ActiveSpeaker,
    IceCandidate,
    IceServer,
    MediaEvent,
    MediaNode,
    PeerDescription,
    PeerFailed,
    PublishGrant,
    RecordingFailed,
    RecordingStopped,
    SessionDescription,
)
from server.auth.permissions import Action, StaffIdentity
from server.crypto import PiiCipher
from server.db import utcnow
from server.errors import OUTAGE_ERRORS, AppError
from server.logging import peer_id_var, room_id_var
from server.ratelimit import RateLimiter, check_join_rate
from server.tasks import cancel_and_wait
from signaling import errors, store
from signaling.bus import Envelope, RoomDirectory, RoomEvent, SignalBus
from signaling.protocol import (
    Ack,
    Admit,
    Admitted,
    Answer,
    AskUnmute,
    Candidate,
    ClientMessage,
    Deny,
    EndSession,
    Error,
    ForceMute,
    IceServerInfo,
    Join,
    Leave,
    Lock,
    Offer,
    Ping,
    Pong,
    RecordingConsent,
    Remove,
    RequestConsent,
    Resume,
    Role,
    SendChat,
    ServerAnswer,
    ServerMessage,
    ServerOffer,
    SetPresence,
    StartRecording,
    StopRecording,
    TrackKind,
    Welcome,
    client_adapter,
    encode,
)
from signaling.room import Room
from signaling.roomstate import ROLE_PERMISSIONS, Effects, Member, MemberSpec, RoomState
from signaling.tokens import (
    ResumeClaim,
    issue_resume_token,
    turn_credentials,
    verify_join_token,
    verify_resume_token,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: A room's saved state outlives a quiet day; the owner rewrites it at least every 6 hours.
STATE_TTL_MS = 24 * 3600 * 1000
STATE_REFRESH_S = 6 * 3600.0
STATE_LOAD_TIMEOUT_S = 2.0
STATE_RETRY_S = 1.0
#: Client messages that never change a room's durable state: no state write after them.
_STATELESS = (SendChat, Offer, Answer, Candidate)


class Transport(Protocol):
    """One client connection as the node sees it (ws.py wraps a WebSocketResponse)."""

    def send_text(self, text: str) -> None:
        """Queue a frame; never blocks (a slow client is closed by the transport)."""
        ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 64 * 1024
    rate_per_s: float = 30.0
    burst: float = 60.0
    #: Consecutive rate-limited messages before the socket is closed (4429).
    max_violations: int = 200
    max_rooms: int = 500
    max_connections_per_identity: int = 4
    heartbeat_s: float = 20.0
    lease_ms: int = 10_000
    attach_timeout_s: float = 3.0
    room_inbox: int = 10_000
    lane_queue: int = 512
    negotiation_timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: str
    secret: bytes
    grace_s: float
    default_capacity: int
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: bytes = b""
    turn_ttl_s: int = 3600
    recordings_dir: Path = Path("data/recordings")
    limits: Limits = field(default_factory=Limits)
    #: Joins with a token per client address per minute (None: unlimited); counted with the
    #: node's rate limiter, shared with the join page (ONEDOOR_JOIN_RATE_PER_MIN).
    join_rate_per_min: int | None = None


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


def _error(exc: AppError, re: str | None) -> Error:
    fields = exc.details.get("field") if exc.details else None
    return Error(
        re=re,
        code=exc.code,
        message=str(exc),
        message_zh=exc.message_zh,
        field=str(fields) if fields else None,
    )


def _media_error(exc: MediaFailure, re: str | None) -> Error:
    return Error(
        re=re,
        code=exc.code,
        message=str(exc) or exc.code,
        message_zh=errors.MediaUnavailable.message_zh,
    )


def parse(text: str) -> ClientMessage:
    """Raises BadMessage (naming the field) or UnknownType."""
    try:
        return client_adapter.validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            raise errors.UnknownType(
                f"unknown message type {_peek(text, 'type')!r}", field="type"
            ) from None
        loc = ".".join(str(p) for p in first["loc"][1:]) or "(message)"
        raise errors.BadMessage(f"{loc}: {first['msg']}", field=loc) from None


def _peek(text: str, key: str) -> str | None:
    try:
        value = json.loads(text).get(key)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and len(value) <= 64 else None


# ============================================================================ owner side


@dataclass(slots=True)
class _Link:
    node_id: str
    conn_id: str
    connected: bool = True
    generation: int = 0


class Lane:
    """Negotiation for one participant, strictly in order: client offers, answers, candidates
    and the media node's renegotiation offers share one queue."""

    def __init__(self, actor: RoomActor, peer_id: str) -> None:
        self.actor = actor
        self.peer_id = peer_id
        self.queue: asyncio.Queue[tuple[str, Any, str | None]] = asyncio.Queue(
            maxsize=actor.node.config.limits.lane_queue
        )
        self.has_peer = False
        self.pending_server_offer = False
        #: The media node's last offer to this participant, until answered.
        self.server_offer_sdp = ""
        self.task = asyncio.create_task(self._run(), name=f"lane:{actor.room_id}:{peer_id}")

    def put(self, kind: str, payload: Any, re: str | None) -> bool:
        try:
            self.queue.put_nowait((kind, payload, re))
            return True
        except asyncio.QueueFull:
            return False

    async def close(self) -> None:
        await cancel_and_wait([self.task])

    async def _run(self) -> None:
        room_id_var.set(self.actor.room_id)
        peer_id_var.set(self.peer_id)
        while True:
            kind, payload, re = await self.queue.get()
            try:
                async with asyncio.timeout(self.actor.node.config.limits.negotiation_timeout_s):
                    await self._step(kind, payload, re)
            except asyncio.CancelledError:
                raise
            except AppError as e:
                self.actor.send_to(self.peer_id, _error(e, re))
            except MediaFailure as e:
                self.actor.send_to(self.peer_id, _media_error(e, re))
            except TimeoutError:
                self.actor.send_to(
                    self.peer_id,
                    _error(errors.MediaUnavailable("the media server did not answer in time"), re),
                )
            except Exception:
                logger.exception("negotiation step %s failed", kind)
                self.actor.send_to(
                    self.peer_id, _error(errors.MediaUnavailable("negotiation failed"), re)
                )

    async def _step(self, kind: str, payload: Any, re: str | None) -> None:
        actor, media = self.actor, self.actor.node.media
        if kind == "offer":
            m = actor.room.members.get(self.peer_id)
            if m is None or m.status != "joined":
                raise errors.NotJoined("wait until you are admitted before sending media")
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("offer sdp: %s", payload)
            answer = await media.accept_offer(
                room_id=actor.room_id,
                peer_id=self.peer_id,
                offer=SessionDescription("offer", payload),
                ice_servers=[
                    IceServer(tuple(s.urls), s.username, s.credential)
                    for s in actor.node.ice_servers(m.spec.identity)
                ],
                grant=PublishGrant(
                    audio="audio" in m.spec.permissions,
                    video="video" in m.spec.permissions,
                    screen="screen" in m.spec.permissions,
                ),
            )
            self.has_peer = True
            self.pending_server_offer = False
            self.server_offer_sdp = ""
            forced: list[TrackKind] = []
            if m.forced_audio:
                forced.append("audio")
            if m.forced_video:
                forced.append("video")
            for track_kind in forced:
                await media.set_forwarding(
                    room_id=actor.room_id, peer_id=self.peer_id, kind=track_kind, enabled=False
                )
            actor.send_to(self.peer_id, ServerAnswer(re=re or "", sdp=answer.sdp))
        elif kind == "answer":
            if not self.pending_server_offer:
                raise errors.OutOfOrder("an answer needs a server offer first")
            await media.accept_answer(
                room_id=actor.room_id,
                peer_id=self.peer_id,
                answer=SessionDescription("answer", payload),
            )
            self.pending_server_offer = False
            self.server_offer_sdp = ""
            actor.send_to(self.peer_id, Ack(re=re or ""))
        elif kind == "candidate":
            if not self.has_peer:
                raise errors.OutOfOrder("send an offer before ICE candidates")
            await media.add_candidate(
                room_id=actor.room_id, peer_id=self.peer_id, candidate=payload
            )
            actor.send_to(self.peer_id, Ack(re=re or ""))
        elif kind == "server_offer":
            self.pending_server_offer = True
            self.server_offer_sdp = payload
            actor.send_to(self.peer_id, ServerOffer(sdp=payload))
        elif kind == "resend_offer" and self.pending_server_offer and self.server_offer_sdp:
            # The participant resumed on a new socket and keeps its peer connection: an offer
            # sent while it was away (or into the socket that dropped) is offered again, or its
            # subscriptions would wait for an answer that never comes.
            actor.send_to(self.peer_id, ServerOffer(sdp=self.server_offer_sdp))


class RoomActor:
    """The authoritative copy of one room, on its owner node; one task processes its inbox."""

    def __init__(self, node: SignalingNode, session: store.SessionView, *, rebuilt: bool) -> None:
        self.node = node
        self.session = session
        self.room_id = session.room_id
        self.room = self._new_room()
        self.rebuilt = rebuilt
        #: The durable state last written to the directory, and when (monotonic).
        self.saved: RoomState | None = None
        self.saved_at = 0.0
        self.links: dict[str, _Link] = {}
        self.lanes: dict[str, Lane] = {}
        self.gone_peers: set[str] = set()
        self.inbox: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=node.config.limits.room_inbox)
        self.stopped = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._generation = itertools.count(1)
        self.task = asyncio.create_task(self._run(), name=f"room:{self.room_id}")

    def _new_room(self) -> Room:
        session = self.session
        room = Room(
            room_id=session.room_id,
            kind="mediation" if session.kind.value == "mediation" else "reception",
            capacity=session.capacity or self.node.config.default_capacity,
            title=session.title,
            recording_allowed=session.recording_allowed,
        )
        room.started = session.state.value == "live"
        return room

    # ----- durable state

    async def _load_state(self) -> None:
        """Before the first envelope: take over what the previous owner saved, if anything.

        Everyone saved comes back in their place, disconnected, with the rest of their grace
        period (a whole one for those who were connected when the owner died); the
        participants resume into it (`reconnected`), the others are told as each returns.
        """
        node = self.node
        try:
            async with asyncio.timeout(STATE_LOAD_TIMEOUT_S):
                blob = await node.directory.load_state(self.room_id)
            if blob is None:
                return
            state = RoomState.model_validate_json(node.cipher.decrypt(blob))
            fx = self.room.load_state(state, node.now())
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("could not load the saved state of room %s; starting empty",
                             self.room_id)  # fmt: skip
            self.room = self._new_room()
            return
        self.saved, self.saved_at = state, time.monotonic()
        self.rebuilt = True
        self.gone_peers = set(self.room.identities) - set(self.room.members)
        loop, now = asyncio.get_running_loop(), node.now()
        for peer_id, member in self.room.members.items():
            generation = next(self._generation)
            self.links[peer_id] = _Link("", "", connected=False, generation=generation)
            env = {"k": "expire", "p": peer_id, "g": generation}
            delay = member.grace_left(node.config.grace_s, now)
            self._timers[peer_id] = loop.call_later(delay, self.deliver, env)
        logger.info("restored room %s: %d participants, locked=%s", self.room_id,
                    len(self.room.members), self.room.locked)  # fmt: skip
        await self.apply(fx)
        node.mark_dirty(self)

    # ----- inbox

    def deliver(self, env: Envelope) -> None:
        if self.stopped:
            return
        try:
            self.inbox.put_nowait(env)
        except asyncio.QueueFull:
            logger.warning("room %s inbox full; dropped %s", self.room_id, env.get("k"))

    async def _run(self) -> None:
        room_id_var.set(self.room_id)
        await self._load_state()
        while True:
            env = await self.inbox.get()
            try:
                if await self._handle(env):
                    self.node.mark_dirty(self)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.node.mark_dirty(self)
                logger.exception("room %s failed on %s", self.room_id, env.get("k"))
            if self.room.empty or self.room.ended:
                await self.node._retire(self)
                return

    async def _handle(self, env: Envelope) -> bool:
        """Returns False when the room's durable state cannot have changed (chat, negotiation,
        speakers: the hot paths write nothing)."""
        kind = env["k"]
        if kind == "attach":
            await self._attach(env)
        elif kind == "msg":
            peer_id = env["p"]
            link = self.links.get(peer_id)
            if link is None or link.conn_id != env["c"]:
                return False  # a replaced or expired connection
            msg = env.get("o") or client_adapter.validate_json(env["t"])
            peer_id_var.set(peer_id)
            try:
                await self._message(peer_id, msg)
            except AppError as e:
                self.send_to(peer_id, _error(e, msg.id))
            return not isinstance(msg, _STATELESS)
        elif kind == "detach":
            self._detach(env["p"], env["c"])
        elif kind == "expire":
            link = self.links.get(env["p"])
            if link is not None and not link.connected and link.generation == env["g"]:
                await self.apply(self.room.leave(env["p"], self.node.now(), reason="timeout"))
        elif kind == "media":
            event = env["e"]
            await self._media_event(event)
            return not isinstance(event, PeerDescription | ActiveSpeaker)
        elif kind == "edge_down":
            for peer_id, link in list(self.links.items()):
                if link.node_id == env["node"]:
                    self._detach(peer_id, link.conn_id)
        return True

    # ----- joining

    async def _attach(self, env: Envelope) -> None:
        now = self.node.now()
        spec = _spec_from_json(env["spec"])
        conn, edge_node, re = env["c"], env["node"], env.get("re")
        peer_id_var.set(spec.peer_id)
        try:
            if env["mode"] == "join":
                member, fx, existing = self.room.enter(spec, now)
                resumed = existing
            else:
                existing_m = self.room.members.get(spec.peer_id)
                if existing_m is not None and existing_m.spec.identity == spec.identity:
                    member, fx, resumed = existing_m, self.room.reconnected(spec.peer_id), True
                elif spec.peer_id in self.gone_peers or not self.rebuilt:
                    raise errors.ResumeFailed("your place in the room has expired")
                else:
                    member, fx = self.room.restore(spec, env["status"], now)
                    resumed = True
        except AppError as e:
            self._reply(edge_node, conn, _error(e, re))
            self.node.route_node(edge_node, {"k": "refused", "c": conn, "code": e.code})
            return
        old = self.links.get(member.peer_id)
        if old is not None and old.node_id and old.conn_id != conn:  # not a restored place
            self._reply(
                old.node_id,
                old.conn_id,
                _error(errors.ConnectionReplaced("you joined from another window or device"), None),
            )
            self.node.route_node(
                old.node_id,
                {
                    "k": "close",
                    "c": old.conn_id,
                    "code": errors.CLOSE_CODES["connection_replaced"],
                    "reason": "replaced",
                },
            )
        timer = self._timers.pop(member.peer_id, None)
        if timer is not None:
            timer.cancel()
        self.links[member.peer_id] = _Link(edge_node, conn)
        media_reset = resumed and member.peer_id not in self.lanes
        claim = self._claim(member, spec)
        welcome = Welcome(
            peer_id=member.peer_id,
            status=member.status,
            role=spec.role,
            permissions=sorted(spec.permissions),
            room=self.room.info(),
            ice_servers=self.node.ice_servers(spec.identity),
            resume_token=issue_resume_token(
                self.node.config.secret,
                claim,
                now=now,
                ttl=store.resume_ttl(self.node.config.grace_s),
            ),
            participants=self.room.participants() if member.status == "joined" else [],
            lobby=[m.lobby_entry() for m in self.room.lobby()] if member.can("admit") else [],
            resumed=resumed,
            media_reset=media_reset,
        )
        if re:
            self._reply(edge_node, conn, Ack(re=re))
        self._reply(edge_node, conn, welcome)
        if resumed and member.status == "joined" and member.can("record"):
            consents = self.room.consent_state()
            if consents.consented or consents.refused or consents.minutes_required:
                self._reply(edge_node, conn, consents)  # its view may be stale (re-homed room)
        self.node.route_node(
            edge_node,
            {"k": "attached", "c": conn, "p": member.peer_id, "claim": _claim_json(claim)},
        )
        # A resume keeps the client's peer connection (a join from a new window starts afresh).
        lane = self.lanes.get(member.peer_id) if env["mode"] == "resume" else None
        if lane is not None:
            lane.put("resend_offer", None, None)  # after the welcome, in order with the lane
        await self.apply(fx)

    def _claim(self, member: Member, spec: MemberSpec) -> ResumeClaim:
        staff_id = int(spec.identity[6:]) if spec.identity.startswith("staff:") else None
        return ResumeClaim(
            room_id=self.room_id,
            peer_id=member.peer_id,
            identity=spec.identity,
            display_name=spec.display_name,
            role=spec.role,
            permissions=spec.permissions,
            is_staff=spec.is_staff,
            status="joined" if member.status == "joined" else "lobby",
            site_id=spec.site_id,
            site_name=spec.site_name,
            staff_id=staff_id,
            jti=spec.identity[6:] if spec.identity.startswith("guest:") else None,
        )

    def _detach(self, peer_id: str, conn: str) -> None:
        link = self.links.get(peer_id)
        if link is None or link.conn_id != conn or not link.connected:
            return
        link.connected = False
        link.generation = next(self._generation)
        self._emit(self.room.disconnected(peer_id, self.node.now()))
        loop = asyncio.get_running_loop()
        env = {"k": "expire", "p": peer_id, "g": link.generation}
        self._timers[peer_id] = loop.call_later(self.node.config.grace_s, self.deliver, env)

    # ----- client messages

    async def _message(self, peer: str, msg: ClientMessage) -> None:
        room, now = self.room, self.node.now()
        if isinstance(msg, Leave):
            self.send_to(peer, Ack(re=msg.id))
            fx = room.leave(peer, now)
            fx.closes.append((peer, 1000, "left"))
            await self.apply(fx)
            return
        if isinstance(msg, Offer | Answer | Candidate):
            lane = self.lanes.get(peer)
            if lane is None:
                if isinstance(msg, Answer | Candidate):
                    raise errors.OutOfOrder(f"send an offer before {msg.type}")
                lane = self.lanes[peer] = Lane(self, peer)
            if isinstance(msg, Offer | Answer):
                ok = lane.put(msg.type, msg.sdp, msg.id)
            else:
                cand = (
                    None
                    if msg.candidate is None
                    else IceCandidate(msg.candidate, msg.sdp_mid, msg.sdp_mline_index)
                )
                ok = lane.put("candidate", cand, msg.id)
            if not ok:
                raise errors.RateLimited("too many negotiation messages queued")
            return
        if isinstance(msg, SendChat):
            fx = room.chat(peer, msg.text, now)
        elif isinstance(msg, SetPresence):
            fx = room.presence(
                peer, muted_audio=msg.muted_audio, muted_video=msg.muted_video, quality=msg.quality
            )
        elif isinstance(msg, Admit):
            fx = room.admit(peer, msg.peer_id, now)
        elif isinstance(msg, Deny):
            fx = room.deny(peer, msg.peer_id, msg.reason, now)
        elif isinstance(msg, Remove):
            fx = room.remove(peer, msg.peer_id, msg.reason, now)
        elif isinstance(msg, Lock):
            fx = room.lock(peer, msg.locked, now)
        elif isinstance(msg, AskUnmute):
            fx = room.ask_unmute(peer, msg.peer_id, msg.kind)
        elif isinstance(msg, ForceMute):
            fx = room.force_mute(peer, msg.peer_id, msg.kind, msg.muted, now)
        elif isinstance(msg, EndSession):
            fx = room.end(peer, now)
        elif isinstance(msg, RecordingConsent):
            fx = room.consent(peer, msg.consent, now)
        elif isinstance(msg, RequestConsent):
            fx = room.request_consent(peer)
        elif isinstance(msg, StartRecording):
            fx = room.start_recording(peer, now)
        elif isinstance(msg, StopRecording):
            fx = room.stop_recording(peer, now)
        else:
            raise errors.InvalidState(f"{msg.type} is not valid now")
        self.send_to(peer, Ack(re=msg.id))
        await self.apply(fx)

    # ----- media events

    async def _media_event(self, event: MediaEvent) -> None:
        if isinstance(event, PeerDescription):
            lane = self.lanes.get(event.peer_id)
            if lane is not None and event.description.type == "offer":
                lane.put("server_offer", event.description.sdp, None)
        elif isinstance(event, ActiveSpeaker):
            self._emit(self.room.active_speaker(event.peer_id))
        elif isinstance(event, PeerFailed):
            lane = self.lanes.pop(event.peer_id, None)
            if lane is not None:
                await lane.close()
            self.send_to(
                event.peer_id,
                Error(
                    code="media_failed",
                    message=f"media connection failed: {event.reason}",
                    message_zh="音视频连接中断，正在重连",
                ),
            )
        elif isinstance(event, RecordingStopped):
            self._store_recording(event.files, event.interrupted)
            if event.interrupted:
                self._emit(self.room.recording_failed("interrupted", self.node.now()))
        elif isinstance(event, RecordingFailed):
            self._emit(self.room.recording_failed(event.reason, self.node.now()))

    def _store_recording(self, files: tuple[Any, ...], interrupted: bool) -> None:
        if files:
            # Everyone ever in the room: a removed participant's tracks still name them.
            self.node.journal.recording(
                self.session.id, dict(self.room.identities), files, interrupted
            )

    # ----- effects

    def send_to(self, peer_id: str, msg: ServerMessage) -> None:
        link = self.links.get(peer_id)
        if link is not None and link.connected:
            self._reply(link.node_id, link.conn_id, msg)

    def _reply(self, node_id: str, conn: str, msg: ServerMessage) -> None:
        self.node.route_node(node_id, {"k": "out", "c": [conn], "t": encode(msg)})

    def _resume_token(self, member: Member, now: datetime) -> tuple[str, ResumeClaim]:
        claim = self._claim(member, member.spec)
        token = issue_resume_token(
            self.node.config.secret, claim, now=now, ttl=store.resume_ttl(self.node.config.grace_s)
        )
        return token, claim

    def _emit(self, fx: Effects) -> None:
        for to, msg in fx.out:
            if isinstance(msg, Admitted) and len(to) == 1 and to[0] in self.room.members:
                link = self.links.get(to[0])
                if link is None or not link.connected:
                    continue
                token, claim = self._resume_token(self.room.members[to[0]], self.node.now())
                msg = msg.model_copy(update={"resume_token": token})
                self.node.route_node(link.node_id, {"k": "claim", "c": link.conn_id,
                                                    "claim": _claim_json(claim)})  # fmt: skip
            by_node: dict[str, list[str]] = defaultdict(list)
            for peer_id in to:
                link = self.links.get(peer_id)
                if link is not None and link.connected:
                    by_node[link.node_id].append(link.conn_id)
            if by_node:
                text = encode(msg)
                for node_id, conns in by_node.items():
                    self.node.route_node(node_id, {"k": "out", "c": conns, "t": text})
        for peer_id, code, reason in fx.closes:
            link = self.links.get(peer_id)
            if link is not None and link.connected:
                self.node.route_node(
                    link.node_id, {"k": "close", "c": link.conn_id, "code": code, "reason": reason}
                )
        for peer_id in fx.gone:
            self.links.pop(peer_id, None)
            self.gone_peers.add(peer_id)
            timer = self._timers.pop(peer_id, None)
            if timer is not None:
                timer.cancel()
        for ev in fx.events:
            event = RoomEvent(
                type=ev.type,
                room_id=self.room_id,
                session_id=self.session.id,
                actor=ev.actor,
                at=ev.at,
                payload=ev.payload,
            )
            self.node.journal.event(event)
            self.node.bus.publish_event(
                RoomEvent(
                    type=event.type,
                    room_id=event.room_id,
                    session_id=event.session_id,
                    actor=event.actor,
                    at=event.at,
                    payload=store.event_payload(event.payload),
                )
            )
        for chat in fx.chats:
            sender = self.room.members.get(chat.from_peer)
            self.node.journal.chat(
                self.session.id, sender.spec.identity if sender else chat.from_peer, chat
            )

    async def apply(self, fx: Effects) -> None:
        self._emit(fx)
        media = self.node.media
        for cmd in fx.media:
            try:
                if cmd.op == "close_peer":
                    lane = self.lanes.pop(cmd.peer_id, None)
                    if lane is not None:
                        await lane.close()
                    await media.close_peer(room_id=self.room_id, peer_id=cmd.peer_id)
                elif cmd.op == "set_forwarding":
                    if cmd.peer_id in self.lanes:
                        await media.set_forwarding(
                            room_id=self.room_id,
                            peer_id=cmd.peer_id,
                            kind=cmd.kind,
                            enabled=cmd.enabled,
                        )
                elif cmd.op == "start_recording":
                    directory = self.node.config.recordings_dir / self.room_id
                    await media.start_recording(room_id=self.room_id, directory=directory)
                elif cmd.op == "stop_recording":
                    # The files are stored when RecordingStopped arrives (the one path for a
                    # normal stop, a disk-full stop and a dead worker alike), not here as well.
                    await media.stop_recording(room_id=self.room_id)
                elif cmd.op == "close_room":
                    await self._close_lanes()
                    await media.close_room(room_id=self.room_id)
            except MediaFailure as e:
                logger.warning("media %s failed: %s", cmd.op, e.code)
                if cmd.op == "start_recording":
                    self._emit(self.room.recording_failed(e.code, self.node.now()))

    async def _close_lanes(self) -> None:
        lanes, self.lanes = list(self.lanes.values()), {}
        for lane in lanes:
            await lane.close()

    async def stop(self, *, close_media: bool) -> None:
        self.stopped = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if asyncio.current_task() is not self.task:
            await cancel_and_wait([self.task])
        await self._close_lanes()
        if close_media:
            with contextlib.suppress(MediaFailure):
                await self.node.media.close_room(room_id=self.room_id)


def _spec_json(spec: MemberSpec) -> Envelope:
    return {
        "peer_id": spec.peer_id,
        "identity": spec.identity,
        "display_name": spec.display_name,
        "role": spec.role,
        "is_staff": spec.is_staff,
        "permissions": sorted(spec.permissions),
        "site_id": spec.site_id,
        "site_name": spec.site_name,
    }


def _spec_from_json(d: Envelope) -> MemberSpec:
    return MemberSpec(
        peer_id=d["peer_id"],
        identity=d["identity"],
        display_name=d["display_name"],
        role=d["role"],
        is_staff=bool(d["is_staff"]),
        permissions=frozenset(d["permissions"]),
        site_id=d.get("site_id"),
        site_name=d.get("site_name", ""),
    )


def _claim_json(c: ResumeClaim) -> Envelope:
    return {
        "room_id": c.room_id,
        "peer_id": c.peer_id,
        "identity": c.identity,
        "display_name": c.display_name,
        "role": c.role,
        "permissions": sorted(c.permissions),
        "is_staff": c.is_staff,
        "status": c.status,
        "site_id": c.site_id,
        "site_name": c.site_name,
        "staff_id": c.staff_id,
        "jti": c.jti,
    }


def _claim_from_json(d: Envelope) -> ResumeClaim:
    return ResumeClaim(**{**d, "permissions": frozenset(d["permissions"])})


# ============================================================================ edge side


class Edge:
    """One WebSocket connection on this node."""

    def __init__(
        self, node: SignalingNode, transport: Transport, staff: StaffIdentity | None, ip: str
    ) -> None:
        self.node = node
        self.transport = transport
        self.staff = staff
        self.ip = ip
        self.conn_id = f"{node.config.node_id}/{secrets.token_urlsafe(8)}"
        self.state: Literal["new", "joining", "attached", "closed"] = "new"
        self.room_id: str | None = None
        self.peer_id: str | None = None
        self.identity: str | None = None
        self.claim: ResumeClaim | None = None
        self.owner: str | None = None
        self.bucket = TokenBucket(node.config.limits.rate_per_s, node.config.limits.burst)
        self.violations = 0
        self._pending: asyncio.Future[Envelope] | None = None
        self._reattaching = False

    def send(self, msg: ServerMessage) -> None:
        self.transport.send_text(encode(msg))

    async def on_text(self, text: str) -> None:
        """One text frame from the client. Never raises for bad input."""
        limits = self.node.config.limits
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
                    self.send(_error(errors.RateLimited("too many messages; closing"), None))
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
                env: Envelope = {"k": "msg", "c": self.conn_id, "p": self.peer_id}
                actor = self.node.rooms.get(self.room_id)
                if actor is not None:
                    env["o"] = msg
                    actor.deliver(env)
                else:
                    env["t"] = text
                    self.node.bus.send_room(self.room_id, env)
        except AppError as e:
            if re is None:
                re = _peek(text, "id")
            self.send(_error(e, re))
        except OUTAGE_ERRORS as e:
            # Redis or the database is restarting: a retryable answer; the socket stays up.
            logger.warning("backing service unavailable during %s: %s", _peek(text, "type"),
                           type(e).__name__)  # fmt: skip
            self.send(_error(errors.RoomUnavailable("a backing service is unavailable"), re))

    # ----- join and resume

    async def _join(self, msg: Join) -> None:
        if self.state != "new":
            raise errors.AlreadyJoined("this connection already joined a room")
        node, now = self.node, self.node.now()
        if msg.token is not None:
            await node.check_join_rate(self.ip)
        async with node.db.begin() as session:
            view = await store.get_session(session, room_id=msg.room_id)
            if not view.open:
                raise errors.SessionClosed("the session has ended")
            if msg.token is not None:
                grant = verify_join_token(node.config.secret, msg.token, now=now)
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
        node, now = self.node, self.node.now()
        claim = verify_resume_token(node.config.secret, msg.resume_token, now=now)
        if claim.is_staff and (self.staff is None or self.staff.staff_id != claim.staff_id):
            raise errors.NotAuthenticated("sign in again to resume")
        async with node.db.begin() as session:
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
        mode: str,
        status: str | None,
        re: str | None,
    ) -> None:
        node = self.node
        if self.identity != spec.identity:
            if not node.count_identity(spec.identity):
                raise errors.TooManyConnections("too many connections for this identity")
            if self.identity is not None:
                node.uncount_identity(self.identity)
            self.identity = spec.identity
        self.state = "joining"
        env: Envelope = {
            "k": "attach",
            "c": self.conn_id,
            "node": node.config.node_id,
            "spec": _spec_json(spec),
            "mode": mode,
            "status": status,
            "re": re,
        }
        try:
            reply = await node.attach(view, env, self)
        except BaseException:
            self.state = "new" if self.state == "joining" else self.state
            raise
        if reply["k"] != "attached":
            self.state = "new"
            return  # the owner already sent the typed error
        self.state = "attached"
        self.room_id, self.peer_id = view.room_id, reply["p"]
        self.claim = _claim_from_json(reply["claim"])
        room_id_var.set(view.room_id)
        peer_id_var.set(self.peer_id)
        node.attached[view.room_id].add(self)
        logger.info("participant attached (%s)", mode)

    def resolve(self, env: Envelope) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(env)

    async def reattach(self) -> None:
        """The room's owner changed (node died): take our place on the new owner."""
        if self._reattaching or self.claim is None or self.state != "attached":
            return
        self._reattaching = True
        try:
            async with self.node.db.begin() as session:
                view = await store.get_session(session, room_id=self.claim.room_id)
            env: Envelope = {
                "k": "attach",
                "c": self.conn_id,
                "node": self.node.config.node_id,
                "spec": _spec_json(_spec_from_claim(self.claim)),
                "mode": "resume",
                "status": self.claim.status,
                "re": None,
            }
            reply = await self.node.attach(view, env, self)
            if reply["k"] == "attached":
                self.claim = _claim_from_json(reply["claim"])
            else:
                self.transport.close(errors.CLOSE_CODES["resume_failed"], "resume failed")
        except AppError as e:
            self.send(_error(e, None))
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
            env = {"k": "detach", "c": self.conn_id, "p": self.peer_id}
            actor = self.node.rooms.get(self.room_id)
            if actor is not None:
                actor.deliver(env)
            else:
                self.node.bus.send_room(self.room_id, env)
        self.state = "closed"
        self.node.forget(self)


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


# ============================================================================ the node


class SignalingNode:
    def __init__(
        self,
        *,
        config: NodeConfig,
        bus: SignalBus,
        directory: RoomDirectory,
        media: MediaNode,
        db: async_sessionmaker[AsyncSession],
        cipher: PiiCipher,
        clock: Clock = utcnow,
        ratelimiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        #: Saved room state holds display names: encrypted like other personal data.
        self.cipher = cipher
        self.ratelimiter = ratelimiter
        self.bus = bus
        self.directory = directory
        self.media = media
        self.db = db
        self.now = clock
        self.journal = store.Journal(db)
        self.rooms: dict[str, RoomActor] = {}
        self.edges: dict[str, Edge] = {}
        self.attached: dict[str, set[Edge]] = defaultdict(set)
        self._identity_count: dict[str, int] = defaultdict(int)
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[None]] = set()
        self._closing = False
        #: Rooms whose durable state may have changed since it was last saved.
        self._dirty: dict[str, RoomActor] = {}
        self._dirty_wake = asyncio.Event()
        self._state_lock = asyncio.Lock()
        #: Rooms with participants here whose lease nobody holds, and nodes whose heartbeat is
        #: missing: since when (monotonic). See `_renew_once`.
        self._ownerless: dict[str, float] = {}
        self._missing: dict[str, float] = {}
        self._directory_down = False

    # ----- lifecycle

    async def start(self) -> None:
        await self.bus.start(self._on_node_message)
        await self.directory.beat(self.config.node_id, self.config.limits.lease_ms)
        self.journal.start()
        self._tasks = [
            asyncio.create_task(self._leases(), name="signaling-leases"),
            asyncio.create_task(self._media_events(), name="signaling-media-events"),
            asyncio.create_task(self._state_writer(), name="signaling-room-state"),
        ]

    async def close(self) -> None:
        """Orderly shutdown: rooms are released so another node can take them at once."""
        self._closing = True  # from here `spawn` starts nothing
        await cancel_and_wait([*self._tasks, *self._spawned])
        for actor in list(self.rooms.values()):
            await actor.stop(close_media=True)
            with contextlib.suppress(Exception):
                await self.save_state(actor)
            with contextlib.suppress(Exception):
                await self.directory.release(actor.room_id, self.config.node_id)
        self.rooms.clear()
        await cancel_and_wait(list(self._spawned))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self.bus.flush()
        await self.journal.close()
        await self.bus.close()

    def spawn(self, coro: Any, *, name: str) -> None:
        """Run `coro` as a task of the node's (cancelled by `close`). While the node closes,
        nothing new starts: a task begun then would outlive it."""
        if self._closing:
            coro.close()
            return
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # ----- connections

    def connect(self, transport: Transport, staff: StaffIdentity | None, ip: str = "") -> Edge:
        edge = Edge(self, transport, staff, ip)
        self.edges[edge.conn_id] = edge
        return edge

    async def check_join_rate(self, ip: str) -> None:
        """Raises JoinRateLimited when `ip` redeemed too many join links this minute."""
        limit = self.config.join_rate_per_min
        if self.ratelimiter is not None and limit is not None:
            await check_join_rate(self.ratelimiter, ip, per_min=limit)

    def count_identity(self, identity: str) -> bool:
        if self._identity_count[identity] >= self.config.limits.max_connections_per_identity:
            return False
        self._identity_count[identity] += 1
        return True

    def forget(self, edge: Edge) -> None:
        self.edges.pop(edge.conn_id, None)
        if edge.room_id is not None:
            self.attached[edge.room_id].discard(edge)
            if not self.attached[edge.room_id]:
                del self.attached[edge.room_id]
        if edge.identity is not None:
            self.uncount_identity(edge.identity)
            edge.identity = None

    def uncount_identity(self, identity: str) -> None:
        self._identity_count[identity] -= 1
        if self._identity_count[identity] <= 0:
            del self._identity_count[identity]

    def ice_servers(self, identity: str) -> list[IceServerInfo]:
        c = self.config
        return turn_credentials(
            secret=c.turn_secret,
            identity=identity,
            now=self.now(),
            ttl_s=c.turn_ttl_s,
            stun_urls=c.stun_urls,
            turn_urls=c.turn_urls,
        )

    # ----- routing

    def route_node(self, node_id: str, env: Envelope) -> None:
        if node_id == self.config.node_id:
            self._on_node_message(env)
        else:
            self.bus.send_node(node_id, env)

    def _on_node_message(self, env: Envelope) -> None:
        kind = env.get("k")
        if kind == "out":
            text = env["t"]
            for conn in env["c"]:
                edge = self.edges.get(conn)
                if edge is not None and edge.state != "closed":
                    edge.transport.send_text(text)
        elif kind == "close":
            edge = self.edges.get(env["c"])
            if edge is not None:
                edge.state = "closed"  # the owner already let it go: no detach
                edge.transport.close(int(env["code"]), str(env["reason"]))
                self.forget(edge)
        elif kind == "claim":
            edge = self.edges.get(env["c"])
            if edge is not None:
                edge.claim = _claim_from_json(env["claim"])
        elif kind in ("attached", "refused"):
            edge = self.edges.get(env["c"])
            if edge is not None:
                edge.resolve(env)

    async def attach(self, view: store.SessionView, env: Envelope, edge: Edge) -> Envelope:
        """Deliver an attach to the room's owner (taking ownership if nobody has it) and wait
        for its answer; retry while a dead owner's lease runs out, within the grace period."""
        limits = self.config.limits
        deadline = time.monotonic() + max(self.config.grace_s, limits.lease_ms / 1000 * 2)
        while True:
            owner = await self.directory.claim(view.room_id, self.config.node_id, limits.lease_ms)
            loop = asyncio.get_running_loop()
            edge._pending = loop.create_future()
            if owner == self.config.node_id:
                actor = await self._ensure_actor(view, rebuilt=env["mode"] == "resume")
                actor.deliver(env)
            else:
                self.bus.send_room(view.room_id, env)
            edge.owner = owner
            try:
                async with asyncio.timeout(limits.attach_timeout_s):
                    return await edge._pending
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise errors.RoomUnavailable("the session's server does not answer") from None
                logger.info("owner %s of room did not answer; retrying", owner)
            finally:
                edge._pending = None

    async def _ensure_actor(self, view: store.SessionView, *, rebuilt: bool) -> RoomActor:
        actor = self.rooms.get(view.room_id)
        if actor is not None and not actor.stopped:
            return actor
        if len(self.rooms) >= self.config.limits.max_rooms:
            await self.directory.release(view.room_id, self.config.node_id)
            raise errors.NodeFull("this server hosts too many rooms")
        # A session that is already live and unknown here was hosted elsewhere: rebuild it.
        actor = RoomActor(self, view, rebuilt=rebuilt or view.state.value == "live")
        self.rooms[view.room_id] = actor
        await self.bus.host_room(view.room_id, actor.deliver)
        logger.info("hosting room %s", view.room_id)
        # Our own participants in this room were attached to its previous owner (dead, or it
        # let the room go): they take their places here now. The lease loop's check skips
        # rooms we host, so without this they would wait out their grace period and be lost
        # whenever someone else's resume or join, not their own re-attach, took the room.
        for edge in list(self.attached.get(view.room_id, ())):
            if edge.owner != self.config.node_id:
                self.spawn(edge.reattach(), name=f"reattach:{edge.conn_id}")
        return actor

    async def _retire(self, actor: RoomActor) -> None:
        if self.rooms.get(actor.room_id) is actor:
            del self.rooms[actor.room_id]
        await actor.stop(close_media=True)
        await self.bus.unhost_room(actor.room_id)
        try:  # while we still hold the lease: an emptied room keeps its lock and bans
            await self.save_state(actor)
        except OUTAGE_ERRORS as e:
            logger.warning("room %s emptied; state not saved: %s", actor.room_id, type(e).__name__)
        except Exception:
            logger.exception("saving the state of room %s failed", actor.room_id)
        await self.directory.release(actor.room_id, self.config.node_id)
        logger.info("room %s retired", actor.room_id)

    # ----- background

    async def _leases(self) -> None:
        limits = self.config.limits
        interval_s = limits.lease_ms / 3000
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._renew_once()
            except asyncio.CancelledError:
                raise
            except OUTAGE_ERRORS as e:
                if not self._directory_down:
                    logger.warning("room directory unreachable (%s); retrying", type(e).__name__)
                self._directory_down = True
                continue
            except Exception:
                logger.exception("lease renewal failed")
            if self._directory_down:
                logger.info("room directory reachable again; leases renewed")
                self._directory_down = False

    async def _renew_once(self) -> None:
        limits, node_id = self.config.limits, self.config.node_id
        await self.directory.beat(node_id, limits.lease_ms)
        lost = await self.directory.renew(list(self.rooms), node_id, limits.lease_ms)
        for room_id in lost:
            actor = self.rooms.pop(room_id, None)
            self._dirty.pop(room_id, None)
            if actor is not None:
                logger.warning("lost the lease of room %s", room_id)
                await actor.stop(close_media=True)
                await self.bus.unhost_room(room_id)
        stale = time.monotonic() - STATE_REFRESH_S
        for actor in self.rooms.values():
            if actor.saved is not None and actor.saved_at < stale:
                actor.saved = None  # rewrite it even if unchanged: its TTL runs
                self.mark_dirty(actor)
        # A lease or heartbeat missing from the directory means a dead node only once it stays
        # missing for a whole lease: after a Redis restart (which loses every key) or an outage
        # longer than a lease, live nodes put theirs back at their next renewal (a third of a
        # lease), and acting at once would move live rooms and drop live participants.
        now_s, settle_s = time.monotonic(), limits.lease_ms / 1000
        # Edge side: rooms whose owner changed or vanished get our participants re-attached.
        self._ownerless = {r: t for r, t in self._ownerless.items() if r in self.attached}
        for room_id, edges in list(self.attached.items()):
            if room_id in self.rooms:
                self._ownerless.pop(room_id, None)
                continue
            owner = await self.directory.owner(room_id)
            if owner is None:
                if now_s - self._ownerless.setdefault(room_id, now_s) < settle_s:
                    continue
            else:
                self._ownerless.pop(room_id, None)
            for edge in list(edges):
                if edge.owner is not None and owner != edge.owner:
                    self.spawn(edge.reattach(), name=f"reattach:{edge.conn_id}")
        # Owner side: participants whose edge node died start their grace period.
        nodes = {
            link.node_id
            for a in self.rooms.values()
            for link in a.links.values()
            if link.connected and link.node_id != node_id
        }
        self._missing = {n: t for n, t in self._missing.items() if n in nodes}
        alive = await self.directory.alive(nodes)
        for dead in nodes - alive:
            if now_s - self._missing.setdefault(dead, now_s) < settle_s:
                continue
            for actor in self.rooms.values():
                actor.deliver({"k": "edge_down", "node": dead})
        for node in alive:
            self._missing.pop(node, None)

    # ----- durable room state

    def mark_dirty(self, actor: RoomActor) -> None:
        self._dirty[actor.room_id] = actor
        self._dirty_wake.set()

    async def save_state(self, actor: RoomActor) -> bool:
        """Write the room's durable state if it changed (drop it once the session ended).
        One write at a time per node, so an older state never lands after a newer one.
        False: the directory refused it (our lease ran out)."""
        async with self._state_lock:
            self._dirty.pop(actor.room_id, None)
            node_id = self.config.node_id
            if actor.room.ended:
                await self.directory.drop_state(actor.room_id, node_id)
                return True
            state = actor.room.durable_state()
            if state == actor.saved:
                return True
            blob = self.cipher.encrypt(state.model_dump_json())
            if await self.directory.save_state(actor.room_id, node_id, blob, STATE_TTL_MS):
                actor.saved, actor.saved_at = state, time.monotonic()
                return True
            logger.warning("no lease on room %s; its state was not saved", actor.room_id)
            return False

    async def flush_state(self) -> None:
        """Save every room whose state changed, now (tests: the writer does it right after
        each change anyway)."""
        for actor in list(self.rooms.values()):
            await self.save_state(actor)

    async def _state_writer(self) -> None:
        """One small write per changed room, after the change, off the rooms' own tasks: a
        room never waits for Redis, and a burst of changes coalesces into one write."""
        state_down = False
        while True:
            await self._dirty_wake.wait()
            self._dirty_wake.clear()
            while self._dirty:
                room_id = next(iter(self._dirty))
                actor = self._dirty[room_id]
                if self.rooms.get(room_id) is not actor:  # retired (saved then) or lost
                    del self._dirty[room_id]
                    continue
                try:
                    saved = await self.save_state(actor)
                except asyncio.CancelledError:
                    raise
                except OUTAGE_ERRORS as e:  # one warning per outage, as the lease renewal
                    if not state_down:
                        logger.warning("room state not saved: %s; retrying", type(e).__name__)
                    state_down, saved = True, False
                except Exception:
                    logger.exception("saving the state of room %s failed; retrying", room_id)
                    saved = False
                else:
                    if state_down:
                        logger.info("room state saved again")
                        state_down = False
                if not saved:  # Redis down, or a late lease renewal will re-take the room
                    self._dirty.setdefault(room_id, actor)
                    await asyncio.sleep(STATE_RETRY_S)

    async def _media_events(self) -> None:
        async for event in self.media.events():
            actor = self.rooms.get(event.room_id)
            if actor is not None:
                actor.deliver({"k": "media", "e": event})

"""The owner side of a room: `RoomActor` is the authoritative copy of one room on the node that
holds its lease. One task drains its inbox (attach, client messages, detach, grace timers, media
events, dead edge nodes), runs the pure `Room` and carries out the `Effects`: messages routed to
the participants' edge nodes, media commands, journal entries and session events.

    edge node ──Attach/PeerMessage/Detach──► inbox ─► RoomActor ─► Room (pure state)
                                                        ├─► Lane per participant ─► MediaNode
    edge node ◄──Out/Close/ClaimUpdate/Attached/Refused──┤   (OwnerContext.route_node)
                                                        └─► Journal, session events

It sees its node only through `OwnerContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from media.errors import MediaFailure
from media.interfaces import (
    ActiveSpeaker,
    IceCandidate,
    MediaEvent,
    MediaNode,
    PeerDescription,
    PeerFailed,
    PublishLimit,
    RecordingFailed,
    RecordingStopped,
    SubscriberTracks,
    UpstreamQuality,
    VideoPaused,
)
from server.kernel.errors import AppError
from server.kernel.logging import peer_id_var, room_id_var
from server.kernel.tasks import cancel_and_wait
from server.sessions import service as sessions
from signaling import errors, store
from signaling.bus import RoomEvent
from signaling.commands import room_operation
from signaling.config import NodeConfig
from signaling.envelopes import (
    Attach,
    Attached,
    ClaimUpdate,
    Close,
    Detach,
    NodeBound,
    Out,
    PeerMessage,
    Refused,
)
from signaling.lane import Lane
from signaling.protocol import (
    Ack,
    Admitted,
    Answer,
    Candidate,
    ClientMessage,
    EndSession,
    Error,
    IceServerInfo,
    Leave,
    Offer,
    PublishLimitOut,
    ReceiveVideo,
    SendChat,
    ServerMessage,
    TrackPublishedOut,
    TrackUnpublishedOut,
    VideoPausedOut,
    VideoResumedOut,
    Welcome,
    client_adapter,
    encode,
    error_message,
)
from signaling.room import Room
from signaling.roomstate import Effects, Member, MemberSpec, RoomState
from signaling.tokens import ResumeClaim, issue_resume_token

logger = logging.getLogger(__name__)

STATE_LOAD_TIMEOUT_S = 2.0
#: Client messages that never change a room's durable state: no state write after them.
_STATELESS = (SendChat, Offer, Answer, Candidate, ReceiveVideo)


# ----------------------------------------------------------------------------- local inbox


@dataclass(frozen=True, slots=True)
class Expire:
    """A disconnected participant's grace period ran out (its `generation` of the link)."""

    peer_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class MediaNotice:
    """An event of the media node about this room."""

    event: MediaEvent


@dataclass(frozen=True, slots=True)
class EdgeDown:
    """The edge node `node_id` stopped beating: its participants start their grace period."""

    node_id: str


#: What a room's inbox holds: envelopes from edge nodes, and this node's own notices (never on
#: the wire).
Inbox = Attach | PeerMessage | Detach | Expire | MediaNotice | EdgeDown


class OwnerContext(Protocol):
    """What a room's owner needs from its node (`SignalingNode` implements it)."""

    @property
    def config(self) -> NodeConfig: ...

    @property
    def media(self) -> MediaNode: ...

    @property
    def journal(self) -> store.Journal: ...

    def now(self) -> datetime: ...

    def route_node(self, node_id: str, msg: NodeBound) -> None:
        """To an edge node (this one: a direct call)."""
        ...

    def ice_servers(self, identity: str) -> list[IceServerInfo]: ...

    def publish_event(self, event: RoomEvent) -> None: ...

    def mark_dirty(self, actor: RoomActor) -> None:
        """The room's durable state may have changed: save it soon."""
        ...

    async def retire(self, actor: RoomActor) -> None:
        """The room emptied or ended: stop hosting it."""
        ...

    async def load_state(self, room_id: str) -> RoomState | None:
        """What the room's previous owner saved, if anything."""
        ...

    async def seal(self, actor: RoomActor) -> None:
        """The room just ended: make the end durable (the session record says `ended`) before
        the room is let go, so no join or resume can bring it back."""
        ...


@dataclass(slots=True)
class _Link:
    node_id: str
    conn_id: str
    connected: bool = True
    generation: int = 0


class RoomActor:
    """The authoritative copy of one room, on its owner node; one task processes its inbox."""

    def __init__(self, ctx: OwnerContext, session: store.SessionView, *, rebuilt: bool) -> None:
        self.ctx = ctx
        self.media = ctx.media
        self.session = session
        self.room_id = session.room_id
        self.room = self._new_room()
        self.rebuilt = rebuilt
        #: The durable state last written to the directory, and when (monotonic).
        self.saved: RoomState | None = None
        self.saved_at = 0.0
        self.links: dict[str, _Link] = {}
        self.lanes: dict[str, Lane] = {}
        #: The tracks each participant was told it receives (track_published), by track id.
        self.told_tracks: dict[str, dict[str, str]] = {}
        #: Participants who chose audio only (applied again to a new media connection).
        self.video_off: set[str] = set()
        self.gone_peers: set[str] = set()
        self.inbox: asyncio.Queue[Inbox] = asyncio.Queue(maxsize=ctx.config.limits.room_inbox)
        self.stopped = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._generation = itertools.count(1)
        self.task = asyncio.create_task(self._run(), name=f"room:{self.room_id}")

    def ice_servers(self, identity: str) -> list[IceServerInfo]:
        return self.ctx.ice_servers(identity)

    def _new_room(self) -> Room:
        session = self.session
        room = Room(
            room_id=session.room_id,
            kind="mediation" if session.kind.value == "mediation" else "reception",
            capacity=session.capacity or self.ctx.config.default_capacity,
            title=session.title,
            recording_allowed=session.recording_allowed,
        )
        room.started = session.state.value == "live"
        room.opens_at = sessions.opens_at(session, lobby_lead=self.ctx.config.lobby_lead)
        return room

    # ----- durable state

    async def _load_state(self) -> None:
        """Before the first envelope: take over what the previous owner saved, if anything.

        Everyone saved comes back in their place, disconnected, with the rest of their grace
        period (a whole one for those who were connected when the owner died); the
        participants resume into it (`reconnected`), the others are told as each returns.
        """
        ctx = self.ctx
        try:
            async with asyncio.timeout(STATE_LOAD_TIMEOUT_S):
                state = await ctx.load_state(self.room_id)
            if state is None:
                return
            fx = self.room.load_state(state, ctx.now())
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
        loop, now = asyncio.get_running_loop(), ctx.now()
        expired: list[str] = []
        for peer_id, member in self.room.members.items():
            delay = member.grace_left(ctx.config.grace_s, now)
            if delay <= 0:  # abandoned long ago: gone before anyone sees the room (no ghost)
                expired.append(peer_id)
                continue
            generation = next(self._generation)
            self.links[peer_id] = _Link("", "", connected=False, generation=generation)
            self._timers[peer_id] = loop.call_later(
                delay, self.deliver, Expire(peer_id, generation)
            )
        logger.info("restored room %s: %d participants, locked=%s", self.room_id,
                    len(self.room.members), self.room.locked)  # fmt: skip
        await self.apply(fx)
        for peer_id in expired:
            await self.apply(self.room.leave(peer_id, now, reason="timeout"))
        ctx.mark_dirty(self)

    # ----- inbox

    def deliver(self, msg: Inbox) -> None:
        if self.stopped:
            if self.room.ended and isinstance(msg, Attach):
                self._refuse_closed(msg)
            return
        try:
            self.inbox.put_nowait(msg)
        except asyncio.QueueFull:
            logger.warning("room %s inbox full; dropped %s", self.room_id, type(msg).__name__)

    async def _run(self) -> None:
        room_id_var.set(self.room_id)
        await self._load_state()
        while True:
            msg = await self.inbox.get()
            try:
                if await self._handle(msg):
                    self.ctx.mark_dirty(self)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.ctx.mark_dirty(self)
                logger.exception("room %s failed on %s", self.room_id, type(msg).__name__)
            if self.room.ended:
                await self._finish()
                return
            if self.room.empty:
                await self.ctx.retire(self)
                return

    async def _finish(self) -> None:
        """The session ended: seal it, let the room go, and refuse whoever tried to come in
        meanwhile (their attach waits in the inbox; later ones are refused by `deliver`)."""
        try:
            await self.ctx.seal(self)
        except asyncio.CancelledError:
            raise
        except Exception:  # the journal still carries `session.ended`
            logger.exception("sealing the end of room %s failed", self.room_id)
        await self.ctx.retire(self)
        while not self.inbox.empty():
            msg = self.inbox.get_nowait()
            if isinstance(msg, Attach):
                self._refuse_closed(msg)

    def _refuse_closed(self, env: Attach) -> None:
        e = errors.SessionClosed("the session has ended")
        self._reply(env.node_id, env.conn_id, error_message(e, env.re))
        self.ctx.route_node(env.node_id, Refused(env.conn_id, e.code))

    async def _handle(self, env: Inbox) -> bool:
        """Returns False when the room's durable state cannot have changed (chat, negotiation,
        speakers: the hot paths write nothing)."""
        if isinstance(env, PeerMessage):
            peer_id = env.peer_id
            link = self.links.get(peer_id)
            if link is None or link.conn_id != env.conn_id:
                return False  # a replaced or expired connection
            msg = env.parsed or client_adapter.validate_json(env.text)
            peer_id_var.set(peer_id)
            try:
                await self._message(peer_id, msg)
            except AppError as e:
                self.send_to(peer_id, error_message(e, msg.id))
            return not isinstance(msg, _STATELESS)
        if isinstance(env, Attach):
            await self._attach(env)
        elif isinstance(env, Detach):
            link = self.links.get(env.peer_id)
            peer_id = env.peer_id
            if link is None or link.conn_id != env.conn_id:
                # An edge that gave up on its attach knows only the peer id it asked for; the
                # room may have given the identity's existing place instead.
                peer_id = next(
                    (p for p, x in self.links.items() if x.conn_id == env.conn_id), peer_id
                )
            self._detach(peer_id, env.conn_id)
        elif isinstance(env, Expire):
            link = self.links.get(env.peer_id)
            if link is not None and not link.connected and link.generation == env.generation:
                await self.apply(self.room.leave(env.peer_id, self.ctx.now(), reason="timeout"))
        elif isinstance(env, MediaNotice):
            await self._media_event(env.event)
            return not isinstance(
                env.event,
                PeerDescription
                | ActiveSpeaker
                | VideoPaused
                | PublishLimit
                | SubscriberTracks
                | UpstreamQuality,
            )
        else:  # EdgeDown
            for peer_id, link in list(self.links.items()):
                if link.node_id == env.node_id:
                    self._detach(peer_id, link.conn_id)
        return True

    # ----- joining

    async def _attach(self, env: Attach) -> None:
        now = self.ctx.now()
        spec = env.spec
        conn, edge_node, re = env.conn_id, env.node_id, env.re
        peer_id_var.set(spec.peer_id)
        try:
            if env.mode == "join":
                member, fx, existing = self.room.enter(spec, now)
                resumed = existing
            else:
                existing_m = self.room.members.get(spec.peer_id)
                if existing_m is not None and existing_m.spec.identity == spec.identity:
                    member, fx, resumed = existing_m, self.room.reconnected(spec.peer_id), True
                elif spec.peer_id in self.gone_peers or not self.rebuilt:
                    raise errors.ResumeFailed("your place in the room has expired")
                else:
                    member, fx = self.room.restore(spec, env.status or "lobby", now)
                    resumed = True
        except AppError as e:
            self._reply(edge_node, conn, error_message(e, re))
            self.ctx.route_node(edge_node, Refused(conn, e.code))
            return
        old = self.links.get(member.peer_id)
        if old is not None and old.node_id and old.conn_id != conn:  # not a restored place
            self._reply(
                old.node_id,
                old.conn_id,
                error_message(
                    errors.ConnectionReplaced("you joined from another window or device"), None
                ),
            )
            self.ctx.route_node(
                old.node_id,
                Close(old.conn_id, errors.CLOSE_CODES["connection_replaced"], "replaced"),
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
            ice_servers=self.ctx.ice_servers(spec.identity),
            resume_token=issue_resume_token(
                self.ctx.config.secret,
                claim,
                now=now,
                ttl=store.resume_ttl(self.ctx.config.grace_s),
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
        self.ctx.route_node(edge_node, Attached(conn, member.peer_id, claim))
        # A resume keeps the client's peer connection (a join from a new window starts afresh).
        lane = self.lanes.get(member.peer_id) if env.mode == "resume" else None
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
        self._emit(self.room.disconnected(peer_id, self.ctx.now()))
        loop = asyncio.get_running_loop()
        self._timers[peer_id] = loop.call_later(
            self.ctx.config.grace_s, self.deliver, Expire(peer_id, link.generation)
        )

    # ----- client messages

    async def _message(self, peer: str, msg: ClientMessage) -> None:
        room, now = self.room, self.ctx.now()
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
                lane = self.lanes[peer] = Lane(
                    self,
                    peer,
                    queue_size=self.ctx.config.limits.lane_queue,
                    negotiation_timeout_s=self.ctx.config.limits.negotiation_timeout_s,
                )
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
        if isinstance(msg, ReceiveVideo):
            if msg.enabled:
                self.video_off.discard(peer)
            else:
                self.video_off.add(peer)
            lane = self.lanes.get(peer)
            if lane is not None and lane.has_peer:  # else the lane applies it after its offer
                try:
                    await self.media.set_receive_video(
                        room_id=self.room_id, peer_id=peer, enabled=msg.enabled
                    )
                except MediaFailure as e:
                    logger.info("receive_video for %s: %s", peer, e.code)
            self.send_to(peer, Ack(re=msg.id))
            return
        if isinstance(msg, EndSession):  # never a booked session ended before its window
            sessions.check_can_end(
                self.session, now=now, lobby_lead=self.ctx.config.lobby_lead, live=room.started
            )
        fx = room_operation(room, peer, msg, now)
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
        elif isinstance(event, UpstreamQuality):
            self._emit(self.room.upstream_quality(event.peer_id, event.grade))
        elif isinstance(event, VideoPaused):
            peers = list(event.publisher_ids)
            self.send_to(
                event.peer_id,
                VideoPausedOut(peers=peers) if event.paused else VideoResumedOut(peers=peers),
            )
        elif isinstance(event, PublishLimit):
            kbps = None if event.max_bps is None else event.max_bps // 1000
            self.send_to(event.peer_id, PublishLimitOut(max_kbps=kbps))
        elif isinstance(event, SubscriberTracks):
            self._tell_tracks(event)
        elif isinstance(event, PeerFailed):
            self.told_tracks.pop(event.peer_id, None)  # its next connection starts afresh
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
                self._emit(self.room.recording_failed("interrupted", self.ctx.now()))
        elif isinstance(event, RecordingFailed):
            self._emit(self.room.recording_failed(event.reason, self.ctx.now()))

    def _tell_tracks(self, event: SubscriberTracks) -> None:
        """`track_published` for each track the participant now receives that it was not told
        of, `track_unpublished` for each it no longer does (a new media connection starts
        afresh: the old tracks are gone with it)."""
        told = self.told_tracks.setdefault(event.peer_id, {})
        now = {t.track_id: t for t in event.tracks}
        for track_id in [t for t in told if t not in now]:
            self.send_to(
                event.peer_id, TrackUnpublishedOut(track_id=track_id, peer_id=told[track_id])
            )
            del told[track_id]
        for track_id, t in now.items():
            if track_id not in told:
                self.send_to(
                    event.peer_id,
                    TrackPublishedOut(
                        track_id=track_id, peer_id=t.publisher_id, kind=t.kind, source=t.source
                    ),
                )
                told[track_id] = t.publisher_id

    def _store_recording(self, files: tuple[Any, ...], interrupted: bool) -> None:
        if files:
            # Everyone ever in the room: a removed participant's tracks still name them.
            self.ctx.journal.recording(
                self.session.id, dict(self.room.identities), files, interrupted
            )

    # ----- effects

    def send_to(self, peer_id: str, msg: ServerMessage) -> None:
        link = self.links.get(peer_id)
        if link is not None and link.connected:
            self._reply(link.node_id, link.conn_id, msg)

    def _reply(self, node_id: str, conn: str, msg: ServerMessage) -> None:
        self.ctx.route_node(node_id, Out([conn], encode(msg)))

    def _resume_token(self, member: Member, now: datetime) -> tuple[str, ResumeClaim]:
        claim = self._claim(member, member.spec)
        token = issue_resume_token(
            self.ctx.config.secret, claim, now=now, ttl=store.resume_ttl(self.ctx.config.grace_s)
        )
        return token, claim

    def _emit(self, fx: Effects) -> None:
        for to, msg in fx.out:
            if isinstance(msg, Admitted) and len(to) == 1 and to[0] in self.room.members:
                link = self.links.get(to[0])
                if link is None or not link.connected:
                    continue
                token, claim = self._resume_token(self.room.members[to[0]], self.ctx.now())
                msg = msg.model_copy(update={"resume_token": token})
                self.ctx.route_node(link.node_id, ClaimUpdate(link.conn_id, claim))
            by_node: dict[str, list[str]] = defaultdict(list)
            for peer_id in to:
                link = self.links.get(peer_id)
                if link is not None and link.connected:
                    by_node[link.node_id].append(link.conn_id)
            if by_node:
                text = encode(msg)
                for node_id, conns in by_node.items():
                    self.ctx.route_node(node_id, Out(conns, text))
        for peer_id, code, reason in fx.closes:
            link = self.links.get(peer_id)
            if link is not None and link.connected:
                self.ctx.route_node(link.node_id, Close(link.conn_id, code, reason))
        for peer_id in fx.gone:
            self.links.pop(peer_id, None)
            self.told_tracks.pop(peer_id, None)
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
            self.ctx.journal.event(event)
            self.ctx.publish_event(
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
            self.ctx.journal.chat(
                self.session.id, sender.spec.identity if sender else chat.from_peer, chat
            )

    async def apply(self, fx: Effects) -> None:
        self._emit(fx)
        media = self.media
        for cmd in fx.media:
            try:
                if cmd.op == "close_peer":
                    self.video_off.discard(cmd.peer_id)
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
                    directory = self.ctx.config.recordings_dir / self.room_id
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
                    self._emit(self.room.recording_failed(e.code, self.ctx.now()))

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
                await self.media.close_room(room_id=self.room_id)

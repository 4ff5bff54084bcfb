"""One signaling node: it holds the leases of the rooms it owns (renewed, released, re-homed
when a node dies), saves their durable state, routes node-to-node messages, and is the context
its two halves see: `Edge` (edge.py, one per client socket here) through `EdgeContext`, and
`RoomActor` (owner.py, one per room owned here) through `OwnerContext`.

    browser ─WS─► Edge (parse, limits, auth) ──Attach/PeerMessage/Detach──► RoomActor (owner node)
                    ▲                                                  │ Room (pure state)
                    └──── Out/Close/ClaimUpdate/Attached/Refused ◄─────┤ Lane per peer ─► MediaNode
                                                                       └─► Journal (DB), events

Edge and owner may be the same node (direct calls) or two nodes (SignalBus, Redis; the messages
are in envelopes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media.interfaces import MediaNode, PeerQuality
from server.auth.permissions import StaffIdentity
from server.cases.deadline_clock import DeadlineClock
from server.kernel.crypto import PiiCipher
from server.kernel.db import utcnow
from server.kernel.errors import OUTAGE_ERRORS
from server.kernel.ratelimit import RateLimiter, check_join_rate
from server.kernel.tasks import cancel_and_wait
from signaling import errors, store
from signaling.bus import RoomDirectory, RoomEvent, SignalBus
from signaling.config import Clock, NodeConfig
from signaling.edge import Edge, Transport
from signaling.envelopes import (
    Attach,
    AttachReply,
    ClaimUpdate,
    Close,
    NodeBound,
    Out,
    RoomBound,
)
from signaling.owner import EdgeDown, MediaNotice, RoomActor
from signaling.protocol import IceServerInfo
from signaling.roomstate import RoomState
from signaling.tokens import turn_credentials

logger = logging.getLogger(__name__)

#: A room's saved state outlives a quiet day; the owner rewrites it at least every 6 hours.
STATE_TTL_MS = 24 * 3600 * 1000
STATE_REFRESH_S = 6 * 3600.0
STATE_RETRY_S = 1.0
#: How long `seal` waits for the journal to write a room's end before it writes it directly.
SEAL_FLUSH_S = 2.0
#: Rooms whose session ended here, remembered (most recent) to refuse at once without a query.
ENDED_MEMORY = 10_000


def quality_event(
    event: PeerQuality, session_id: int, identities: dict[str, str], now: datetime
) -> RoomEvent | None:
    """The session-record event of a participant's link quality (`participant.quality`), or
    None for a peer the room never knew."""
    identity = identities.get(event.peer_id)
    if identity is None:
        return None
    return RoomEvent(
        type="participant.quality",
        room_id=event.room_id,
        session_id=session_id,
        actor="system",
        at=now,
        payload={"identity": identity, "quality": event.quality.as_json()},
    )


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
        deadlines: DeadlineClock,
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
        self.journal = store.Journal(db, deadlines)
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
        #: Rooms whose session ended on this node (insertion order: oldest first).
        self._ended: dict[str, None] = {}
        #: Rooms let go here: their session and who was who, for the media node's last
        #: words about them (PeerQuality arrives as the media closes, after the actor).
        self._retired: dict[str, tuple[int, dict[str, str]]] = {}

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

    def attached_here(self, room_id: str, edge: Edge) -> None:
        self.attached[room_id].add(edge)

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

    def publish_event(self, event: RoomEvent) -> None:
        self.bus.publish_event(event)

    # ----- routing

    def route_node(self, node_id: str, msg: NodeBound) -> None:
        if node_id == self.config.node_id:
            self._on_node_message(msg)
        else:
            self.bus.send_node(node_id, msg)

    def to_room(self, room_id: str, msg: RoomBound) -> None:
        actor = self.rooms.get(room_id)
        if actor is not None:
            actor.deliver(msg)
        else:
            self.bus.send_room(room_id, msg)

    def _on_node_message(self, msg: NodeBound) -> None:
        if isinstance(msg, Out):
            text = msg.text
            for conn in msg.conn_ids:
                edge = self.edges.get(conn)
                if edge is not None and edge.state != "closed":
                    edge.transport.send_text(text)
        elif isinstance(msg, Close):
            edge = self.edges.get(msg.conn_id)
            if edge is not None:
                edge.state = "closed"  # the owner already let it go: no detach
                edge.transport.close(msg.code, msg.reason)
                self.forget(edge)
        elif isinstance(msg, ClaimUpdate):
            edge = self.edges.get(msg.conn_id)
            if edge is not None:
                edge.claim = msg.claim
        else:  # Attached, Refused
            edge = self.edges.get(msg.conn_id)
            if edge is not None:
                edge.resolve(msg)

    async def attach(self, view: store.SessionView, env: Attach, edge: Edge) -> AttachReply:
        """Deliver an attach to the room's owner (taking ownership if nobody has it) and wait
        for its answer; retry while a dead owner's lease runs out, within the grace period."""
        limits = self.config.limits
        deadline = time.monotonic() + max(self.config.grace_s, limits.lease_ms / 1000 * 2)
        while True:
            if view.room_id in self._ended:
                raise errors.SessionClosed("the session has ended")
            owner = await self.directory.claim(view.room_id, self.config.node_id, limits.lease_ms)
            loop = asyncio.get_running_loop()
            edge.pending = loop.create_future()
            if owner == self.config.node_id:
                actor = await self._ensure_actor(view, rebuilt=env.mode == "resume")
                actor.deliver(env)
            else:
                self.bus.send_room(view.room_id, env)
            edge.owner = owner
            try:
                async with asyncio.timeout(limits.attach_timeout_s):
                    return await edge.pending
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise errors.RoomUnavailable("the session's server does not answer") from None
                logger.info("owner %s of room did not answer; retrying", owner)
            finally:
                edge.pending = None

    async def _ensure_actor(self, view: store.SessionView, *, rebuilt: bool) -> RoomActor:
        actor = self.rooms.get(view.room_id)
        if actor is not None and not actor.stopped:
            return actor
        if len(self.rooms) >= self.config.limits.max_rooms:
            await self.directory.release(view.room_id, self.config.node_id)
            raise errors.NodeFull("this server hosts too many rooms")
        # The caller's view was read before it asked for the room; the session may have ended
        # since (its owner seals the end in the record before it lets the room go): a room is
        # never brought back for a closed session.
        try:
            async with self.db.begin() as session:
                view = await store.get_session(session, room_id=view.room_id)
        except BaseException:
            await self.directory.release(view.room_id, self.config.node_id)
            raise
        if not view.open:
            self._remember_ended(view.room_id)
            await self.directory.release(view.room_id, self.config.node_id)
            raise errors.SessionClosed("the session has ended")
        actor = self.rooms.get(view.room_id)  # another attach may have made it meanwhile
        if actor is not None and not actor.stopped:
            return actor
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

    def _remember_ended(self, room_id: str) -> None:
        self._ended[room_id] = None
        while len(self._ended) > ENDED_MEMORY:
            del self._ended[next(iter(self._ended))]

    async def seal(self, actor: RoomActor) -> None:
        """The room ended: refuse every attach from now on, and have the session record say
        `ended` before the room is let go (the journal writes it with the `session.ended`
        event; if it is slow, the end is written directly — idempotent either way)."""
        self._remember_ended(actor.room_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SEAL_FLUSH_S):
                await self.journal.flush()
        async with self.db.begin() as session:
            await store.seal_ended(session, session_id=actor.session.id, now=self.now())

    async def retire(self, actor: RoomActor) -> None:
        if actor.room.ended:
            self._remember_ended(actor.room_id)
        if self.rooms.get(actor.room_id) is actor:
            del self.rooms[actor.room_id]
        self._retired[actor.room_id] = (actor.session.id, dict(actor.room.identities))
        while len(self._retired) > ENDED_MEMORY:
            del self._retired[next(iter(self._retired))]
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
                actor.deliver(EdgeDown(dead))
        for node in alive:
            self._missing.pop(node, None)

    # ----- durable room state

    async def load_state(self, room_id: str) -> RoomState | None:
        blob = await self.directory.load_state(room_id)
        if blob is None:
            return None
        return RoomState.model_validate_json(self.cipher.decrypt(blob))

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
            if isinstance(event, PeerQuality):
                self._journal_quality(event)
                continue
            actor = self.rooms.get(event.room_id)
            if actor is not None:
                actor.deliver(MediaNotice(event))

    def _journal_quality(self, event: PeerQuality) -> None:
        """A participant's link quality, for the session record only (never sent to the room).
        It comes as the peer's media closes: often while its room ends or after it was let
        go, so it is written here, not by the room's actor."""
        actor = self.rooms.get(event.room_id)
        known = (
            (actor.session.id, actor.room.identities)
            if actor is not None
            else self._retired.get(event.room_id)
        )
        record = quality_event(event, *known, self.now()) if known is not None else None
        if record is not None:
            self.journal.event(record)

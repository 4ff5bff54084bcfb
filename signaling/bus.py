"""How nodes talk: `SignalBus` (messages to a room's owner, to a node, session events) and
`RoomDirectory` (which node owns a room, with renewed leases, and the room's saved state for
the node that re-homes it). Each has an in-process and a Redis implementation, chosen once by
`make_bus`/`make_directory` from settings.

    edge node ──send_room(room_id)──►  {prefix}room:<room_id>  ──► owner node (subscribed)
    owner node ──send_node(node_id)──► {prefix}node:<node_id>  ──► edge node (subscribed)
    any node ──publish_event──► {prefix}events ──► every other node's subscribe_events()

No pattern subscriptions: a node subscribes to its own node channel, to the room channels of
rooms it owns, and to the events channel (its own events are delivered locally and skipped when
they come back). Publishing never blocks the caller: envelopes go into a bounded queue that one
writer task drains and pipelines to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from redis.asyncio import Redis

from server.kernel.errors import OUTAGE_ERRORS
from server.kernel.tasks import cancel_and_wait
from signaling.envelopes import (
    EnvelopeError,
    NodeBound,
    RoomBound,
    decode_node,
    decode_room,
    encode,
)

logger = logging.getLogger(__name__)

#: Where a node's `SignalBus` hands what arrives for a room it owns, and for the node itself.
RoomHandler = Callable[[RoomBound], None]
NodeHandler = Callable[[NodeBound], None]

MAX_OUTBOX = 50_000
MAX_EVENT_QUEUE = 1000
PIPELINE_BATCH = 256
#: Rooms whose state an in-process directory keeps before it sweeps the expired ones.
MAX_IN_PROCESS_STATES = 10_000
#: While Redis is unreachable, a batch is retried this long, then dropped (pub/sub delivers at
#: most once anyway; clients resend what was not acknowledged).
PUBLISH_RETRY_S = 5.0
RETRY_PAUSE_S = 0.25


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A session event for other parts of onedoor (case file, dashboards, notifications)."""

    type: str
    room_id: str
    session_id: int
    actor: str
    at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RoomEvent:
        return cls(
            type=d["type"],
            room_id=d["room_id"],
            session_id=int(d["session_id"]),
            actor=d["actor"],
            at=datetime.fromisoformat(d["at"]),
            payload=d.get("payload", {}),
        )


class EventSubscription:
    """An async iterator of RoomEvents with a bounded buffer (overflow drops the oldest)."""

    def __init__(self, owner: _EventHub, maxsize: int) -> None:
        self._owner = owner
        self._queue: asyncio.Queue[RoomEvent] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def _put(self, event: RoomEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[RoomEvent]:
        return self

    async def __anext__(self) -> RoomEvent:
        return await self._queue.get()

    async def get(self, timeout_s: float = 5.0) -> RoomEvent:
        async with asyncio.timeout(timeout_s):
            return await self._queue.get()

    def close(self) -> None:
        self._owner._subs.discard(self)


class _EventHub:
    def __init__(self) -> None:
        self._subs: set[EventSubscription] = set()

    def subscribe_events(self, maxsize: int = MAX_EVENT_QUEUE) -> EventSubscription:
        sub = EventSubscription(self, maxsize)
        self._subs.add(sub)
        return sub

    def _deliver_event(self, event: RoomEvent) -> None:
        for sub in list(self._subs):
            sub._put(event)


class SignalBus(Protocol):
    node_id: str

    async def start(self, on_node_message: NodeHandler) -> None: ...

    async def close(self) -> None: ...

    def send_room(self, room_id: str, envelope: RoomBound) -> None:
        """To the node owning the room (non-blocking; delivered in order per sender)."""
        ...

    def send_node(self, node_id: str, envelope: NodeBound) -> None: ...

    async def host_room(self, room_id: str, handler: RoomHandler) -> None:
        """This node owns the room now: deliver `send_room` envelopes to `handler`."""
        ...

    async def unhost_room(self, room_id: str) -> None: ...

    def publish_event(self, event: RoomEvent) -> None: ...

    def subscribe_events(self, maxsize: int = MAX_EVENT_QUEUE) -> EventSubscription: ...

    async def flush(self) -> None:
        """Wait until everything sent so far has left this node (tests, shutdown)."""
        ...


class RoomDirectory(Protocol):
    async def claim(self, room_id: str, node_id: str, lease_ms: int) -> str:
        """Take the room if nobody holds a live lease; return the owner (maybe us)."""
        ...

    async def owner(self, room_id: str) -> str | None: ...

    async def renew(self, room_ids: list[str], node_id: str, lease_ms: int) -> list[str]:
        """Extend our leases; return the rooms we no longer own."""
        ...

    async def release(self, room_id: str, node_id: str) -> None: ...

    async def beat(self, node_id: str, lease_ms: int) -> None:
        """This node is alive (renewed with the room leases)."""
        ...

    async def alive(self, node_ids: set[str]) -> set[str]:
        """Which of these nodes have beaten within their lease."""
        ...

    async def save_state(self, room_id: str, node_id: str, blob: str, ttl_ms: int) -> bool:
        """Store the room's durable state, only while `node_id` holds its lease (a node that
        lost the room must not overwrite the new owner's). False: not stored, not the owner."""
        ...

    async def load_state(self, room_id: str) -> str | None: ...

    async def drop_state(self, room_id: str, node_id: str) -> None:
        """The session ended: forget its state (only the owner may)."""
        ...


# ----------------------------------------------------------------------------- in-process


class InProcessSignalBus(_EventHub):
    """One node, no Redis: envelopes are handed over on the next loop iteration."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id
        self._on_node: NodeHandler | None = None
        self._rooms: dict[str, RoomHandler] = {}

    async def start(self, on_node_message: NodeHandler) -> None:
        self._on_node = on_node_message

    async def close(self) -> None:
        self._rooms.clear()

    def send_room(self, room_id: str, envelope: RoomBound) -> None:
        handler = self._rooms.get(room_id)
        if handler is not None:
            handler(envelope)

    def send_node(self, node_id: str, envelope: NodeBound) -> None:
        if node_id == self.node_id and self._on_node is not None:
            self._on_node(envelope)

    async def host_room(self, room_id: str, handler: RoomHandler) -> None:
        self._rooms[room_id] = handler

    async def unhost_room(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)

    def publish_event(self, event: RoomEvent) -> None:
        self._deliver_event(event)

    async def flush(self) -> None:
        await asyncio.sleep(0)


class InProcessRoomDirectory:
    """Leases and saved room state for one process. `clock` is monotonic seconds (injectable
    so tests move time instead of sleeping)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[str, float]] = {}
        #: room id → (state blob, monotonic expiry)
        self._states: dict[str, tuple[str, float]] = {}

    def _live(self, room_id: str) -> str | None:
        lease = self._leases.get(room_id)
        if lease is None or lease[1] < self._clock():
            return None
        return lease[0]

    async def claim(self, room_id: str, node_id: str, lease_ms: int) -> str:
        owner = self._live(room_id)
        if owner is None:
            self._leases[room_id] = (node_id, self._clock() + lease_ms / 1000)
            return node_id
        return owner

    async def owner(self, room_id: str) -> str | None:
        return self._live(room_id)

    async def renew(self, room_ids: list[str], node_id: str, lease_ms: int) -> list[str]:
        lost = []
        for room_id in room_ids:
            if self._live(room_id) in (node_id, None):  # late but unclaimed: still ours
                self._leases[room_id] = (node_id, self._clock() + lease_ms / 1000)
            else:
                lost.append(room_id)
        return lost

    async def release(self, room_id: str, node_id: str) -> None:
        if self._live(room_id) == node_id:
            del self._leases[room_id]

    async def beat(self, node_id: str, lease_ms: int) -> None:
        return None

    async def alive(self, node_ids: set[str]) -> set[str]:
        return set(node_ids)

    async def save_state(self, room_id: str, node_id: str, blob: str, ttl_ms: int) -> bool:
        if self._live(room_id) != node_id:
            return False
        now = self._clock()
        if len(self._states) > MAX_IN_PROCESS_STATES:
            self._states = {k: v for k, v in self._states.items() if v[1] > now}
        self._states[room_id] = (blob, now + ttl_ms / 1000)
        return True

    async def load_state(self, room_id: str) -> str | None:
        state = self._states.get(room_id)
        if state is None or state[1] < self._clock():
            return None
        return state[0]

    async def drop_state(self, room_id: str, node_id: str) -> None:
        if self._live(room_id) == node_id:
            self._states.pop(room_id, None)


# ----------------------------------------------------------------------------- Redis

# A lease that expired while nobody else took the room is still ours: re-take it. (A starved
# event loop can renew late; dropping the room then would end every call in it for nothing.)
_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# The room's state is written and dropped only by the holder of its lease.
_SAVE_STATE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_DROP_STATE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0
"""


class RedisRoomDirectory:
    """`SET owner:<id> <node> NX PX lease`; renewed and released only by the holder (Lua).
    The room's durable state sits beside it in `state:<id>`, written only by the holder."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, room_id: str) -> str:
        return f"{self._prefix}owner:{room_id}"

    async def claim(self, room_id: str, node_id: str, lease_ms: int) -> str:
        key = self._key(room_id)
        if await self._redis.set(key, node_id, nx=True, px=lease_ms):
            return node_id
        owner = await self._redis.get(key)
        if owner is None:  # expired between the two calls
            return await self.claim(room_id, node_id, lease_ms)
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def owner(self, room_id: str) -> str | None:
        owner = await self._redis.get(self._key(room_id))
        if owner is None:
            return None
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def renew(self, room_ids: list[str], node_id: str, lease_ms: int) -> list[str]:
        if not room_ids:
            return []
        keys = [self._key(r) for r in room_ids]
        lost = await self._redis.eval(_RENEW, len(keys), *keys, node_id, str(lease_ms))
        return [room_ids[int(i) - 1] for i in lost]

    async def release(self, room_id: str, node_id: str) -> None:
        await self._redis.eval(_RELEASE, 1, self._key(room_id), node_id)

    async def beat(self, node_id: str, lease_ms: int) -> None:
        await self._redis.set(f"{self._prefix}alive:{node_id}", "1", px=lease_ms)

    async def alive(self, node_ids: set[str]) -> set[str]:
        ordered = sorted(node_ids)
        if not ordered:
            return set()
        values = await self._redis.mget([f"{self._prefix}alive:{n}" for n in ordered])
        return {n for n, v in zip(ordered, values, strict=True) if v is not None}

    def _state_key(self, room_id: str) -> str:
        return f"{self._prefix}state:{room_id}"

    async def save_state(self, room_id: str, node_id: str, blob: str, ttl_ms: int) -> bool:
        keys = (self._key(room_id), self._state_key(room_id))
        saved = await self._redis.eval(_SAVE_STATE, 2, *keys, node_id, blob, str(ttl_ms))
        return bool(saved)

    async def load_state(self, room_id: str) -> str | None:
        blob = await self._redis.get(self._state_key(room_id))
        if blob is None:
            return None
        return blob.decode() if isinstance(blob, bytes) else str(blob)

    async def drop_state(self, room_id: str, node_id: str) -> None:
        keys = (self._key(room_id), self._state_key(room_id))
        await self._redis.eval(_DROP_STATE, 2, *keys, node_id)


class RedisSignalBus(_EventHub):
    def __init__(self, redis: Redis, node_id: str, prefix: str) -> None:
        super().__init__()
        self.node_id = node_id
        self._redis = redis
        self._prefix = prefix
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=MAX_OUTBOX)
        self._rooms: dict[str, RoomHandler] = {}
        self._on_node: NodeHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0
        self._read_down = False
        self._write_down = False

    def _node_channel(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    def _room_channel(self, room_id: str) -> str:
        return f"{self._prefix}room:{room_id}"

    @property
    def _events_channel(self) -> str:
        return f"{self._prefix}events"

    async def start(self, on_node_message: NodeHandler) -> None:
        self._on_node = on_node_message
        await self._pubsub.subscribe(self._node_channel(self.node_id), self._events_channel)
        self._tasks = [
            asyncio.create_task(self._read(), name=f"bus-read:{self.node_id}"),
            asyncio.create_task(self._write(), name=f"bus-write:{self.node_id}"),
        ]

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()

    def _enqueue(self, channel: str, data: str) -> None:
        try:
            self._outbox.put_nowait((channel, data))
            self._idle.clear()
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 1000 == 1:  # one line per thousand, not one per message
                logger.warning("signal bus outbox full; %d messages dropped", self.dropped)

    def send_room(self, room_id: str, envelope: RoomBound) -> None:
        handler = self._rooms.get(room_id)
        if handler is not None:  # we own it: no round trip through Redis
            handler(envelope)
            return
        self._enqueue(self._room_channel(room_id), encode(envelope))

    def send_node(self, node_id: str, envelope: NodeBound) -> None:
        if node_id == self.node_id and self._on_node is not None:
            self._on_node(envelope)
            return
        self._enqueue(self._node_channel(node_id), encode(envelope))

    async def host_room(self, room_id: str, handler: RoomHandler) -> None:
        self._rooms[room_id] = handler
        await self._pubsub.subscribe(self._room_channel(room_id))

    async def unhost_room(self, room_id: str) -> None:
        if self._rooms.pop(room_id, None) is not None:
            await self._pubsub.unsubscribe(self._room_channel(room_id))

    def publish_event(self, event: RoomEvent) -> None:
        self._deliver_event(event)
        body = {"origin": self.node_id, "event": event.to_json()}
        self._enqueue(self._events_channel, json.dumps(body, ensure_ascii=False))

    async def flush(self) -> None:
        await self._idle.wait()

    async def _publish(self, batch: list[tuple[str, str]]) -> None:
        if len(batch) == 1:
            await self._redis.publish(*batch[0])
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel, data in batch:
                    pipe.publish(channel, data)  # type: ignore[unused-awaitable]
                await pipe.execute()

    async def _write(self) -> None:
        while True:
            first = await self._outbox.get()
            batch = [first]
            while len(batch) < PIPELINE_BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            give_up_at = time.monotonic() + PUBLISH_RETRY_S
            while True:
                try:
                    await self._publish(batch)
                except asyncio.CancelledError:
                    raise
                except OUTAGE_ERRORS as e:
                    if not self._write_down:
                        logger.warning("Redis unreachable for publishing (%s); retrying",
                                       type(e).__name__)  # fmt: skip
                        self._write_down = True
                    if time.monotonic() < give_up_at:
                        await asyncio.sleep(RETRY_PAUSE_S)
                        continue
                    self.dropped += len(batch)
                    logger.warning("dropped %d signaling messages: Redis unreachable", len(batch))
                except Exception:
                    logger.exception("publishing %d signaling messages failed", len(batch))
                else:
                    if self._write_down:
                        logger.info("Redis reachable again for publishing")
                        self._write_down = False
                break
            if self._outbox.empty():
                self._idle.set()

    async def _read(self) -> None:
        events = self._events_channel.encode()
        node = self._node_channel(self.node_id).encode()
        room_prefix = f"{self._prefix}room:".encode()
        while True:
            try:
                # On reconnecting, redis-py subscribes again to every channel we had.
                msg = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except OUTAGE_ERRORS as e:
                if not self._read_down:
                    logger.warning("Redis pub/sub unreachable (%s); reconnecting", type(e).__name__)
                    self._read_down = True
                await asyncio.sleep(0.5)
                continue
            except Exception:
                logger.exception("reading from Redis pub/sub failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if self._read_down:
                logger.info("Redis pub/sub connected again")
                self._read_down = False
            if msg is None or msg.get("type") != "message":
                continue
            channel: bytes = msg["channel"]
            try:
                if channel == node:
                    if self._on_node is not None:
                        self._on_node(decode_node(msg["data"]))
                elif channel == events:
                    data = json.loads(msg["data"])
                    if data.get("origin") != self.node_id:
                        self._deliver_event(RoomEvent.from_json(data["event"]))
                elif channel.startswith(room_prefix):
                    handler = self._rooms.get(channel[len(room_prefix) :].decode())
                    if handler is not None:
                        handler(decode_room(msg["data"]))
            except EnvelopeError as e:  # one line, no traceback: the sender is at fault
                logger.warning("rejected an envelope on %r: %s: %s", channel, e.code, e)
            except Exception:
                logger.exception("bad message on %r", channel)


def make_bus(redis: Redis | None, node_id: str, prefix: str = "onedoor:") -> SignalBus:
    if redis is not None:
        return RedisSignalBus(redis, node_id, prefix)
    return InProcessSignalBus(node_id)


def make_directory(redis: Redis | None, prefix: str = "onedoor:") -> RoomDirectory:
    if redis is not None:
        return RedisRoomDirectory(redis, prefix)
    return InProcessRoomDirectory()

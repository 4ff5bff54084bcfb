"""An edge through its narrow context: what a client's frames become for the room's owner, with
a hand-written `EdgeContext` in place of the node (no database, no bus)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.sessions.models import SessionKind, SessionState
from server.sessions.schemas import SessionView
from signaling import store
from signaling.config import Limits, NodeConfig
from signaling.edge import Edge
from signaling.envelopes import Attach, AttachReply, Detach, PeerMessage, RoomBound
from signaling.errors import RoomUnavailable
from signaling.protocol import SendChat
from signaling.roomstate import MemberSpec

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.closed: tuple[int, str] | None = None

    def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class FakeNode:
    """Implements signaling.edge.EdgeContext; records what the edge hands its node."""

    def __init__(self, limits: Limits) -> None:
        self.config = NodeConfig(node_id="n1", secret=b"k" * 32, grace_s=30.0,
                                 default_capacity=8, limits=limits)  # fmt: skip
        self.db: async_sessionmaker[AsyncSession] = async_sessionmaker()
        self.to_rooms: list[tuple[str, RoomBound]] = []
        self.forgotten: list[Edge] = []

    def now(self) -> datetime:
        return NOW

    async def check_join_rate(self, ip: str) -> None:
        return None

    def count_identity(self, identity: str) -> bool:
        return True

    def uncount_identity(self, identity: str) -> None:
        return None

    async def attach(self, view: store.SessionView, msg: Attach, edge: Edge) -> AttachReply:
        raise AssertionError("no attach in these tests")

    def to_room(self, room_id: str, msg: RoomBound) -> None:
        self.to_rooms.append((room_id, msg))

    def attached_here(self, room_id: str, edge: Edge) -> None:
        return None

    def forget(self, edge: Edge) -> None:
        self.forgotten.append(edge)


def attached_edge(limits: Limits | None = None) -> tuple[Edge, FakeNode, FakeTransport]:
    node, transport = FakeNode(limits or Limits()), FakeTransport()
    edge = Edge(node, transport, None, "127.0.0.1")
    edge.state, edge.room_id, edge.peer_id = "attached", "r-1", "p-1"  # as after a join
    return edge, node, transport


async def test_a_room_message_goes_to_the_owner_parsed_once_and_as_sent() -> None:
    edge, node, transport = attached_edge()
    text = '{"type": "chat", "id": "7", "text": "您好"}'
    await edge.on_text(text)
    assert transport.sent == []  # the owner answers, not the edge
    [(room_id, msg)] = node.to_rooms
    assert room_id == "r-1" and isinstance(msg, PeerMessage)
    assert (msg.conn_id, msg.peer_id, msg.text) == (edge.conn_id, "p-1", text)
    assert msg.parsed == SendChat(type="chat", id="7", text="您好")


async def test_bad_frames_stay_on_the_edge() -> None:
    edge, node, transport = attached_edge(Limits(max_message_bytes=64))
    await edge.on_text('{"type": "chat", "id": "8"}')
    await edge.on_text('{"type": "chat", "id": "9", "text": "' + "x" * 100 + '"}')
    await edge.on_text('{"type": "ping", "id": "10"}')
    assert node.to_rooms == []
    assert [(m["type"], m.get("code"), m["re"]) for m in transport.sent] == [
        ("error", "bad_message", "8"),
        ("error", "message_too_large", "9"),
        ("pong", None, "10"),
    ]


async def test_closing_the_socket_detaches_once() -> None:
    edge, node, _ = attached_edge()
    edge.on_closed()
    edge.on_closed()
    assert node.to_rooms == [("r-1", Detach(edge.conn_id, "p-1"))]
    assert node.forgotten == [edge]


class SlowOwnerNode(FakeNode):
    """The room's owner does not answer in time (it may still take the attach later)."""

    async def attach(self, view: store.SessionView, msg: Attach, edge: Edge) -> AttachReply:
        raise RoomUnavailable("the session's server does not answer")


async def test_an_attach_given_up_asks_the_owner_to_let_the_connection_go() -> None:
    node, transport = SlowOwnerNode(Limits()), FakeTransport()
    edge = Edge(node, transport, None, "127.0.0.1")
    view = SessionView(id=1, room_id="r-1", kind=SessionKind.mediation, title="",
                       capacity=8, recording_allowed=False, state=SessionState.lobby,
                       case_id=None)  # fmt: skip
    spec = MemberSpec(peer_id="p-9", identity="guest:j1", display_name="张三", role="party",
                      is_staff=False, permissions=frozenset({"chat"}))  # fmt: skip
    with pytest.raises(RoomUnavailable):
        await edge._attach(view, spec, mode="join", status=None, re="1")
    assert edge.state == "new"
    assert node.to_rooms == [("r-1", Detach(edge.conn_id, "p-9"))]

"""Node-to-node envelopes: every message survives the codec, the JSON is byte for byte what the
previous version's hand-written encoder produced (so mixed versions interoperate), and anything
else is rejected with a typed error."""

from __future__ import annotations

import pytest

from signaling.envelopes import (
    Attach,
    Attached,
    ClaimUpdate,
    Close,
    Detach,
    EnvelopeError,
    NodeBound,
    Out,
    PeerMessage,
    Refused,
    RoomBound,
    UnknownEnvelope,
    decode_node,
    decode_room,
    encode,
)
from signaling.protocol import SendChat
from signaling.roomstate import ROLE_PERMISSIONS, MemberSpec
from signaling.tokens import ResumeClaim

SPEC = MemberSpec(
    peer_id="p-abc",
    identity="guest:j1",
    display_name="张三",
    role="party",
    is_staff=False,
    permissions=ROLE_PERMISSIONS["party"],
    site_id=3,
    site_name="东城接待点",
)
GUEST_CLAIM = ResumeClaim(
    room_id="r-1",
    peer_id="p-abc",
    identity="guest:j1",
    display_name="张三",
    role="party",
    permissions=ROLE_PERMISSIONS["party"],
    is_staff=False,
    status="lobby",
    site_id=3,
    site_name="东城接待点",
    staff_id=None,
    jti="j1",
)
STAFF_CLAIM = ResumeClaim(
    room_id="r-1",
    peer_id="p-h",
    identity="staff:7",
    display_name="Officer",
    role="host",
    permissions=ROLE_PERMISSIONS["host"],
    is_staff=True,
    status="joined",
    site_id=None,
    site_name="",
    staff_id=7,
    jti=None,
)
CHAT = '{"type":"chat","id":"m2","text":"你好"}'

# Copied from the output of the hand-written encoder (signaling/node.py before the envelopes
# were typed): json.dumps(dict, ensure_ascii=False) of each envelope.
ROOM_FIXTURES: list[tuple[str, RoomBound]] = [
    (
        r'{"k": "attach", "c": "n1/abc", "node": "n1", "spec": {"peer_id": "p-abc", "identity": "guest:j1", "display_name": "张三", "role": "party", "is_staff": false, "permissions": ["audio", "chat", "video"], "site_id": 3, "site_name": "东城接待点"}, "mode": "join", "status": null, "re": "m1"}',
        Attach("n1/abc", "n1", SPEC, "join", None, "m1"),
    ),
    (
        r'{"k": "attach", "c": "n1/abc", "node": "n1", "spec": {"peer_id": "p-abc", "identity": "guest:j1", "display_name": "张三", "role": "party", "is_staff": false, "permissions": ["audio", "chat", "video"], "site_id": 3, "site_name": "东城接待点"}, "mode": "resume", "status": "joined", "re": null}',
        Attach("n1/abc", "n1", SPEC, "resume", "joined", None),
    ),
    (
        r'{"k": "msg", "c": "n1/abc", "p": "p-abc", "t": "{\"type\":\"chat\",\"id\":\"m2\",\"text\":\"你好\"}"}',
        PeerMessage("n1/abc", "p-abc", CHAT),
    ),
    (r'{"k": "detach", "c": "n1/abc", "p": "p-abc"}', Detach("n1/abc", "p-abc")),
]
NODE_FIXTURES: list[tuple[str, NodeBound]] = [
    (
        r'{"k": "out", "c": ["n1/abc", "n1/def"], "t": "{\"type\":\"ack\",\"re\":\"m2\"}"}',
        Out(["n1/abc", "n1/def"], '{"type":"ack","re":"m2"}'),
    ),
    (
        r'{"k": "close", "c": "n1/abc", "code": 4409, "reason": "replaced"}',
        Close("n1/abc", 4409, "replaced"),
    ),
    (
        r'{"k": "claim", "c": "n1/abc", "claim": {"room_id": "r-1", "peer_id": "p-abc", "identity": "guest:j1", "display_name": "张三", "role": "party", "permissions": ["audio", "chat", "video"], "is_staff": false, "status": "lobby", "site_id": 3, "site_name": "东城接待点", "staff_id": null, "jti": "j1"}}',
        ClaimUpdate("n1/abc", GUEST_CLAIM),
    ),
    (
        r'{"k": "attached", "c": "n1/abc", "p": "p-h", "claim": {"room_id": "r-1", "peer_id": "p-h", "identity": "staff:7", "display_name": "Officer", "role": "host", "permissions": ["admit", "audio", "chat", "moderate", "record", "screen", "video"], "is_staff": true, "status": "joined", "site_id": null, "site_name": "", "staff_id": 7, "jti": null}}',
        Attached("n1/abc", "p-h", STAFF_CLAIM),
    ),
    (
        r'{"k": "refused", "c": "n1/abc", "code": "room_locked"}',
        Refused("n1/abc", "room_locked"),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("wire", "msg"), ROOM_FIXTURES)
def test_room_envelopes_match_the_previous_encoder(wire: str, msg: RoomBound) -> None:
    assert decode_room(wire) == msg
    assert decode_room(wire.encode()) == msg  # Redis hands over bytes
    assert encode(msg) == wire


@pytest.mark.parametrize(("wire", "msg"), NODE_FIXTURES)
def test_node_envelopes_match_the_previous_encoder(wire: str, msg: NodeBound) -> None:
    assert decode_node(wire) == msg
    assert encode(msg) == wire


def test_every_message_type_round_trips() -> None:
    covered = {type(m) for _, m in ROOM_FIXTURES} | {type(m) for _, m in NODE_FIXTURES}
    assert covered == {Attach, PeerMessage, Detach, Out, Close, ClaimUpdate, Attached, Refused}
    staff_spec = MemberSpec(
        peer_id="p-h",
        identity="staff:7",
        display_name="Officer",
        role="mediator",
        is_staff=True,
        permissions=ROLE_PERMISSIONS["mediator"],
    )
    room: list[RoomBound] = [
        Attach("n2/x", "n2", staff_spec, "join", None, None),
        Attach("n2/x", "n2", SPEC, "resume", "lobby", "7"),
        PeerMessage("n2/x", "p-h", '{"type": "ping", "id": "1"}'),
        Detach("n2/x", "p-h"),
    ]
    node: list[NodeBound] = [
        Out([], ""),
        Out(["n2/x"], '{"type": "pong", "re": "1", "text": "引号\\"和\\n换行"}'),
        Close("n2/x", 1000, "left"),
        ClaimUpdate("n2/x", STAFF_CLAIM),
        Attached("n2/x", "p-abc", GUEST_CLAIM),
        Refused("n2/x", "room_full"),
    ]
    for r in room:
        assert decode_room(encode(r)) == r
    for n in node:
        assert decode_node(encode(n)) == n


def test_the_parsed_message_never_travels() -> None:
    """Inside one node the edge hands the owner its parsed message; on the wire only the text."""
    parsed = SendChat(type="chat", id="m2", text="你好")
    local = PeerMessage("n1/abc", "p-abc", CHAT, parsed)
    assert encode(local) == ROOM_FIXTURES[2][0]
    assert decode_room(encode(local)) == PeerMessage("n1/abc", "p-abc", CHAT)


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        ("{", "bad_envelope"),
        (b"\xff\xfe", "bad_envelope"),
        ("[1, 2]", "bad_envelope"),
        ('{"c": "n1/abc"}', "unknown_envelope"),
        ('{"k": "fly", "c": "n1/abc"}', "unknown_envelope"),
        ('{"k": 3}', "unknown_envelope"),
        ('{"k": "out", "c": ["n1/abc"], "t": "x"}', "unknown_envelope"),  # not for a room
        ('{"k": "detach", "c": "n1/abc"}', "bad_envelope"),
        ('{"k": "msg", "c": "n1/abc", "p": "p-1", "t": 5}', "bad_envelope"),
        ('{"k": "attach", "c": "n1/abc", "node": "n1", "spec": [], "mode": "join"}',
         "bad_envelope"),
        ('{"k": "attach", "c": "a", "node": "n1", "spec": {}, "mode": "fly"}', "bad_envelope"),
        # a guest may not hold a staff role: MemberSpec refuses it, the codec reports it
        ('{"k": "attach", "c": "a", "node": "n1", "mode": "join", "spec": {"peer_id": "p",'
         ' "identity": "guest:1", "display_name": "x", "role": "host", "is_staff": false,'
         ' "permissions": []}}', "bad_envelope"),
        ('{"k": "attach", "c": "a", "node": "n1", "mode": "join", "spec": {"peer_id": "p",'
         ' "identity": "guest:1", "display_name": "x", "role": "party", "is_staff": false,'
         ' "permissions": ["fly"]}}', "bad_envelope"),
    ],
)  # fmt: skip
def test_bad_room_envelopes_raise_typed_errors(wire: str | bytes, code: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_room(wire)
    assert info.value.code == code
    assert isinstance(info.value, UnknownEnvelope) == (code == "unknown_envelope")


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        ('{"k": "detach", "c": "n1/abc", "p": "p-1"}', "unknown_envelope"),  # not for a node
        ('{"k": "out", "c": "n1/abc", "t": "x"}', "bad_envelope"),
        ('{"k": "out", "c": [1], "t": "x"}', "bad_envelope"),
        ('{"k": "close", "c": "n1/abc", "code": "4409", "reason": "replaced"}', "bad_envelope"),
        ('{"k": "close", "c": "n1/abc", "code": true, "reason": "replaced"}', "bad_envelope"),
        ('{"k": "claim", "c": "n1/abc", "claim": {"room_id": "r-1"}}', "bad_envelope"),
        ('{"k": "refused", "c": "n1/abc"}', "bad_envelope"),
    ],
)
def test_bad_node_envelopes_raise_typed_errors(wire: str, code: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_node(wire)
    assert info.value.code == code

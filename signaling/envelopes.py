"""Node-to-node messages: what an edge node sends a room's owner, and what the owner sends back.
One frozen dataclass per message, and the one codec for them. The JSON is version 1's, one-letter
keys and all, byte for byte, so a node of the previous version still interoperates.

    edge node ──Attach, PeerMessage, Detach──────────────► owner   ({prefix}room:<room_id>)
    edge node ◄──Out, Close, ClaimUpdate, Attached, Refused── owner   ({prefix}node:<node_id>)

Inside one node the objects are handed over as they are; `encode` runs only when a message
leaves for Redis, and `decode_room`/`decode_node` when one arrives. An envelope that is not
JSON, has an unknown `k` or a missing or mistyped field raises `EnvelopeError`; the bus logs it
once and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from signaling.protocol import ClientMessage, Permission, Role
from signaling.roomstate import MemberSpec
from signaling.tokens import ResumeClaim

_ROLES: frozenset[str] = frozenset(get_args(Role))
_PERMISSIONS: frozenset[str] = frozenset(get_args(Permission))
_STATUSES = ("lobby", "joined")


class EnvelopeError(Exception):
    """A node-to-node envelope this node cannot read (never shown to a client)."""

    code: ClassVar[str] = "bad_envelope"


class UnknownEnvelope(EnvelopeError):
    code: ClassVar[str] = "unknown_envelope"


# ----------------------------------------------------------------------------- edge → owner


@dataclass(frozen=True, slots=True)
class Attach:
    """A participant enters (`join`) or takes its place back (`resume`) through an edge node::

    {"k": "attach", "c": "n1/abc", "node": "n1", "spec": {"peer_id": "p-x", ...},
     "mode": "join", "status": null, "re": "1"}
    """

    conn_id: str
    node_id: str
    spec: MemberSpec
    mode: Literal["join", "resume"]
    #: Where a resuming participant was (its signed resume token says); None for a join.
    status: Literal["lobby", "joined"] | None
    re: str | None


@dataclass(frozen=True, slots=True)
class PeerMessage:
    """A client message for the room, as the client sent it::

    {"k": "msg", "c": "n1/abc", "p": "p-x", "t": "{\\"type\\": \\"chat\\", ...}"}

    Handed over inside one node, it carries the message the edge already parsed (`parsed`,
    never on the wire): the owner does not parse it twice.
    """

    conn_id: str
    peer_id: str
    text: str
    parsed: ClientMessage | None = None


@dataclass(frozen=True, slots=True)
class Detach:
    """The participant's socket closed; its grace period starts::

    {"k": "detach", "c": "n1/abc", "p": "p-x"}
    """

    conn_id: str
    peer_id: str


# ----------------------------------------------------------------------------- owner → edge


@dataclass(frozen=True, slots=True)
class Out:
    """One encoded server message for some connections of one edge node::

    {"k": "out", "c": ["n1/abc", "n1/def"], "t": "{\\"type\\": \\"ack\\", ...}"}
    """

    conn_ids: list[str]
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close this connection (the owner already let the participant go: no detach follows)::

    {"k": "close", "c": "n1/abc", "code": 4409, "reason": "replaced"}
    """

    conn_id: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ClaimUpdate:
    """What the connection's participant may resume as changed (admitted from the lobby)::

    {"k": "claim", "c": "n1/abc", "claim": {"room_id": "r-1", ...}}
    """

    conn_id: str
    claim: ResumeClaim


@dataclass(frozen=True, slots=True)
class Attached:
    """The answer to an `Attach` that succeeded::

    {"k": "attached", "c": "n1/abc", "p": "p-x", "claim": {"room_id": "r-1", ...}}
    """

    conn_id: str
    peer_id: str
    claim: ResumeClaim


@dataclass(frozen=True, slots=True)
class Refused:
    """The answer to an `Attach` that failed (the owner already sent the client the error)::

    {"k": "refused", "c": "n1/abc", "code": "room_locked"}
    """

    conn_id: str
    code: str


RoomBound = Attach | PeerMessage | Detach
NodeBound = Out | Close | ClaimUpdate | Attached | Refused
AttachReply = Attached | Refused


# ----------------------------------------------------------------------------- encoding


def spec_json(spec: MemberSpec) -> dict[str, Any]:
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


def claim_json(c: ResumeClaim) -> dict[str, Any]:
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


def to_json(msg: RoomBound | NodeBound) -> dict[str, Any]:
    """The envelope as version 1 spelled it (same keys, same order)."""
    if isinstance(msg, Out):
        return {"k": "out", "c": msg.conn_ids, "t": msg.text}
    if isinstance(msg, PeerMessage):
        return {"k": "msg", "c": msg.conn_id, "p": msg.peer_id, "t": msg.text}
    if isinstance(msg, Attach):
        return {
            "k": "attach",
            "c": msg.conn_id,
            "node": msg.node_id,
            "spec": spec_json(msg.spec),
            "mode": msg.mode,
            "status": msg.status,
            "re": msg.re,
        }
    if isinstance(msg, Detach):
        return {"k": "detach", "c": msg.conn_id, "p": msg.peer_id}
    if isinstance(msg, Close):
        return {"k": "close", "c": msg.conn_id, "code": msg.code, "reason": msg.reason}
    if isinstance(msg, ClaimUpdate):
        return {"k": "claim", "c": msg.conn_id, "claim": claim_json(msg.claim)}
    if isinstance(msg, Attached):
        return {"k": "attached", "c": msg.conn_id, "p": msg.peer_id, "claim": claim_json(msg.claim)}
    return {"k": "refused", "c": msg.conn_id, "code": msg.code}


def encode(msg: RoomBound | NodeBound) -> str:
    return json.dumps(to_json(msg), ensure_ascii=False)


# ----------------------------------------------------------------------------- decoding


def _str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise EnvelopeError(f"{key!r} must be a string")
    return value


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise EnvelopeError(f"{key!r} must be a string or null")
    return value


def _opt_int(d: dict[str, Any], key: str) -> int | None:
    value = d.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise EnvelopeError(f"{key!r} must be an integer or null")
    return value


def _bool(d: dict[str, Any], key: str) -> bool:
    value = d.get(key)
    if not isinstance(value, bool):
        raise EnvelopeError(f"{key!r} must be a boolean")
    return value


def _dict(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key)
    if not isinstance(value, dict):
        raise EnvelopeError(f"{key!r} must be an object")
    return value


def _role(d: dict[str, Any]) -> Role:
    role = d.get("role")
    if role not in _ROLES:
        raise EnvelopeError(f"unknown role {role!r}")
    return role  # type: ignore[no-any-return]


def _permissions(d: dict[str, Any]) -> frozenset[Permission]:
    value = d.get("permissions")
    if not isinstance(value, list) or not _PERMISSIONS.issuperset(value):
        raise EnvelopeError("'permissions' must be a list of permissions")
    return frozenset(value)


def _status(value: Any) -> Literal["lobby", "joined"]:
    if value not in _STATUSES:
        raise EnvelopeError(f"unknown status {value!r}")
    return value  # type: ignore[no-any-return]


def spec_from_json(d: dict[str, Any]) -> MemberSpec:
    try:
        return MemberSpec(
            peer_id=_str(d, "peer_id"),
            identity=_str(d, "identity"),
            display_name=_str(d, "display_name"),
            role=_role(d),
            is_staff=_bool(d, "is_staff"),
            permissions=_permissions(d),
            site_id=_opt_int(d, "site_id"),
            site_name=_opt_str(d, "site_name") or "",
        )
    except ValueError as e:  # MemberSpec checks itself (a guest in a staff role)
        raise EnvelopeError(str(e)) from None


def claim_from_json(d: dict[str, Any]) -> ResumeClaim:
    return ResumeClaim(
        room_id=_str(d, "room_id"),
        peer_id=_str(d, "peer_id"),
        identity=_str(d, "identity"),
        display_name=_str(d, "display_name"),
        role=_role(d),
        permissions=_permissions(d),
        is_staff=_bool(d, "is_staff"),
        status=_status(d.get("status")),
        site_id=_opt_int(d, "site_id"),
        site_name=_str(d, "site_name"),
        staff_id=_opt_int(d, "staff_id"),
        jti=_opt_str(d, "jti"),
    )


def _attach(d: dict[str, Any]) -> Attach:
    mode = d.get("mode")
    if mode != "join" and mode != "resume":
        raise EnvelopeError(f"unknown attach mode {mode!r}")
    status = d.get("status")
    return Attach(
        conn_id=_str(d, "c"),
        node_id=_str(d, "node"),
        spec=spec_from_json(_dict(d, "spec")),
        mode=mode,
        status=None if status is None else _status(status),
        re=_opt_str(d, "re"),
    )


def _peer_message(d: dict[str, Any]) -> PeerMessage:
    return PeerMessage(conn_id=_str(d, "c"), peer_id=_str(d, "p"), text=_str(d, "t"))


def _detach(d: dict[str, Any]) -> Detach:
    return Detach(conn_id=_str(d, "c"), peer_id=_str(d, "p"))


def _out(d: dict[str, Any]) -> Out:
    conn_ids = d.get("c")
    if not isinstance(conn_ids, list):
        raise EnvelopeError("'c' must be a list of connection ids")
    for conn_id in conn_ids:  # a loop, not all(...): no generator per envelope
        if not isinstance(conn_id, str):
            raise EnvelopeError("'c' must be a list of connection ids")
    return Out(conn_ids=conn_ids, text=_str(d, "t"))


def _close(d: dict[str, Any]) -> Close:
    code = _opt_int(d, "code")
    if code is None:
        raise EnvelopeError("'code' must be an integer")
    return Close(conn_id=_str(d, "c"), code=code, reason=_str(d, "reason"))


def _claim_update(d: dict[str, Any]) -> ClaimUpdate:
    return ClaimUpdate(conn_id=_str(d, "c"), claim=claim_from_json(_dict(d, "claim")))


def _attached(d: dict[str, Any]) -> Attached:
    return Attached(
        conn_id=_str(d, "c"), peer_id=_str(d, "p"), claim=claim_from_json(_dict(d, "claim"))
    )


def _refused(d: dict[str, Any]) -> Refused:
    return Refused(conn_id=_str(d, "c"), code=_str(d, "code"))


_ROOM_BOUND: dict[str, Callable[[dict[str, Any]], RoomBound]] = {
    "msg": _peer_message,
    "attach": _attach,
    "detach": _detach,
}
_NODE_BOUND: dict[str, Callable[[dict[str, Any]], NodeBound]] = {
    "out": _out,
    "close": _close,
    "claim": _claim_update,
    "attached": _attached,
    "refused": _refused,
}


def _load(data: str | bytes) -> tuple[str, dict[str, Any]]:
    try:
        d = json.loads(data)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise EnvelopeError("not JSON") from None
    if not isinstance(d, dict):
        raise EnvelopeError("not a JSON object")
    kind = d.get("k")
    return (kind if isinstance(kind, str) else repr(kind)), d


def decode_room(data: str | bytes) -> RoomBound:
    """An envelope from a room channel (edge → owner).

    Raises:
        EnvelopeError: not an envelope for a room, or a field is missing or mistyped.
    """
    kind, d = _load(data)
    decoder = _ROOM_BOUND.get(kind)
    if decoder is None:
        raise UnknownEnvelope(f"unknown room envelope {kind[:32]!r}")
    return decoder(d)


def decode_node(data: str | bytes) -> NodeBound:
    """An envelope from a node channel (owner → edge).

    Raises:
        EnvelopeError: not an envelope for a node, or a field is missing or mistyped.
    """
    kind, d = _load(data)
    decoder = _NODE_BOUND.get(kind)
    if decoder is None:
        raise UnknownEnvelope(f"unknown node envelope {kind[:32]!r}")
    return decoder(d)

"""The values of a room: roles and permissions, participants (`MemberSpec`, `Member`), the
state that outlives an owner node (`RoomState`), and the `Effects` every `Room` operation returns.
Pure data, no I/O; `room.py` holds the state machine that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

# Which role may do what is the sessions domain's (join tokens carry it).
from server.sessions.schemas import ALL_PERMISSIONS as ALL_PERMISSIONS
from server.sessions.schemas import GUEST_ROLES as GUEST_ROLES
from server.sessions.schemas import ROLE_PERMISSIONS as ROLE_PERMISSIONS
from signaling.protocol import (
    ChatOut,
    LobbyEntry,
    ParticipantInfo,
    Permission,
    Quality,
    Role,
    ServerMessage,
    TrackKind,
)

OFFICIAL_ROLES: frozenset[Role] = frozenset({"host", "mediator", "official"})

Status = Literal["lobby", "joined", "left"]
LeaveReason = Literal["left", "removed", "timeout", "ended"]


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """Who enters, as established by the edge (cookie or join token)."""

    peer_id: str
    identity: str
    display_name: str
    role: Role
    is_staff: bool
    permissions: frozenset[Permission]
    site_id: int | None = None
    site_name: str = ""

    def __post_init__(self) -> None:
        if not self.is_staff and self.role not in GUEST_ROLES:
            raise ValueError(f"a guest may not take the role {self.role}")
        if not self.permissions <= ALL_PERMISSIONS:
            raise ValueError("unknown permission")

    @property
    def is_official(self) -> bool:
        return self.is_staff and self.role in OFFICIAL_ROLES


@dataclass(slots=True)
class Member:
    spec: MemberSpec
    status: Status
    since: datetime
    paused: bool = False
    connected: bool = True
    muted_audio: bool = False
    muted_video: bool = False
    forced_audio: bool = False
    forced_video: bool = False
    speaking: bool = False
    quality: Quality = "unknown"
    #: What the others' tiles show of this sender's upstream (`measured`, unless it is `lost`
    #: while the participant said it sends nothing on purpose: then `unknown`).
    upstream: Quality = "unknown"
    upstream_measured: Quality = "unknown"
    #: False while the client sends no media on purpose (its `presence`).
    sending: bool = True
    consent: bool | None = None
    #: When the socket dropped (None while connected; a take-over counts as a drop for those
    #: who were connected to the dead owner).
    disconnected_at: datetime | None = None

    @property
    def peer_id(self) -> str:
        return self.spec.peer_id

    def grace_left(self, grace_s: float, now: datetime) -> float:
        """Seconds of its grace period this disconnected participant still has: counted from
        the drop, so a room's takeover by another node does not start it again."""
        if self.disconnected_at is None:
            return grace_s
        return max(0.0, grace_s - (now - self.disconnected_at).total_seconds())

    def can(self, permission: Permission) -> bool:
        return permission in self.spec.permissions

    def info(self) -> ParticipantInfo:
        s = self.spec
        return ParticipantInfo(
            peer_id=s.peer_id,
            display_name=s.display_name,
            role=s.role,
            is_staff=s.is_staff,
            site_id=s.site_id,
            site_name=s.site_name,
            muted_audio=self.muted_audio,
            muted_video=self.muted_video,
            forced_audio=self.forced_audio,
            forced_video=self.forced_video,
            speaking=self.speaking,
            quality=self.quality,
            upstream=self.upstream,
            connected=self.connected,
        )

    def lobby_entry(self) -> LobbyEntry:
        s = self.spec
        return LobbyEntry(
            peer_id=s.peer_id,
            display_name=s.display_name,
            role=s.role,
            site_id=s.site_id,
            site_name=s.site_name,
            waiting_since=self.since,
            paused=self.paused,
            recording_consent=self.consent,
        )


class MemberState(BaseModel, frozen=True, extra="forbid"):
    """One participant in a `RoomState`: who (as the edge established it), where, and what the
    moderators and the participant decided. Not kept: connection, speaking, quality."""

    peer_id: str
    identity: str
    display_name: str
    role: Role
    is_staff: bool
    permissions: list[Permission]
    site_id: int | None = None
    site_name: str = ""
    status: Literal["lobby", "joined"]
    since: datetime
    paused: bool = False
    muted_audio: bool = False
    muted_video: bool = False
    forced_audio: bool = False
    forced_video: bool = False
    consent: bool | None = None
    disconnected_at: datetime | None = None


class RoomState(BaseModel, frozen=True, extra="forbid"):
    """What of a room must outlive its owner node (saved by the owner on every change, loaded
    by the node that re-homes the room). Everything else comes back from the session record,
    from the participants' resume tokens, or is renegotiated (media)."""

    v: Literal[1] = 1
    locked: bool = False
    recording: bool = False
    recording_refused: bool = False
    #: Denied or removed identities (sorted).
    banned: list[str] = []
    #: peer id → identity of everyone who was ever in the room; those not in `members` left.
    identities: dict[str, str] = {}
    #: In the order they entered (the lobby is ordered by `since`).
    members: list[MemberState] = []


@dataclass(frozen=True, slots=True)
class EventRecord:
    """Persisted as a SessionEvent row and an audit entry, and published on the event bus."""

    type: str
    actor: str
    payload: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class MediaCommand:
    op: Literal["close_peer", "set_forwarding", "start_recording", "stop_recording", "close_room"]
    peer_id: str = ""
    kind: TrackKind = "audio"
    enabled: bool = True


@dataclass(slots=True)
class Effects:
    out: list[tuple[tuple[str, ...], ServerMessage]] = field(default_factory=list)
    closes: list[tuple[str, int, str]] = field(default_factory=list)
    media: list[MediaCommand] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    chats: list[ChatOut] = field(default_factory=list)
    #: peer_id → identity for participants who left (manager frees their connection).
    gone: dict[str, str] = field(default_factory=dict)

    def send(self, to: list[str] | tuple[str, ...], message: ServerMessage) -> None:
        if to:
            self.out.append((tuple(to), message))

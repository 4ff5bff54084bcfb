"""View objects of the sessions domain (frozen; ORM rows never leave the service), the roles
and permissions a participant can hold, and the records signaling writes to the session file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from server.sessions.models import CallSession, SessionParticipant

# The enums are part of the views; edges take them from here, not from the models module.
from server.sessions.models import ParticipantRole as ParticipantRole
from server.sessions.models import SessionKind as SessionKind
from server.sessions.models import SessionMode as SessionMode
from server.sessions.models import SessionOutcome as SessionOutcome
from server.sessions.models import SessionState as SessionState

#: A participant's role in a room (the values of `ParticipantRole`).
Role = Literal["host", "mediator", "official", "party", "agent", "interpreter", "observer"]
#: Which side of a dispute a party (or its agent) is on: 申请人 or 被申请人.
Side = Literal["applicant", "respondent"]
SIDES: frozenset[Side] = frozenset({"applicant", "respondent"})
#: What a participant may do in a room.
Permission = Literal["audio", "video", "screen", "chat", "moderate", "admit", "record"]

ALL_PERMISSIONS: frozenset[Permission] = frozenset(
    {"audio", "video", "screen", "chat", "moderate", "admit", "record"}
)
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    "host": ALL_PERMISSIONS,
    "mediator": ALL_PERMISSIONS,
    "official": frozenset({"audio", "video", "screen", "chat"}),
    "party": frozenset({"audio", "video", "chat"}),
    "agent": frozenset({"audio", "video", "screen", "chat"}),
    "interpreter": frozenset({"audio", "video", "chat"}),
    "observer": frozenset(),
}
#: Roles a join token (a link for someone without an account) may carry.
GUEST_ROLES: frozenset[Role] = frozenset({"party", "agent", "interpreter", "observer"})
#: Staff roles in a room: their presence never counts as a party's (no-show rules).
STAFF_ROLES = frozenset({ParticipantRole.host, ParticipantRole.mediator, ParticipantRole.official})

#: States in which a room can still be entered.
CLOSED_STATES = frozenset({SessionState.ended, SessionState.cancelled})


@dataclass(frozen=True, slots=True)
class SessionLine:
    """One session in an overview list; `site_name` is the host site's, where known."""

    id: int
    room_id: str
    title: str
    state: SessionState
    site_name: str | None = None


@dataclass(frozen=True, slots=True)
class SessionView:
    id: int
    room_id: str
    kind: SessionKind
    title: str
    capacity: int
    recording_allowed: bool
    state: SessionState
    case_id: int | None
    mode: SessionMode = SessionMode.video
    outcome: SessionOutcome | None = None
    host_site_id: int | None = None
    created_by_id: int | None = None
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    ical_uid: str | None = None
    ical_sequence: int = 0
    created_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.state not in CLOSED_STATES

    @classmethod
    def from_row(cls, row: CallSession) -> SessionView:
        return cls(
            id=row.id,
            room_id=row.room_id,
            kind=row.kind,
            title=row.title,
            capacity=row.capacity,
            recording_allowed=row.recording_allowed,
            state=row.state,
            case_id=row.case_id,
            mode=row.mode,
            outcome=row.outcome,
            host_site_id=row.host_site_id,
            created_by_id=row.created_by_id,
            planned_start=row.planned_start,
            planned_end=row.planned_end,
            actual_start=row.actual_start,
            actual_end=row.actual_end,
            ical_uid=row.ical_uid,
            ical_sequence=row.ical_sequence,
            created_at=row.created_at,
        )


@dataclass(frozen=True, slots=True)
class ParticipantView:
    id: int
    session_id: int
    identity: str
    role: ParticipantRole
    staff_id: int | None
    display_name: str
    site_id: int | None
    side: Side | None = None
    invite_status: str = "none"
    joined_at: datetime | None = None
    left_at: datetime | None = None
    no_show: bool = False
    recording_consent_at: datetime | None = None
    recording_refused_at: datetime | None = None

    @property
    def required_party(self) -> bool:
        """A party whose absence makes the session a no-show (staff never are)."""
        return self.role == ParticipantRole.party

    @classmethod
    def from_row(cls, row: SessionParticipant) -> ParticipantView:
        side: Side | None = None
        for candidate in SIDES:
            if candidate == row.side:
                side = candidate
        return cls(
            id=row.id,
            session_id=row.session_id,
            identity=row.identity,
            role=row.role,
            staff_id=row.staff_id,
            display_name=row.display_name,
            site_id=row.site_id,
            side=side,
            invite_status=row.invite_status,
            joined_at=row.joined_at,
            left_at=row.left_at,
            no_show=row.no_show,
            recording_consent_at=row.recording_consent_at,
            recording_refused_at=row.recording_refused_at,
        )


@dataclass(frozen=True, slots=True)
class IssuedJoinToken:
    """A join token just issued and recorded (the signed form is never stored)."""

    jti: str
    token: str
    session_id: int
    room_id: str
    not_before: datetime
    expires_at: datetime


# --- what signaling writes to the session file (see service.write_records) -------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A room event (`participant.joined`, `session.started`, ...): appended to the event table
    and the audit log; participants' attendance and the session's state follow from it."""

    session_id: int
    type: str
    actor: str
    payload: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class ChatRecord:
    session_id: int
    sender: str
    display_name: str
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordedFile:
    identity: str
    kind: str
    storage_uri: str
    sha256: str
    size_bytes: int
    started_at: datetime
    duration_s: float


@dataclass(frozen=True, slots=True)
class RecordingRecord:
    session_id: int
    files: tuple[RecordedFile, ...] = field(default=())
    interrupted: bool = False


SessionRecordOp = EventRecord | ChatRecord | RecordingRecord

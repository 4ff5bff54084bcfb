"""Session records: every reception or mediation session (a signaling room) with its
participants, events, chat, join tokens and recordings. Shared by signaling/, media wiring,
scheduling/ and the case file."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.kernel.db import Base, UTCDateTime


class SessionKind(enum.StrEnum):
    reception = "reception"
    mediation = "mediation"


class SessionMode(enum.StrEnum):
    video = "video"
    onsite = "onsite"
    hybrid = "hybrid"


class SessionState(enum.StrEnum):
    scheduled = "scheduled"
    lobby = "lobby"
    live = "live"
    ended = "ended"
    cancelled = "cancelled"
    no_show = "no_show"


class SessionOutcome(enum.StrEnum):
    # a mediation
    agreement = "agreement"
    no_agreement = "no_agreement"
    party_withdrew = "party_withdrew"
    adjourned = "adjourned"
    completed = "completed"
    interrupted = "interrupted"
    # a reception (the desk's 接访结果)
    case_accepted = "case_accepted"
    advice_given = "advice_given"
    referred = "referred"
    joint_mediation = "joint_mediation"


class ParticipantRole(enum.StrEnum):
    host = "host"
    mediator = "mediator"
    official = "official"
    party = "party"
    agent = "agent"
    interpreter = "interpreter"
    observer = "observer"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


class CallSession(Base):
    __tablename__ = "call_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[str] = mapped_column(String(40), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("petition_case.id"), index=True)
    kind: Mapped[SessionKind] = mapped_column(_enum(SessionKind, "session_kind"))
    mode: Mapped[SessionMode] = mapped_column(_enum(SessionMode, "session_mode"))
    state: Mapped[SessionState] = mapped_column(_enum(SessionState, "session_state"), index=True)
    outcome: Mapped[SessionOutcome | None] = mapped_column(_enum(SessionOutcome, "session_outcome"))
    title: Mapped[str] = mapped_column(String(200), default="")
    host_site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    capacity: Mapped[int] = mapped_column(Integer, default=8)
    recording_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    not_public: Mapped[bool] = mapped_column(Boolean, default=False)
    planned_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    planned_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    actual_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    actual_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ical_uid: Mapped[str | None] = mapped_column(String(120), unique=True)
    ical_sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SessionParticipant(Base):
    __tablename__ = "session_participant"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), index=True)
    #: "staff:<id>" or "guest:<token jti>"; stable across reconnects.
    identity: Mapped[str] = mapped_column(String(80))
    role: Mapped[ParticipantRole] = mapped_column(_enum(ParticipantRole, "participant_role"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    display_name: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))
    #: A party's or agent's side in a mediation: "applicant" (申请人) or "respondent".
    side: Mapped[str | None] = mapped_column(String(16))
    invite_status: Mapped[str] = mapped_column(String(16), default="none")
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    no_show: Mapped[bool] = mapped_column(Boolean, default=False)
    recording_consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    recording_refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: How the participant's link was (media.quality.LinkQuality as JSON), merged over its
    #: media connections; None until its media has ended.
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SessionEvent(Base):
    """Append-only: session started/ended, joined/left/admitted/denied/removed, recording..."""

    __tablename__ = "session_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(80), default="system")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChatMessage(Base):
    __tablename__ = "chat_message"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), index=True)
    sender: Mapped[str] = mapped_column(String(80))
    display_name: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class JoinToken(Base):
    """Every issued join token (its signed form is never stored), so it can be listed and revoked."""

    __tablename__ = "join_token"
    jti: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), index=True)
    role: Mapped[ParticipantRole] = mapped_column(_enum(ParticipantRole, "participant_role"))
    display_name: Mapped[str] = mapped_column(String(64))
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Recording(Base):
    __tablename__ = "recording"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), index=True)
    identity: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(8))
    storage_uri: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_s: Mapped[float] = mapped_column(Float)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    retention_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    #: When the retention job deleted the file (the row, its digest and the manifest stay).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EvidenceManifest(Base):
    """A session's signed evidence manifest (server.sessions.evidence), stored when the
    evidence package is first built or before the retention job deletes a file, and kept for
    good: the exact bytes that were signed and timestamped, never rebuilt from newer rows.
    `seq` counts manifests of one session (a later file kind, e.g. a composite, makes a new
    one); the newest is the one a package carries."""

    __tablename__ = "evidence_manifest"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    #: Canonical JSON (UTF-8), exactly as signed.
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    #: Raw Ed25519 signature (64 bytes) and the id of the key that made it.
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(16))
    #: The RFC 3161 TimeStampResp (DER) over SHA-256(manifest), if a TSA was configured.
    timestamp_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Files the manifest lists that are not on disk (the chat transcript), by name.
    inline_files: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SessionComposite(Base):
    """The one playable MP4 of a session (server.sessions.composite), made offline by a job
    after the session ended. A job table (server.kernel.jobs: `sent` = done) with its
    progress and, once done, the file (beside the originals, which stay unchanged)."""

    __tablename__ = "session_composite"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: When the current (or last) attempt began; None until a runner took the job.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # percent
    storage_uri: Mapped[str] = mapped_column(String(500), default="")
    sha256: Mapped[str] = mapped_column(String(64), default="")
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    # the job columns (server.kernel.jobs)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: When the retention job deleted the file (the row, and the manifest listing it, stay).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Who spoke when (server.sessions.speech), measured while mixing: {"origin": ISO time of
    #: output second 0, "tracks": {identity: [[start s, end s], ...]}}.
    speakers: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class SessionMinutes(Base):
    """The 调解笔录 / 接访记录 of a session (server.sessions.minutes): paragraphs a clerk types
    during the session, each stamped with the session clock; then frozen (定稿), confirmed by
    the parties, and closed into a PDF that goes into the case file and the evidence manifest.
    `status`: draft → frozen → closed. `version` counts saves (optimistic concurrency)."""

    __tablename__ = "session_minutes"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), unique=True)
    #: [{"at_s": seconds since the session started, "text": ...}], in order.
    paragraphs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    version: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: SHA-256 of the frozen text (canonical JSON of the paragraphs): what parties confirm.
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    #: When each party's newest confirmation link was issued (participant id → µs since epoch).
    links: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    pdf_sha256: Mapped[str] = mapped_column(String(64), default="")


class MinutesConfirmation(Base):
    """One party's confirmation of a frozen 笔录: through their own link, or on the mediator's
    device with the party present (`via`, recorded as such)."""

    __tablename__ = "minutes_confirmation"
    __table_args__ = (UniqueConstraint("session_id", "participant_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("session_participant.id"))
    name: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(24))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime())

"""Scheduling tables. Organisation and session rows are referred to by foreign-key string.

`booking_claim` has one row per person or resource a booking holds. On PostgreSQL the
migration adds `EXCLUDE USING gist (resource_key WITH =, tstzrange(start_at, end_at) WITH &&)`
(not declared here: alembic cannot compare exclusion constraints), so two overlapping claims
on one key can never both commit. On SQLite writers are serialised by BEGIN IMMEDIATE
(server/kernel/db.py) and the service checks for overlaps inside the same transaction.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Enum, ForeignKey, Index, Integer, String, Text, Time
from sqlalchemy.orm import Mapped, mapped_column

from server.kernel.db import Base, UTCDateTime


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=16, validate_strings=True)


class ExceptionKind(enum.StrEnum):
    leave = "leave"  # 请假
    blocked = "blocked"  # 维护/占用
    extra = "extra"  # 加班 (extra working time)


class BookingStatus(enum.StrEnum):
    held = "held"
    confirmed = "confirmed"
    rescheduled = "rescheduled"  # superseded by a newer booking (previous_id points back)
    cancelled = "cancelled"
    expired = "expired"


class JobKind(enum.StrEnum):
    invite = "invite"
    update = "update"
    cancel = "cancel"
    reminder = "reminder"
    room_open = "room_open"


class JobStatus(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"  # gave up after the maximum attempts
    cancelled = "cancelled"


class AvailabilityRule(Base):
    """Recurring working hours of one owner ("staff:7", "resource:3" or "default")."""

    __tablename__ = "availability_rule"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_key: Mapped[str] = mapped_column(String(40), index=True)
    rrule: Mapped[str] = mapped_column(String(200))
    start_local: Mapped[time] = mapped_column(Time())
    end_local: Mapped[time] = mapped_column(Time())
    valid_from: Mapped[date] = mapped_column(Date())
    valid_until: Mapped[date | None] = mapped_column(Date())
    observe_holidays: Mapped[bool] = mapped_column(Boolean, default=True)
    tz: Mapped[str] = mapped_column(String(40), default="Asia/Shanghai")


class AvailabilityException(Base):
    """Leave, maintenance or extra hours of one owner, in UTC."""

    __tablename__ = "availability_exception"
    __table_args__ = (Index("ix_availability_exception_owner_time", "owner_key", "start_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_key: Mapped[str] = mapped_column(String(40))
    kind: Mapped[ExceptionKind] = mapped_column(_enum(ExceptionKind, "exception_kind"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(200), default="")


class BookingPolicyRow(Base):
    """Buffers, notice, advance and slot grid of one owner (or "default")."""

    __tablename__ = "booking_policy"
    owner_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    buffer_before_min: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_min: Mapped[int] = mapped_column(Integer, default=0)
    min_notice_min: Mapped[int] = mapped_column(Integer, default=120)
    max_advance_days: Mapped[int] = mapped_column(Integer, default=60)
    slot_step_min: Mapped[int] = mapped_column(Integer, default=30)


class Booking(Base):
    """One version of a booking. A reschedule makes a new row pointing at the old one
    (`previous_id`); a follow-on session after an adjournment points at `follows_id`."""

    __tablename__ = "booking"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("call_session.id"), index=True)
    status: Mapped[BookingStatus] = mapped_column(_enum(BookingStatus, "booking_status"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"))
    follows_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"))
    #: The request as booked: staff, resources, guests (contacts encrypted), title, kind, mode.
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BookingClaim(Base):
    """A person or resource held by a booking over [start_at, end_at) (buffers included).
    Only live claims exist: cancelling or rescheduling deletes them; an expired hold is
    deleted by the next booking that needs its time."""

    __tablename__ = "booking_claim"
    __table_args__ = (Index("ix_booking_claim_key_start", "resource_key", "start_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(
        ForeignKey("booking.id", ondelete="CASCADE"), index=True
    )
    resource_key: Mapped[str] = mapped_column(String(40))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Set while the booking is only held; a claim past its expiry blocks nothing.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ScheduledJob(Base):
    """A persisted notification job: invites, updates, cancellations, reminders, room opening.
    Claimed by exactly one runner (UPDATE ... RETURNING with SKIP LOCKED on PostgreSQL)."""

    __tablename__ = "scheduled_job"
    __table_args__ = (Index("ix_scheduled_job_due", "status", "due_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("call_session.id"), index=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("session_participant.id"))
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    #: For reminders: how long before the start (e.g. 86400, 900).
    lead_s: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    #: A runner that claimed the job owns it until this time (then another may retry).
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class GuestContact(Base):
    """How to reach an external participant (petitioner, party): encrypted with the PII cipher."""

    __tablename__ = "guest_contact"
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("session_participant.id", ondelete="CASCADE"), primary_key=True
    )
    phone_enc: Mapped[str] = mapped_column(String(255), default="")
    email_enc: Mapped[str] = mapped_column(String(255), default="")

"""The case file (信访事项): the minimal record every session ties to, and its timeline.

The case-files work deepens this (deadlines, evaluations, agreements) by adding tables that
reference `petition_case.id`; the columns here are the stable core.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class Channel(enum.StrEnum):
    window = "window"
    kiosk = "kiosk"
    qr = "qr"
    web = "web"
    video = "video"
    agent = "agent"
    letter = "letter"


class CaseState(enum.StrEnum):
    registered = "registered"
    accepted = "accepted"
    not_accepted = "not_accepted"
    redirected_legal = "redirected_legal"
    transferred = "transferred"
    handling = "handling"
    replied = "replied"
    evaluated = "evaluated"
    revisited = "revisited"
    closed = "closed"
    review = "review"
    re_review = "re_review"
    terminated = "terminated"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


class Petitioner(Base):
    """A petitioner. Personal fields are ciphertext (server.crypto); *_hash are keyed hashes
    (HMAC) for exact lookup without decrypting."""

    __tablename__ = "petitioner"
    id: Mapped[int] = mapped_column(primary_key=True)
    name_enc: Mapped[str] = mapped_column(Text)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    id_number_enc: Mapped[str | None] = mapped_column(Text)
    id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    address_enc: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseCounter(Base):
    """Next sequence number per (site, year). Incremented in the intake transaction, so a
    rolled-back intake rolls its number back too: numbers are unique and gap-free."""

    __tablename__ = "case_counter"
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class PetitionCase(Base):
    __tablename__ = "petition_case"
    __table_args__ = (UniqueConstraint("site_id", "year", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_no: Mapped[str] = mapped_column(String(40), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    petitioner_id: Mapped[int | None] = mapped_column(ForeignKey("petitioner.id"), index=True)
    summary: Mapped[str] = mapped_column(Text)
    matter_type: Mapped[str | None] = mapped_column(String(64))
    first_receiver_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    lead_dept_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"), index=True)
    state: Mapped[CaseState] = mapped_column(_enum(CaseState, "case_state"), index=True)
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_case_id: Mapped[int | None] = mapped_column(ForeignKey("petition_case.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class CaseEvent(Base):
    """Append-only case timeline."""

    __tablename__ = "case_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime())

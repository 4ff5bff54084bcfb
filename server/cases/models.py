"""The case file (信访事项): the minimal record every session ties to, and its timeline.

The case-files work deepens this (deadlines, evaluations, agreements) by adding tables that
reference `petition_case.id`; the columns here are the stable core.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.kernel.db import Base, UTCDateTime


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
    """A petitioner. Personal fields are ciphertext (server.kernel.crypto); *_hash are keyed hashes
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
    __table_args__ = (
        UniqueConstraint("site_id", "year", "seq"),
        Index("ix_petition_case_registered_at", "registered_at"),
        # Lists are newest first: (column, id) serves "filter, ORDER BY id DESC LIMIT n" in
        # index order, and the foreign-key lookups through its prefix (migration 0005).
        Index("ix_petition_case_site_id_id", "site_id", "id"),
        Index("ix_petition_case_lead_dept_id_id", "lead_dept_id", "id"),
        Index("ix_petition_case_first_receiver_id_id", "first_receiver_id", "id"),
        # the visibility branch "the agent who registered it" (migration 0034): without it,
        # every list by a non-agent walked the whole primary key looking for its agent cases
        Index("ix_petition_case_agent_id_id", "agent_id", "id"),
        Index("ix_petition_case_state_id", "state", "id"),
        # Chinese full-text search: a trigram GIN index (PostgreSQL only; migration 0003),
        # and for two-character terms, which pg_trgm cannot index, a GIN index on the
        # summary's character bigrams (migration 0005; function case_bigrams).
        Index(
            "ix_petition_case_summary_trgm", text("summary gin_trgm_ops"), postgresql_using="gin"
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_petition_case_summary_bigram", text("case_bigrams(summary)"), postgresql_using="gin"
        ).ddl_if(dialect="postgresql"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    case_no: Mapped[str] = mapped_column(String(40), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"))
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    petitioner_id: Mapped[int | None] = mapped_column(ForeignKey("petitioner.id"), index=True)
    summary: Mapped[str] = mapped_column(Text)
    matter_type: Mapped[str | None] = mapped_column(String(64))
    first_receiver_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    #: The community agent who registered it on the resident's behalf (channel agent): they keep
    #: sight of it, and an officer of the site claims it as first receiver (首问责任人).
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    lead_dept_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    state: Mapped[CaseState] = mapped_column(_enum(CaseState, "case_state"))
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_case_id: Mapped[int | None] = mapped_column(ForeignKey("petition_case.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    # --- case-files work (migration 0003) ---------------------------------------------
    category: Mapped[str | None] = mapped_column(String(16))
    grade: Mapped[str] = mapped_column(String(16), default="simple", server_default="simple")
    review_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    collective: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    #: Collective cases (migration 0007): how many came or signed; representatives are
    #: `case_representative` rows.
    headcount: Mapped[int | None] = mapped_column(Integer)
    accused_dept_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    repeat_of_id: Mapped[int | None] = mapped_column(ForeignKey("petition_case.id"))
    #: After 复核 the same facts are not accepted again: flagged here, a person decides.
    non_accept_proposed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    legal_route: Mapped[str | None] = mapped_column(String(32))
    reply_text: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    not_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    redirected_legal_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    transferred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handling_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revisited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    review_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    re_review_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class CaseRepresentative(Base):
    """A representative (代表) a collective visit chose (migration 0007). Personal fields are
    ciphertext like the petitioner's (server.kernel.crypto), with keyed hashes for exact lookup;
    `position` keeps the order they were given in."""

    __tablename__ = "case_representative"
    __table_args__ = (UniqueConstraint("case_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    #: Looked up through the (case_id, position) unique index.
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"))
    position: Mapped[int] = mapped_column(Integer)
    name_enc: Mapped[str] = mapped_column(Text)
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    id_number_enc: Mapped[str | None] = mapped_column(Text)
    id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseEvent(Base):
    """Append-only case timeline."""

    __tablename__ = "case_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- case-files work (migration 0003) ---------------------------------------------------------


class Category(enum.StrEnum):
    suggestion = "suggestion"  # 建议意见类
    accusation = "accusation"  # 检举控告类
    appeal = "appeal"  # 申诉求决类


class MatterType(Base):
    """Open311-style service catalogue (reference data)."""

    __tablename__ = "matter_type"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    category: Mapped[Category] = mapped_column(_enum(Category, "case_category"))
    #: [{"name", "label", "type": "text"|"int"|"date"|"bool", "required"}]
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    default_department_code: Mapped[str | None] = mapped_column(String(32))
    #: {deadline kind: days} overriding the policy's limit for this matter type.
    deadline_days: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CaseHandler(Base):
    """A department (and optionally a named person) working on a case: lead (主办) or co
    (协办), or a named expert/supervisor/mediator. Rows are never deleted."""

    __tablename__ = "case_handler"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # lead / co / expert / supervisor / mediator
    task: Mapped[str] = mapped_column(Text, default="")
    reply: Mapped[str | None] = mapped_column(Text)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeadlinePolicy(Base):
    """Time limits per deadline kind (reference data, editable)."""

    __tablename__ = "deadline_policy"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    label_zh: Mapped[str] = mapped_column(String(64))
    limit_days: Mapped[int] = mapped_column(Integer)
    day_mode: Mapped[str] = mapped_column(String(16), default="calendar")
    yellow_days: Mapped[int] = mapped_column(Integer, default=3)
    extension_max_days: Mapped[int] = mapped_column(Integer, default=0)
    escalation_days: Mapped[list[int]] = mapped_column(JSON, default=list)
    #: Roles notified at escalation levels 1, 2, 3 (三级抄告).
    escalation_roles: Mapped[list[str]] = mapped_column(JSON, default=list)


class Holiday(Base):
    """The holiday calendar: days off, and 调休 make-up workdays (workday=True)."""

    __tablename__ = "holiday"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    workday: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(64), default="")


class HolidayYear(Base):
    """Where a year of the holiday calendar came from. `provisional`: the State Council notice
    for that year is not yet published (statutory days only, no 调休); replace it when it is."""

    __tablename__ = "holiday_year"
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(200), default="")
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    loaded_by: Mapped[str] = mapped_column(String(64), default="")


class CaseDeadline(Base):
    __tablename__ = "case_deadline"
    __table_args__ = (
        UniqueConstraint("case_id", "kind"),
        Index("ix_case_deadline_sweep", "status", "next_action_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    base_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    #: open / paused / met / overdue / cancelled
    status: Mapped[str] = mapped_column(String(16), default="open")
    warn_level: Mapped[str] = mapped_column(String(8), default="none")
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extension_days: Mapped[int] = mapped_column(Integer, default=0)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    extension_approver_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeadlinePause(Base):
    __tablename__ = "deadline_pause"
    id: Mapped[int] = mapped_column(primary_key=True)
    deadline_id: Mapped[int] = mapped_column(ForeignKey("case_deadline.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    approver_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CaseEscalation(Base):
    """督办 / 抄告 / leader-led supervision: from and to level, due, response."""

    __tablename__ = "case_escalation"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    deadline_id: Mapped[int | None] = mapped_column(ForeignKey("case_deadline.id"))
    type: Mapped[str] = mapped_column(String(16))  # supervision / report / leader / expert_panel
    level: Mapped[int] = mapped_column(Integer, default=1)
    to_role: Mapped[str] = mapped_column(String(32), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    response: Mapped[str | None] = mapped_column(Text)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseEscalationRecipient(Base):
    """A staff member who was told of a case by 三级抄告 (the deadline sweep, `level` 1-3) or is
    the target of a 督办 (`level` 0): they may open the case (statemachine.can_view), except
    a member of the unit a confidential case accuses. Migration 0012."""

    __tablename__ = "case_escalation_recipient"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    level: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EscalationContact(Base):
    """Who is told at each level of 三级抄告, per department (`department_id`) or for the
    whole deployment (NULL). A contact is a staff member (their phone) or a named person with
    a phone. The sweep uses the department's list for a level, else the deployment's, else
    the policy's role for that level."""

    __tablename__ = "escalation_contact"
    __table_args__ = (
        CheckConstraint("level BETWEEN 1 AND 3", name="level_range"),
        CheckConstraint("staff_id IS NOT NULL OR phone IS NOT NULL", name="staff_or_phone"),
        Index("ix_escalation_contact_lookup", "active", "department_id", "level"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    level: Mapped[int] = mapped_column(Integer)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    name: Mapped[str] = mapped_column(String(64), default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CaseNotification(Base):
    """Outbox: messages are written in the case transaction and delivered after it by the job
    runner (server.kernel.jobs), with status and retries (observable; never lost when the
    gateway fails)."""

    __tablename__ = "case_notification"
    __table_args__ = (Index("ix_case_notification_due", "status", "due_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("petition_case.id"), index=True)
    to: Mapped[str] = mapped_column(String(120))
    channel: Mapped[str] = mapped_column(String(8), default="sms")
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When to (re)try: created_at at first, then after each failure the policy's backoff.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str] = mapped_column(Text, default="")
    #: A runner that claimed the message owns it until this time (server.kernel.jobs).
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Evaluation(Base):
    """双评: one link per reply; the token is stored hashed and used once."""

    __tablename__ = "evaluation"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8), default="web")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: satisfied / fair / dissatisfied / unrated (未评价)
    staff_rating: Mapped[str | None] = mapped_column(String(16))
    dept_rating: Mapped[str | None] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RevisitTask(Base):
    __tablename__ = "revisit_task"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(8), default="open")
    resolved: Mapped[bool | None] = mapped_column(Boolean)
    old_state: Mapped[str | None] = mapped_column(String(32))
    new_state: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PublicationReport(Base):
    """Report of overdue/unsatisfactory handling for publication (《今日拱墅》): personal data
    removed, confidential cases excluded, released only after a supervisor approves."""

    __tablename__ = "publication_report"
    id: Mapped[int] = mapped_column(primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft / approved
    created_by_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MediationAgreement(Base):
    """调解协议书: effective once every party and the mediator have signed."""

    __tablename__ = "mediation_agreement"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("call_session.id"))
    mediator_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    #: [{"name", "role": "applicant"|"respondent"|..., "id_hint"}]
    parties: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    facts: Mapped[str] = mapped_column(Text)
    #: [{"term", "how", "by"}] (履行方式、期限)
    terms: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft / effective
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    judicial_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    judicial_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    judicial_result: Mapped[str | None] = mapped_column(String(32))
    #: 受理法院 and the ruling's number (裁定书/确认书文号), recorded with the 司法确认.
    judicial_court: Mapped[str | None] = mapped_column(String(100))
    judicial_ruling_no: Mapped[str | None] = mapped_column(String(64))
    #: Each party's phone, encrypted (PII cipher), as given when a signing link was sent to
    #: them: party index (str) → ciphertext. For the 司法确认 reminder before the window closes.
    party_phones_enc: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    performance_status: Mapped[str] = mapped_column(String(16), default="pending")


class AgreementSignature(Base):
    __tablename__ = "agreement_signature"
    __table_args__ = (UniqueConstraint("agreement_id", "signer_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("mediation_agreement.id"), index=True)
    #: "party:<index>" or "mediator"
    signer_key: Mapped[str] = mapped_column(String(32))
    signer_name: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))  # typed / drawn
    #: the typed name, or an SVG path ("M x y L ...") of the drawn signature
    data: Mapped[str] = mapped_column(Text)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: own_link (the party's own SMS link) / mediator_device (the party, present and identified,
    #: on the mediator's device) / own_account (the mediator's own signature)
    via: Mapped[str] = mapped_column(String(16), server_default="mediator_device")
    #: how a party signing on the mediator's device was identified: id_card / face / in_person
    id_method: Mapped[str | None] = mapped_column(String(16))
    #: for id_card: the last four characters of the ID number the mediator checked
    id_last4: Mapped[str | None] = mapped_column(String(4))


class DispatchSuggestion(Base):
    """Smart dispatch: what was suggested, next to what a person decided (PIPL art. 24)."""

    __tablename__ = "dispatch_suggestion"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    suggestion: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    decided_department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class KnowledgeArticle(Base):
    __tablename__ = "knowledge_article"
    __table_args__ = (
        Index(
            "ix_knowledge_article_trgm",
            text("(title || ' ' || body) gin_trgm_ops"),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    matter_type: Mapped[str | None] = mapped_column(String(64))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SupervisionBatch(Base):
    """集中交办: a batch of prominent cases a centre supervisor (or supervising leader) assigns
    to one responsible leader with a deadline. The leader may open the batch's cases (a level-0
    CaseEscalationRecipient row per case). Migration 0022."""

    __tablename__ = "supervision_batch"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")
    leader_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SupervisionBatchCase(Base):
    """One case of a 集中交办 batch. Migration 0022."""

    __tablename__ = "supervision_batch_case"
    __table_args__ = (UniqueConstraint("batch_id", "case_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("supervision_batch.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("petition_case.id"), index=True)


class RedCard(Base):
    """红牌警告: issued by the centre to a unit (department) that shirks (推诿), with the reason
    and optionally the case; counted in 双考 (evaluation.dashboard). Migration 0022."""

    __tablename__ = "red_card"
    id: Mapped[int] = mapped_column(primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("petition_case.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    issued_by_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

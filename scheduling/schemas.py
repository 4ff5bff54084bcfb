"""Pydantic models at the edges (API bodies and answers; also the OpenAPI document)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, Field, model_validator

# The statuses pages label: part of this package's vocabulary, imported from here by edges.
from scheduling.models import BookingStatus as BookingStatus
from scheduling.models import JobKind as JobKind
from scheduling.models import JobStatus as JobStatus
from server.kernel.clock import instant_in_range
from server.kernel.ids import DbId
from server.org.models import ResourceType, Role
from server.sessions.models import ParticipantRole, SessionKind, SessionMode
from server.sessions.schemas import Side


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs a UTC offset, e.g. 2026-12-01T09:00:00+08:00")
    return instant_in_range(value).astimezone(UTC)


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
DEFAULT_REMINDERS_S = (86_400, 900)  # [cfg] 1 day and 15 minutes before


class PersonReq(BaseModel, frozen=True, extra="forbid"):
    """A named staff member, or any staff member with `role` in `department_id`/`site_id`."""

    staff_id: DbId | None = None
    role: Role | None = None
    department_id: DbId | None = None
    site_id: DbId | None = None
    as_role: ParticipantRole = ParticipantRole.official

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if self.staff_id is None and self.role is None:
            raise ValueError("give staff_id, or role (with department_id or site_id)")
        return self


class ResourceReq(BaseModel, frozen=True, extra="forbid"):
    """A named resource, or any active resource of `type` at one of `site_ids`."""

    resource_id: DbId | None = None
    type: ResourceType | None = None
    site_ids: list[DbId] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if self.resource_id is None and self.type is None:
            raise ValueError("give resource_id, or type (with site_ids)")
        return self


class SlotQuery(BaseModel, frozen=True, extra="forbid"):
    people: list[PersonReq] = Field(default_factory=list, max_length=20)
    resources: list[ResourceReq] = Field(default_factory=list, max_length=20)
    duration_min: int = Field(default=60, ge=5, le=720)
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    limit: int = Field(default=5, ge=1, le=50)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.people and not self.resources:
            raise ValueError("ask for at least one person or resource")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class SlotOut(BaseModel, frozen=True):
    start: datetime
    end: datetime
    staff_ids: list[int]
    resource_ids: list[int]
    sites: int


class SlotList(BaseModel, frozen=True):
    slots: list[SlotOut]


class StaffRef(BaseModel, frozen=True, extra="forbid"):
    staff_id: DbId
    as_role: ParticipantRole = ParticipantRole.official
    #: If given, the staff member must hold this business role (e.g. mediator).
    must_have_role: Role | None = None


class ResourceRef(BaseModel, frozen=True, extra="forbid"):
    resource_id: DbId
    #: If given, the resource must be of this kind (the form asked for a mediation room...).
    expected_type: ResourceType | None = None


class Guest(BaseModel, frozen=True, extra="forbid"):
    """An external participant (petitioner, party, agent): no account, invited by link."""

    display_name: str = Field(min_length=1, max_length=64)
    as_role: ParticipantRole = ParticipantRole.party
    #: A party's or agent's side in a mediation (申请人 / 被申请人).
    side: Side | None = None
    phone: str = Field(default="", max_length=20, pattern=r"^(\+?[0-9]{6,20})?$")
    email: str = Field(default="", max_length=120, pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$")


class BookingRequest(BaseModel, frozen=True, extra="forbid"):
    start: AwareDatetime
    end: AwareDatetime
    staff: list[StaffRef] = Field(default_factory=list, max_length=20)
    resources: list[ResourceRef] = Field(default_factory=list, max_length=20)
    guests: list[Guest] = Field(default_factory=list, max_length=20)
    title: str = Field(default="", max_length=200)
    kind: SessionKind = SessionKind.mediation
    mode: SessionMode = SessionMode.video
    #: The case the session belongs to, by its case number (案件编号, as the case page shows
    #: it); the booker must be able to see the case (404 `case_not_found` otherwise).
    case_no: str | None = Field(default=None, max_length=40)
    #: Internal: set by the server from `case_no` (a client sending it is checked the same way).
    case_id: DbId | None = None
    #: Whether the room offers recording (with every participant's consent); by default a
    #: mediation's does, a reception's does not.
    recording_allowed: bool | None = None
    #: Seconds before the start at which reminders go out.
    reminders_s: list[Annotated[int, Field(ge=0, le=30 * 24 * 3600)]] = Field(
        default_factory=lambda: list(DEFAULT_REMINDERS_S), max_length=5
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if not self.staff:
            raise ValueError("a booking needs at least one staff member (the host)")
        ids = [s.staff_id for s in self.staff]
        if len(set(ids)) != len(ids):
            raise ValueError("a staff member is listed twice")
        rids = [r.resource_id for r in self.resources]
        if len(set(rids)) != len(rids):
            raise ValueError("a resource is listed twice")
        if any(r <= 0 or r > 30 * 86_400 for r in self.reminders_s):
            raise ValueError("reminders must be between 1 second and 30 days before the start")
        return self


class HoldRequest(BookingRequest, frozen=True, extra="forbid"):
    pass


class RescheduleRequest(BaseModel, frozen=True, extra="forbid"):
    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class CancelRequest(BaseModel, frozen=True, extra="forbid"):
    reason: str = Field(min_length=1, max_length=500)


class NoShowRequest(BaseModel, frozen=True, extra="forbid"):
    participant_id: DbId
    no_show: bool = True


class FollowOnRequest(RescheduleRequest, frozen=True, extra="forbid"):
    pass


class ParticipantOut(BaseModel, frozen=True):
    id: int
    display_name: str
    role: ParticipantRole
    staff_id: int | None
    invite_status: str
    joined_at: datetime | None
    left_at: datetime | None
    no_show: bool
    side: Side | None = None


class JobOut(BaseModel, frozen=True):
    id: int
    kind: str
    participant_id: int | None
    due_at: datetime
    status: str
    attempts: int
    last_error: str
    sent_at: datetime | None


class BookingOut(BaseModel, frozen=True):
    id: int
    status: str
    start: datetime
    end: datetime
    hold_expires_at: datetime | None
    session_id: int | None
    room_id: str | None
    ical_uid: str | None
    ical_sequence: int
    previous_id: int | None
    follows_id: int | None
    reason: str
    staff_ids: list[int]
    resource_ids: list[int]


class SessionRecord(BaseModel, frozen=True):
    """The session record: planned vs actual times, attendance, bookings and jobs."""

    session_id: int
    room_id: str
    title: str
    state: str
    planned_start: datetime | None
    planned_end: datetime | None
    actual_start: datetime | None
    actual_end: datetime | None
    ical_uid: str | None
    ical_sequence: int
    participants: list[ParticipantOut]
    bookings: list[BookingOut]
    jobs: list[JobOut]


class WorkingHoursIn(BaseModel, frozen=True, extra="forbid"):
    rrule: str = Field(min_length=6, max_length=200, examples=["FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"])
    start_local: time
    end_local: time
    valid_from: date
    valid_until: date | None = None
    observe_holidays: bool = True


class ExceptionIn(BaseModel, frozen=True, extra="forbid"):
    kind: Literal["leave", "blocked", "extra"]
    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class PolicyIn(BaseModel, frozen=True, extra="forbid"):
    buffer_before_min: int = Field(default=0, ge=0, le=240)
    buffer_after_min: int = Field(default=0, ge=0, le=240)
    min_notice_min: int = Field(default=120, ge=0, le=60 * 24 * 30)
    max_advance_days: int = Field(default=60, ge=1, le=366)
    slot_step_min: Literal[5, 10, 15, 20, 30, 60] = 30


class AvailabilityIn(BaseModel, frozen=True, extra="forbid"):
    """Replace an owner's working hours (and optionally its policy)."""

    hours: list[WorkingHoursIn] = Field(max_length=30)
    policy: PolicyIn | None = None


class AvailabilityOut(BaseModel, frozen=True):
    owner_key: str
    hours: list[WorkingHoursIn]
    policy: PolicyIn
    exceptions: list[ExceptionIn]
    free: list[tuple[datetime, datetime]]


class HolidayIn(BaseModel, frozen=True, extra="forbid"):
    day: date
    workday: bool = False
    name: str = Field(default="", max_length=64)


class CalendarQuery(BaseModel, frozen=True, extra="forbid"):
    start: AwareDatetime
    end: AwareDatetime

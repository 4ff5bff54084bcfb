"""Case views and inputs (pydantic at the edges; `model_json_schema()` feeds /api/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# The enums are part of this domain's vocabulary: edges import them from here.
from server.cases.models import CaseState as CaseState
from server.cases.models import Category as Category
from server.cases.models import Channel as Channel
from server.cases.validation import (
    MAX_HEADCOUNT,
    MAX_REPRESENTATIVES_CAP,
    TooManyRepresentatives,
    check_collective,
    normalize_id_number,
    normalize_phone,
)
from server.kernel.clock import EdgeDay, EdgeInstant
from server.kernel.errors import InvalidInput
from server.kernel.ids import DbId

_IN = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
_OUT = ConfigDict(frozen=True)

Rating = Literal["satisfied", "fair", "dissatisfied"]
RATING_LABELS = {
    "satisfied": "满意",
    "fair": "基本满意",
    "dissatisfied": "不满意",
    "unrated": "未评价",
}


class PetitionerInput(BaseModel):
    model_config = _IN
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = None
    id_number: str | None = None
    address: str | None = Field(default=None, max_length=200)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value else None

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str | None) -> str | None:
        return normalize_id_number(value) if value else None


class RepresentativeInput(BaseModel):
    """A representative (代表) chosen by a collective visit: name, phone, ID number if given.
    Phone and ID number are checked like the petitioner's."""

    model_config = _IN
    name: str = Field(min_length=1, max_length=64)
    phone: str = Field(min_length=1, max_length=32)
    id_number: str | None = None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return normalize_phone(value)

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str | None) -> str | None:
        return normalize_id_number(value) if value else None


#: Channels where the group came in person (走访 at a window, or video reception at a
#: community point): the 信访工作条例 requires them to choose representatives.
IN_PERSON_CHANNELS = frozenset({Channel.window, Channel.video})
#: Validation context key: the deployment's limit (Settings.collective_max_representatives).
MAX_REPRESENTATIVES = "max_representatives"
STATUTORY_MAX_REPRESENTATIVES = 5


def max_representatives_of(info: ValidationInfo) -> int:
    """The deployment's limit when the edge passed it as validation context; else only the
    input's hard bound (the service checks the deployment's limit again)."""
    context = info.context if isinstance(info.context, dict) else {}
    return int(context.get(MAX_REPRESENTATIVES, MAX_REPRESENTATIVES_CAP))


def representatives_before(value: Any, info: ValidationInfo) -> Any:
    """Validate each representative here so that an error names its position
    (`representatives.<i>.phone`) and too long a list is a typed error."""
    if not isinstance(value, list):
        return value
    limit = max_representatives_of(info)
    if len(value) > limit:
        raise TooManyRepresentatives(
            f"at most {limit} representatives, got {len(value)}",
            field="representatives",
            reason_zh=f"代表不得超过{limit}人，当前{len(value)}人",
            max=limit,
        )
    out = []
    for index, item in enumerate(value):
        try:
            out.append(
                item
                if isinstance(item, RepresentativeInput)
                else RepresentativeInput.model_validate(item)
            )
        except InvalidInput as e:
            e.details["field"] = f"representatives.{index}.{e.details.get('field', '')}".rstrip(".")
            raise
    return out


class CollectiveFields(BaseModel):
    """Collective visit (集体访) or joint petition: how many came or signed, and the
    representatives they chose. Rules: server.cases.validation.check_collective."""

    model_config = _IN
    collective: bool = False
    #: The number of people who came (or signed a joint letter).
    headcount: int | None = Field(default=None, ge=1, le=MAX_HEADCOUNT)
    representatives: list[RepresentativeInput] = Field(
        default_factory=list, max_length=MAX_REPRESENTATIVES_CAP
    )

    @field_validator("representatives", mode="before")
    @classmethod
    def _representatives(cls, value: Any, info: ValidationInfo) -> Any:
        return representatives_before(value, info)

    def check_collective(self, *, in_person: bool, max_representatives: int) -> None:
        check_collective(
            collective=self.collective,
            headcount=self.headcount,
            representatives=[(r.phone, r.id_number) for r in self.representatives],
            in_person=in_person,
            max_representatives=max_representatives,
        )


class RepresentativeView(BaseModel):
    model_config = _OUT
    name: str
    phone: str
    id_number: str | None


class CaseSummary(BaseModel):
    model_config = _OUT
    id: int
    case_no: str
    site_id: int
    channel: Channel
    state: CaseState
    summary: str
    matter_type: str | None
    first_receiver_id: int | None
    petitioner_id: int | None
    confidential: bool
    registered_at: datetime


class IntakeRequest(CollectiveFields):
    """Registering a petition from any channel (window, kiosk, qr, web, agent, letter, video).

    A collective visit (`collective`) records its `headcount` and `representatives`."""

    model_config = _IN
    channel: Channel
    site_id: DbId
    summary: str = Field(min_length=4, max_length=4000)
    matter_type: str | None = Field(default=None, max_length=64)
    petitioner: PetitionerInput | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    accused_department_id: DbId | None = None
    #: Agent registrations: the resident's consent to act on their behalf was recorded.
    on_behalf_consent: bool = False

    @model_validator(mode="after")
    def _collective_rules(self, info: ValidationInfo) -> Self:
        self.check_collective(
            in_person=self.channel in IN_PERSON_CHANNELS,
            max_representatives=max_representatives_of(info),
        )
        return self


class IntakeResult(BaseModel):
    model_config = _OUT
    case: CaseSummary
    repeat_of_case_no: str | None = None
    non_accept_proposed: bool = False
    warnings: list[str] = Field(default_factory=list)


class TransitionRequest(BaseModel):
    model_config = _IN
    transition: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=2000)
    legal_route: str | None = None
    target_department_id: DbId | None = None
    reply: str | None = Field(default=None, max_length=10000)
    note: str | None = Field(default=None, max_length=2000)
    attachments: list[str] = Field(default_factory=list, max_length=20)


class HandlerView(BaseModel):
    model_config = _OUT
    id: int
    department_id: int | None
    staff_id: int | None
    role: str
    task: str
    reply: str | None
    active: bool


class DeadlineView(BaseModel):
    model_config = _OUT
    id: int
    kind: str
    label_zh: str
    start_at: datetime
    due_at: datetime
    status: str
    warn_level: str
    escalation_level: int
    extension_days: int
    extension_reason: str | None


class CaseDetail(BaseModel):
    model_config = _OUT
    id: int
    case_no: str
    channel: Channel
    category: Category | None
    matter_type: str | None
    site_id: int
    state: CaseState
    state_label: str
    link: str
    summary: str
    confidential: bool
    collective: bool
    #: Collective cases: how many came or signed.
    headcount: int | None = None
    #: Collective cases: the representatives, decrypted. None in views that do not read
    #: personal data (the answer to a transition); GET /api/cases/{id} carries them.
    representatives: list[RepresentativeView] | None = None
    grade: str
    review_level: int
    parent_case_id: int | None
    repeat_of_id: int | None
    non_accept_proposed: bool
    first_receiver_id: int | None
    lead_dept_id: int | None
    legal_route: str | None
    reply_text: str | None
    state_times: dict[str, datetime]
    handlers: list[HandlerView]
    deadlines: list[DeadlineView]
    transitions: list[str]
    #: The viewer's other actions now (claim, add_handler, extend, pause, resume, supervise,
    #: request_review: statemachine.other_actions).
    actions: list[str] = Field(default_factory=list)


class PetitionerView(BaseModel):
    """The petitioner as the case page shows them: in clear for those allowed
    (statemachine.may_see_petitioner, each such view audited), masked for everyone else."""

    model_config = _OUT
    name: str
    phone: str | None
    id_number: str | None
    in_clear: bool


class TimelineEvent(BaseModel):
    model_config = _OUT
    id: int
    type: str
    actor_id: int | None
    payload: dict[str, Any]
    at: datetime


class CaseQuery(BaseModel):
    model_config = _IN
    q: str | None = Field(default=None, max_length=100)
    state: CaseState | None = None
    site_id: DbId | None = None
    department_id: DbId | None = None
    matter_type: str | None = None
    overdue: bool | None = None
    registered_from: EdgeInstant | None = None
    registered_to: EdgeInstant | None = None
    limit: int = Field(default=50, ge=1, le=200)
    before_id: DbId | None = None
    channel: Channel | None = None
    #: The colour of a running deadline: overdue, red (incl. overdue), yellow, green.
    deadline: Literal["overdue", "red", "yellow", "green"] | None = None
    #: The drill-down from the 双评双考 dashboard: the cases behind one figure
    #: (evaluation.assessment_cases): the figure, the grouping and its key, the range.
    assess: (
        Literal["evaluated", "satisfied", "fair", "dissatisfied", "closed", "on_time", "overdue"]
        | None
    ) = None
    assess_by: Literal["staff", "department", "site"] = "department"
    assess_key: DbId | None = None
    assess_from: EdgeInstant | None = None
    assess_to: EdgeInstant | None = None


class CaseListItem(BaseModel):
    model_config = _OUT
    id: int
    case_no: str
    state: CaseState
    summary: str
    matter_type: str | None
    lead_dept_id: int | None
    confidential: bool
    registered_at: datetime
    channel: Channel | None = None
    site_id: int | None = None


class ExtensionRequest(BaseModel):
    model_config = _IN
    kind: str = "handling"
    days: int = Field(ge=1, le=366)
    reason: str = Field(min_length=2, max_length=2000)


class PauseRequest(BaseModel):
    model_config = _IN
    kind: str
    reason: str = Field(min_length=2, max_length=2000)


class HandlerRequest(BaseModel):
    model_config = _IN
    department_id: DbId | None = None
    staff_id: DbId | None = None
    role: Literal["co", "expert", "supervisor", "mediator"] = "co"
    task: str = Field(default="", max_length=2000)


class SupervisionRequest(BaseModel):
    model_config = _IN
    type: Literal["supervision", "report", "leader", "expert_panel", "legal_route"] = "supervision"
    note: str = Field(min_length=2, max_length=2000)
    due_days: int = Field(default=7, ge=1, le=90)


class EvaluationSubmit(BaseModel):
    model_config = _IN
    staff_rating: Rating
    dept_rating: Rating
    comment: str | None = Field(default=None, max_length=1000)


class RateRow(BaseModel):
    model_config = _OUT
    key: str
    label: str
    evaluations: int
    satisfied: int
    fair: int
    dissatisfied: int
    satisfaction_rate: float | None
    closed_deadlines: int
    on_time: int
    overdue: int
    on_time_rate: float | None
    overdue_rate: float | None
    #: 红牌 issued to the department in the range (department grouping only).
    red_cards: int = 0
    #: 双考 score 0-100: evaluation.assessment_score.
    score: float | None = None


class Dashboard(BaseModel):
    model_config = _OUT
    by: Literal["staff", "department", "site"]
    rows: list[RateRow]


class HolidayInput(BaseModel):
    model_config = _IN
    day: EdgeDay
    workday: bool = False
    name: str = Field(default="", max_length=64)


class PartyInput(BaseModel):
    model_config = _IN
    name: str = Field(min_length=1, max_length=64)
    role: Literal["applicant", "respondent", "agent", "third_party"] = "applicant"


class TermInput(BaseModel):
    model_config = _IN
    term: str = Field(min_length=1, max_length=2000)
    how: str = Field(min_length=1, max_length=500)
    by: EdgeDay


class AgreementDraft(BaseModel):
    model_config = _IN
    session_id: DbId | None = None
    parties: list[PartyInput] = Field(min_length=2, max_length=20)
    facts: str = Field(min_length=4, max_length=10000)
    terms: list[TermInput] = Field(min_length=1, max_length=50)


#: How a party signing on the mediator's device was identified (身份证核验 / 人脸核验 / 当面核对).
IdMethod = Literal["id_card", "face", "in_person"]


class SignRequest(BaseModel):
    """A signature given on the mediator's device: the mediator's own, or a party's, present
    and identified (`identification`, and for `id_card` the ID number's last four characters)."""

    model_config = _IN
    signer: str = Field(pattern=r"^(party:\d{1,2}|mediator)$")
    signer_name: str = Field(min_length=1, max_length=64)
    method: Literal["typed", "drawn"] = "typed"
    data: str = Field(min_length=1, max_length=20000)
    identification: IdMethod | None = None
    id_last4: str | None = Field(default=None, pattern=r"^\d{3}[\dXx]$")


class LinkSignRequest(BaseModel):
    """A party's signature through their own link: they confirm they read and agree, and type
    their full name (it must be the party's name; the page shows it masked)."""

    model_config = _IN
    agreed: Literal[True]
    signer_name: str = Field(min_length=1, max_length=64)
    method: Literal["typed", "drawn"] = "typed"
    #: the typed name again, or a drawn SVG path; the typed name when left out
    data: str | None = Field(default=None, min_length=1, max_length=20000)


class SignLinkRequest(BaseModel):
    """Send one party their signing link by SMS (a mainland mobile number)."""

    model_config = _IN
    phone: str = Field(min_length=1, max_length=32)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return normalize_phone(value)


class SignLinkSent(BaseModel):
    model_config = _OUT
    agreement_id: int
    party: int
    #: the phone it went to, masked (139****5678)
    to: str
    expires_at: datetime


class SignatureView(BaseModel):
    model_config = _OUT
    signer: str
    signer_name: str
    method: str
    #: the typed text, or the drawn SVG path (absolute M/L commands in a 600x200 area)
    data: str
    signed_at: datetime
    #: own_link / mediator_device / own_account
    via: str = "mediator_device"
    id_method: str | None = None
    id_last4: str | None = None


class PartySigned(BaseModel):
    """The answer to a party's signature through their own link."""

    model_config = _OUT
    agreement_id: int
    party: int
    #: draft (others still to sign) or effective (this was the last signature)
    status: str
    signed_at: datetime


class PartySignView(BaseModel):
    """What a party sees through their own link: the agreement's text, their own name masked
    and the other parties' too (the link may be forwarded; names are the parties' business)."""

    model_config = _OUT
    agreement_id: int
    party: int
    party_role: str
    party_name_masked: str
    parties_masked: list[dict[str, str]]
    facts: str
    terms: list[dict[str, Any]]
    expires_at: datetime


class JudicialPending(BaseModel):
    """An effective agreement awaiting 司法确认: the court liaison's and the mediator's list."""

    model_config = _OUT
    agreement_id: int
    case_id: int
    case_no: str
    #: "申请人：张三" per party; names masked for a viewer who may not know the petitioner
    parties: list[str]
    effective_at: datetime
    judicial_due_at: datetime | None
    #: the 30-day window has closed (a request now is recorded but flagged late)
    overdue: bool


class AgreementView(BaseModel):
    model_config = _OUT
    id: int
    case_id: int
    session_id: int | None
    mediator_id: int
    parties: list[dict[str, Any]]
    facts: str
    terms: list[dict[str, Any]]
    status: str
    effective_at: datetime | None
    judicial_due_at: datetime | None
    judicial_requested_at: datetime | None
    judicial_result: str | None
    judicial_court: str | None = None
    judicial_ruling_no: str | None = None
    signatures: list[SignatureView]
    missing_signers: list[str]

"""双评双考: evaluation links on reply, the petitioner's ratings, revisit tasks on
dissatisfaction, assessment dashboards, and the de-identified publication report.

Evaluation tokens are signed (server.kernel.signing, purpose `evaluation_link`) and carry the
evaluation id and a random nonce. The signature rejects forged links before any lookup; only sha256(random) is stored; a token is used once (a
conditional UPDATE) and expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases import deadline_clock
from server.cases.batches import RED_CARD_PENALTY, red_card_counts
from server.cases.models import (
    CaseDeadline,
    CaseEvent,
    CaseState,
    Evaluation,
    MatterType,
    PetitionCase,
    Petitioner,
    PublicationReport,
    RevisitTask,
)
from server.cases.outbox import ResidentPhone, enqueue
from server.cases.schemas import Dashboard, EvaluationSubmit, RateRow
from server.cases.statemachine import PARTY_WINDOWS
from server.kernel.crypto import PiiCipher
from server.kernel.errors import AppError, Conflict, NotFound, PermissionDenied
from server.kernel.signing import Legacy, SignatureExpired, SignatureInvalid, Signer
from server.org.models import Department, Site, Staff


@dataclass(frozen=True, slots=True)
class ReplyNotice:
    """What `transition` needs to send the evaluation link on reply (双评)."""

    pii: PiiCipher
    secret: bytes
    base_url: str
    #: The evaluation window in days (ONEDOOR_EVALUATION_WINDOW_DAYS); None: the
    #: `evaluation` deadline policy's limit (reference data, 7 days as seeded).
    evaluation_days: int | None = None
    #: Only if the case has no evaluation deadline row (never after `reply`).
    default_window: timedelta = timedelta(days=7)


REVISIT_AFTER_DISSATISFACTION = timedelta(days=7)
ASSESSED_KINDS = ("acceptance", "handling", "review_decision", "re_review_decision")


class InvalidEvaluationLink(AppError):
    code, http_status, message_zh = "invalid_evaluation_link", 404, "评价链接无效"


class EvaluationLinkUsed(Conflict):
    code, message_zh = "evaluation_link_used", "该评价链接已使用，感谢您的评价"


class EvaluationLinkExpired(AppError):
    code, http_status, message_zh = "evaluation_link_expired", 410, "评价链接已过期"


class EvaluationTimedOut(EvaluationLinkExpired):
    code, message_zh = "evaluation_timed_out", "评价期限已过，本次评价已记为未评价"


#: The signature outlives the window by this much: the evaluation row decides whether the link
#: is used, timed out or expired (the window can move), the signature only bounds its life.
LINK_GRACE = timedelta(days=30)

# LEGACY: links from before server.kernel.signing (`<id>.<nonce>.<hmac>` under
# sha256("onedoor-evaluation-link"+secret)), valid for the evaluation window (at most 90 days,
# Settings.evaluation_window_days). Remove `_legacy` and LEGACY_UNTIL after 2027-03-03.
LEGACY_UNTIL = datetime(2027, 3, 3, tzinfo=UTC)


def _legacy(secret: bytes) -> Legacy:
    def verify(token: str, now: datetime) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            raise SignatureInvalid("malformed evaluation link")
        body = f"{parts[0]}.{parts[1]}"
        key = hashlib.sha256(b"onedoor-evaluation-link" + secret).digest()
        good = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(good, parts[2]):
            raise SignatureInvalid("evaluation link signature does not match")
        return {"e": int(parts[0]), "n": parts[1]}

    return Legacy(until=LEGACY_UNTIL, verify=verify)


def make_token(secret: bytes, evaluation_id: int, *, expires_at: datetime) -> tuple[str, str]:
    """A new token for the link valid until `expires_at`, and the hash to store."""
    nonce = secrets.token_urlsafe(16)
    token = Signer(secret).sign(
        "evaluation_link", {"e": evaluation_id, "n": nonce}, expires_at=expires_at + LINK_GRACE
    )
    return token, hashlib.sha256(nonce.encode()).hexdigest()


def parse_token(secret: bytes, token: str, *, now: datetime) -> tuple[int, str]:
    """(evaluation id, stored hash) of a well-signed token.

    Raises:
        InvalidEvaluationLink: forged, tampered or malformed.
        EvaluationLinkExpired: well signed, but long past its window.
    """
    try:
        claims = Signer(secret).verify("evaluation_link", token, now=now, legacy=_legacy(secret))
        ev_id, nonce = int(claims["e"]), claims["n"]
        if not isinstance(nonce, str):
            raise TypeError("nonce")
    except SignatureExpired:
        raise EvaluationLinkExpired("this link has expired") from None
    except (SignatureInvalid, KeyError, TypeError, ValueError):
        raise InvalidEvaluationLink("evaluation link signature does not match") from None
    return ev_id, hashlib.sha256(nonce.encode()).hexdigest()


async def issue_evaluation(
    session: AsyncSession,
    *,
    case: PetitionCase,
    staff_id: int | None,
    now: datetime,
    notice: ReplyNotice,
) -> str:
    """Create the evaluation row and queue the link to the petitioner (SMS). Returns the token."""
    # The link lives as long as the evaluation window (the `evaluation` deadline opened by
    # the reply); an earlier reply's unused link stops working now.
    due = await session.scalar(
        select(CaseDeadline.due_at).where(
            CaseDeadline.case_id == case.id, CaseDeadline.kind == deadline_clock.EVALUATION
        )
    )
    await session.execute(
        update(Evaluation)
        .where(
            Evaluation.case_id == case.id,
            Evaluation.used_at.is_(None),
            Evaluation.staff_rating.is_(None),
            Evaluation.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    ev = Evaluation(
        case_id=case.id,
        staff_id=staff_id or case.first_receiver_id,
        department_id=case.lead_dept_id,
        channel="sms",
        token_hash="pending",
        expires_at=due if due is not None else now + notice.default_window,
        created_at=now,
    )
    session.add(ev)
    await session.flush()
    token, token_hash = make_token(notice.secret, ev.id, expires_at=ev.expires_at)
    ev.token_hash = token_hash
    phone: str | None = None
    if case.petitioner_id is not None:
        p = await session.get(Petitioner, case.petitioner_id)
        if p is not None and p.phone_enc:
            phone = notice.pii.decrypt(p.phone_enc)
    if phone:
        await enqueue(
            session,
            key=f"eval:{ev.id}",
            case_id=case.id,
            to=ResidentPhone(phone, notice.pii),
            subject="信访事项评价",
            body=(
                f"您的信访事项{case.case_no}已答复。请对承办人员和承办单位分别评价："
                f"{notice.base_url.rstrip('/')}/evaluate/{token}"
            ),
            now=now,
        )
    session.add(
        CaseEvent(
            case_id=case.id,
            actor_id=None,
            type="evaluation_link_sent",
            payload={"evaluation_id": ev.id, "sms": bool(phone)},
            at=now,
        )
    )
    return token


async def evaluation_for_token(
    session: AsyncSession, *, secret: bytes, token: str, now: datetime
) -> Evaluation:
    ev_id, token_hash = parse_token(secret, token, now=now)
    ev = await session.get(Evaluation, ev_id)
    if ev is None or not hmac.compare_digest(ev.token_hash, token_hash):
        raise InvalidEvaluationLink("no such evaluation link")
    if ev.used_at is not None:
        raise EvaluationLinkUsed("this link was used already")
    if ev.staff_rating == deadline_clock.UNRATED:
        raise EvaluationTimedOut("the evaluation window ran out; recorded as not evaluated")
    if ev.expires_at <= now:
        raise EvaluationLinkExpired("this link has expired")
    return ev


@dataclass(frozen=True, slots=True)
class EvaluationSubject:
    """What the petitioner is asked to rate (the evaluation page says it above the form)."""

    case_no: str
    department: str
    staff: str
    replied_at: datetime | None
    reply_summary: str


async def evaluation_subject(
    session: AsyncSession, *, secret: bytes, token: str, now: datetime
) -> EvaluationSubject:
    """The case number, the unit and officer being rated and the reply's opening, for a valid
    link (the same errors as `evaluation_for_token`)."""
    ev = await evaluation_for_token(session, secret=secret, token=token, now=now)
    case = await session.get(PetitionCase, ev.case_id)
    if case is None:
        raise InvalidEvaluationLink("the case of this link is gone")
    department = await session.get(Department, ev.department_id) if ev.department_id else None
    officer = await session.get(Staff, ev.staff_id) if ev.staff_id else None
    reply = " ".join((case.reply_text or "").split())
    return EvaluationSubject(
        case_no=case.case_no,
        department=department.name if department is not None else "",
        staff=officer.display_name if officer is not None else "",
        replied_at=case.replied_at,
        reply_summary=reply if len(reply) <= 120 else reply[:120] + "……",
    )


async def submit_evaluation(
    session: AsyncSession,
    *,
    secret: bytes,
    token: str,
    submit: EvaluationSubmit,
    now: datetime,
    ip: str = "",
) -> Evaluation:
    """Record the petitioner's ratings once; dissatisfaction opens a revisit task."""
    ev = await evaluation_for_token(session, secret=secret, token=token, now=now)
    claimed = await session.execute(
        update(Evaluation)
        .where(
            Evaluation.id == ev.id,
            Evaluation.used_at.is_(None),
            Evaluation.staff_rating.is_(None),  # not timed out by the sweep meanwhile
            Evaluation.expires_at > now,
        )
        .values(
            used_at=now,
            staff_rating=submit.staff_rating,
            dept_rating=submit.dept_rating,
            comment=submit.comment,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise EvaluationLinkUsed("this link was used already")
    await session.refresh(ev)
    case = await session.get(PetitionCase, ev.case_id)
    assert case is not None
    await deadline_clock.meet_deadline(session, case_id=case.id, kind="evaluation", now=now)
    dissatisfied = "dissatisfied" in (submit.staff_rating, submit.dept_rating)
    if dissatisfied:
        session.add(
            RevisitTask(
                case_id=case.id,
                reason="信访人不满意，需回访核实",
                due_at=now + REVISIT_AFTER_DISSATISFACTION,
                status="open",
                old_state=case.state.value,
                created_at=now,
            )
        )
    if case.state == CaseState.replied:
        case.state = CaseState.evaluated
        case.evaluated_at = now
        case.updated_at = now
    session.add(
        CaseEvent(
            case_id=case.id,
            actor_id=None,
            type="evaluate",
            payload={
                "staff_rating": submit.staff_rating,
                "dept_rating": submit.dept_rating,
                "revisit_task": dissatisfied,
            },
            at=now,
        )
    )
    await record(
        session,
        actor="petitioner",
        action="case.evaluate",
        object_type="case",
        object_id=str(case.id),
        ip=ip,
        detail={"staff_rating": submit.staff_rating, "dept_rating": submit.dept_rating},
    )
    await session.flush()
    return ev


# --- dashboards (双考) -------------------------------------------------------------------------

By = Literal["staff", "department", "site"]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def dashboard(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    by: By,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Dashboard:
    """Satisfaction, on-time and overdue rates per staff member, department or site."""
    if not staff.can(Action.case_assess):
        raise PermissionDenied("your roles may not read assessments")
    rating_col = Evaluation.staff_rating if by == "staff" else Evaluation.dept_rating
    group = {
        "staff": Evaluation.staff_id,
        "department": Evaluation.department_id,
        "site": PetitionCase.site_id,
    }[by]
    ev_stmt = (
        select(group, rating_col, func.count())
        .join(PetitionCase, PetitionCase.id == Evaluation.case_id)
        .where(Evaluation.used_at.is_not(None))
        .group_by(group, rating_col)
    )
    case_group = {
        "staff": PetitionCase.first_receiver_id,
        "department": PetitionCase.lead_dept_id,
        "site": PetitionCase.site_id,
    }[by]
    on_time = (CaseDeadline.met_at.is_not(None)) & (CaseDeadline.met_at <= CaseDeadline.due_at)
    dl_stmt = (
        select(case_group, CaseDeadline.status, on_time, func.count())
        .join(PetitionCase, PetitionCase.id == CaseDeadline.case_id)
        .where(CaseDeadline.kind.in_(ASSESSED_KINDS), CaseDeadline.status.in_(("met", "overdue")))
        .group_by(case_group, CaseDeadline.status, on_time)
    )
    if since is not None:
        ev_stmt = ev_stmt.where(Evaluation.used_at >= since)
        dl_stmt = dl_stmt.where(CaseDeadline.due_at >= since)
    if until is not None:
        ev_stmt = ev_stmt.where(Evaluation.used_at < until)
        dl_stmt = dl_stmt.where(CaseDeadline.due_at < until)
    if by == "department" and Action.case_view_all not in _actions(staff) and staff.department_id:
        # A department leader sees their own department only.
        ev_stmt = ev_stmt.where(Evaluation.department_id == staff.department_id)
        dl_stmt = dl_stmt.where(PetitionCase.lead_dept_id == staff.department_id)
    stats: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, rating, n in (await session.execute(ev_stmt)).all():
        if key is not None and rating:
            stats[key][rating] += n
            stats[key]["evaluations"] += n
    for key, status, in_time, n in (await session.execute(dl_stmt)).all():
        if key is None:
            continue
        stats[key]["closed"] += n
        if status == "met" and in_time:
            stats[key]["on_time"] += n
        else:
            stats[key]["overdue"] += n
    cards: dict[int, int] = {}
    if by == "department":
        cards = await red_card_counts(session, since=since, until=until)
        if Action.case_view_all not in _actions(staff) and staff.department_id:
            cards = {k: v for k, v in cards.items() if k == staff.department_id}
        for key in cards:
            stats[key]["red_cards"] = cards[key]
    labels = await _labels(session, by, list(stats))
    rows = []
    for key in sorted(stats):
        s = stats[key]
        satisfaction = _rate(s["satisfied"] + s["fair"], s["evaluations"])
        on_time_rate = _rate(s["on_time"], s["closed"])
        rows.append(
            RateRow(
                key=str(key),
                label=labels.get(key, str(key)),
                evaluations=s["evaluations"],
                satisfied=s["satisfied"],
                fair=s["fair"],
                dissatisfied=s["dissatisfied"],
                satisfaction_rate=satisfaction,
                closed_deadlines=s["closed"],
                on_time=s["on_time"],
                overdue=s["overdue"],
                on_time_rate=on_time_rate,
                overdue_rate=_rate(s["overdue"], s["closed"]),
                red_cards=s["red_cards"],
                score=assessment_score(satisfaction, on_time_rate, s["red_cards"]),
            )
        )
    return Dashboard(by=by, rows=rows)


AssessKind = Literal[
    "evaluated", "satisfied", "fair", "dissatisfied", "closed", "on_time", "overdue"
]
ASSESS_KINDS: tuple[str, ...] = (
    "evaluated",
    "satisfied",
    "fair",
    "dissatisfied",
    "closed",
    "on_time",
    "overdue",
)


def assessment_cases(
    kind: AssessKind,
    *,
    by: By,
    key: int | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[tuple[int]]:
    """The ids of the cases behind one dashboard figure (the drill-down from 双考 to the case
    list): the same grouping and range as `dashboard`."""
    stmt: Select[tuple[int]]
    if kind in ("evaluated", "satisfied", "fair", "dissatisfied"):
        group = {
            "staff": Evaluation.staff_id,
            "department": Evaluation.department_id,
            "site": PetitionCase.site_id,
        }[by]
        rating_col = Evaluation.staff_rating if by == "staff" else Evaluation.dept_rating
        stmt = (
            select(Evaluation.case_id)
            .join(PetitionCase, PetitionCase.id == Evaluation.case_id)
            .where(Evaluation.used_at.is_not(None))
        )
        if kind != "evaluated":
            stmt = stmt.where(rating_col == kind)
        if since is not None:
            stmt = stmt.where(Evaluation.used_at >= since)
        if until is not None:
            stmt = stmt.where(Evaluation.used_at < until)
    else:
        group = {
            "staff": PetitionCase.first_receiver_id,
            "department": PetitionCase.lead_dept_id,
            "site": PetitionCase.site_id,
        }[by]
        on_time = (CaseDeadline.met_at.is_not(None)) & (CaseDeadline.met_at <= CaseDeadline.due_at)
        stmt = (
            select(CaseDeadline.case_id)
            .join(PetitionCase, PetitionCase.id == CaseDeadline.case_id)
            .where(
                CaseDeadline.kind.in_(ASSESSED_KINDS),
                CaseDeadline.status.in_(("met", "overdue")),
            )
        )
        if kind == "on_time":
            stmt = stmt.where(CaseDeadline.status == "met", on_time)
        elif kind == "overdue":
            stmt = stmt.where(~((CaseDeadline.status == "met") & on_time))
        if since is not None:
            stmt = stmt.where(CaseDeadline.due_at >= since)
        if until is not None:
            stmt = stmt.where(CaseDeadline.due_at < until)
    if key is not None:
        stmt = stmt.where(group == key)
    return stmt


def assessment_score(
    satisfaction_rate: float | None, on_time_rate: float | None, red_cards: int
) -> float | None:
    """The 双考 score (0-100): the mean of the known rates (satisfaction, on-time) times 100,
    less RED_CARD_PENALTY points per red card, never below 0. No known rate and no red card:
    None (nothing to assess); no known rate but red cards: 100 less the penalty."""
    known = [r for r in (satisfaction_rate, on_time_rate) if r is not None]
    if not known and not red_cards:
        return None
    base = 100 * sum(known) / len(known) if known else 100.0
    return round(max(0.0, base - RED_CARD_PENALTY * red_cards), 1)


def _actions(staff: StaffIdentity) -> set[Action]:
    return {a for a in Action if staff.can(a)}


async def _labels(session: AsyncSession, by: By, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    if by == "staff":
        rows = await session.execute(select(Staff.id, Staff.display_name).where(Staff.id.in_(ids)))
    elif by == "department":
        rows = await session.execute(
            select(Department.id, Department.name).where(Department.id.in_(ids))
        )
    else:
        rows = await session.execute(select(Site.id, Site.name).where(Site.id.in_(ids)))
    return {int(k): str(v) for k, v in rows.all()}


# --- publication report (《今日拱墅》) -----------------------------------------------------------


class DrafterMayNotApprove(Conflict):
    """Four eyes: the report waits for a second supervisor (the role may approve; this person
    may not approve their own draft)."""

    code, message_zh = "drafter_may_not_approve", "报告须由起草人以外的督导员审批"


class ReportNotApproved(NotFound):
    code, message_zh = "report_not_approved", "报告尚未审批，不能公开"


async def draft_publication_report(
    session: AsyncSession, *, staff: StaffIdentity, since: datetime, until: datetime, now: datetime
) -> int:
    """Overdue or unsatisfactory handling in a period: no personal data, no confidential cases,
    no free text (summaries may name people), no case number (it names the community);
    department, matter type and the problem only. Only a unit's own obligations count: a
    petitioner's or the parties' window (复查/复核 requests, evaluation, 司法确认) is nobody's
    delay."""
    if not staff.can(Action.report_publish):
        raise PermissionDenied("your roles may not prepare publication reports")
    items: list[dict[str, Any]] = []
    overdue = await session.execute(
        select(
            PetitionCase.case_no,
            Department.name,
            MatterType.name,
            CaseDeadline.kind,
            CaseDeadline.due_at,
        )
        .select_from(CaseDeadline)
        .join(PetitionCase, PetitionCase.id == CaseDeadline.case_id)
        .outerjoin(Department, Department.id == PetitionCase.lead_dept_id)
        .outerjoin(MatterType, MatterType.code == PetitionCase.matter_type)
        .where(
            CaseDeadline.status == "overdue",
            CaseDeadline.kind.not_in(PARTY_WINDOWS),
            PetitionCase.confidential.is_(False),
            CaseDeadline.due_at >= since,
            CaseDeadline.due_at < until,
        )
        .order_by(CaseDeadline.due_at)
    )
    for _case_no, dept, matter, kind, due in overdue.all():
        items.append(
            {
                "department": dept or "未指定",
                "matter_type": matter or "",
                "problem": "overdue",
                "kind": kind,
                "days_overdue": max(0, (now - due).days),
            }
        )
    unsatisfied = await session.execute(
        select(PetitionCase.case_no, Department.name, MatterType.name)
        .select_from(Evaluation)
        .join(PetitionCase, PetitionCase.id == Evaluation.case_id)
        .outerjoin(Department, Department.id == PetitionCase.lead_dept_id)
        .outerjoin(MatterType, MatterType.code == PetitionCase.matter_type)
        .where(
            Evaluation.dept_rating == "dissatisfied",
            PetitionCase.confidential.is_(False),
            Evaluation.used_at >= since,
            Evaluation.used_at < until,
        )
    )
    for _case_no, dept, matter in unsatisfied.all():
        items.append(
            {
                "department": dept or "未指定",
                "matter_type": matter or "",
                "problem": "dissatisfied",
            }
        )
    report = PublicationReport(
        period_start=since,
        period_end=until,
        items=items,
        status="draft",
        created_by_id=staff.staff_id,
        created_at=now,
    )
    session.add(report)
    await session.flush()
    await record(
        session,
        actor=staff.actor,
        action="report.draft",
        object_type="report",
        object_id=str(report.id),
        detail={"items": len(items)},
    )
    return report.id


async def approve_publication_report(
    session: AsyncSession, *, staff: StaffIdentity, report_id: int, now: datetime
) -> None:
    if not staff.can(Action.report_publish):
        raise PermissionDenied("only a centre supervisor approves publication")
    report = await session.get(PublicationReport, report_id)
    if report is None:
        raise NotFound(f"report {report_id} does not exist")
    if report.status == "approved":
        return
    if report.created_by_id == staff.staff_id:
        raise DrafterMayNotApprove("the drafter of a report may not approve it")
    report.status = "approved"
    report.approved_by_id = staff.staff_id
    report.approved_at = now
    await record(
        session,
        actor=staff.actor,
        action="report.approve",
        object_type="report",
        object_id=str(report_id),
    )


async def published_report(session: AsyncSession, *, report_id: int) -> dict[str, Any]:
    """The public view: only approved reports exist for the public."""
    report = await session.get(PublicationReport, report_id)
    if report is None or report.status != "approved":
        raise ReportNotApproved(f"report {report_id} is not published")
    return {
        "id": report.id,
        "period_start": report.period_start.isoformat(),
        "period_end": report.period_end.isoformat(),
        "items": report.items,
        "approved_at": report.approved_at.isoformat() if report.approved_at else None,
    }

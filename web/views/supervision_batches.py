"""集中交办 batches (/cases/batches: list, and the form that makes one from cases chosen on the
board) and 红牌 red cards (/cases/red-cards: list, and the form that issues one)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from server.auth.permissions import Action, StaffIdentity
from server.cases import batches
from server.http import keys
from server.http.auth import protected, signed_in_staff
from server.kernel import clock
from server.kernel.db import utcnow
from server.kernel.errors import AppError
from server.org import service as org
from web.render import page


class BatchForm(BaseModel, extra="ignore"):
    title: str = Field(min_length=1, max_length=128)
    leader_id: int
    due_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    note: str = Field(default="", max_length=2000)


class RedCardForm(BaseModel, extra="ignore"):
    department_id: int
    reason: str = Field(min_length=2, max_length=2000)
    case_id: int | None = None


FIELD_MESSAGES = {
    "title": "请填写交办批次名称",
    "leader_id": "请选择责任领导",
    "due_date": "请选择办结期限（日期）",
    "note": "说明过长",
    "department_id": "请选择责任单位",
    "reason": "请填写红牌理由（至少2个字）",
    "case_id": "事项编号无效",
}


def _ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit() and len(v) < 10]


def _invalid_fields(e: ValidationError) -> dict[str, str]:
    """The message of each field the form model refused (both forms share FIELD_MESSAGES)."""
    return {
        str(err["loc"][0]): FIELD_MESSAGES.get(str(err["loc"][0]), "输入有误") for err in e.errors()
    }


def _refused_field(e: AppError, default: str) -> dict[str, str]:
    """A service's refusal, shown at the field it names (a permission refusal is raised on)."""
    if e.http_status == 403:
        raise e
    field = str(e.details.get("field", default))
    return {"due_date" if field == "due_at" else field: e.message_zh}


async def _batch_page(
    request: web.Request,
    staff: StaffIdentity,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    now = utcnow()
    chosen = typed["case_ids"] if typed else _ids(request.query.getall("case", []))
    async with request.app[keys.db].begin() as session:
        rows = await batches.list_batches(session, staff=staff, now=now)
        leaders = await batches.leader_choices(session) if staff.can(Action.case_supervise) else []
        departments = {d.id: d.name for d in await org.departments(session)}
    return page(
        request,
        "cases/batches.html",
        {
            "batches": rows,
            "leaders": leaders,
            "can_create": staff.can(Action.case_supervise),
            "chosen": chosen,
            "typed": typed or {"title": "", "leader_id": "", "due_date": "", "note": ""},
            "errors": errors or {},
            "dept_names": departments,
        },
        status=status,
    )


@protected(Action.case_assess)
async def batches_page(request: web.Request) -> web.Response:
    return await _batch_page(request, signed_in_staff(request))


@protected(Action.case_supervise)
async def batches_create(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    form = await request.post()
    typed: dict[str, Any] = {
        "title": str(form.get("title", "")).strip(),
        "leader_id": str(form.get("leader_id", "")),
        "due_date": str(form.get("due_date", "")),
        "note": str(form.get("note", "")),
        "case_ids": _ids([str(v) for v in form.getall("case_ids", [])]),
    }
    try:
        valid = BatchForm.model_validate(typed)
    except ValidationError as e:
        errors = _invalid_fields(e)
        return await _batch_page(request, staff, typed=typed, errors=errors, status=400)
    tz = request.app[keys.settings].timezone
    try:
        day = date.fromisoformat(valid.due_date)
    except ValueError:
        errors = {"due_date": FIELD_MESSAGES["due_date"]}
        return await _batch_page(request, staff, typed=typed, errors=errors, status=400)
    # the deadline is the end of that district day
    due_at = datetime.combine(day, time(23, 59, 59), tzinfo=clock.zone(tz)).astimezone(UTC)
    try:
        async with request.app[keys.db].begin() as session:
            batch_id = await batches.create_batch(
                session,
                staff=staff,
                title=valid.title,
                leader_id=valid.leader_id,
                due_at=due_at,
                case_ids=typed["case_ids"],
                note=valid.note,
                now=utcnow(),
            )
    except AppError as e:
        errors = _refused_field(e, "case_ids")
        return await _batch_page(request, staff, typed=typed, errors=errors, status=400)
    raise web.HTTPSeeOther(f"/cases/batches#batch-{batch_id}")


async def _cards_page(
    request: web.Request,
    staff: StaffIdentity,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        cards = await batches.list_red_cards(session, staff=staff)
        departments = await org.departments(session)
    return page(
        request,
        "cases/red_cards.html",
        {
            "cards": cards,
            "can_issue": staff.can(Action.red_card_issue),
            "department_choices": [(d.id, d.name) for d in departments],
            "typed": typed
            or {"department_id": "", "reason": "", "case_id": request.query.get("case", "")},
            "errors": errors or {},
        },
        status=status,
    )


@protected(Action.case_assess)
async def red_cards_page(request: web.Request) -> web.Response:
    return await _cards_page(request, signed_in_staff(request))


@protected(Action.red_card_issue)
async def red_cards_create(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    form = await request.post()
    typed: dict[str, Any] = {
        "department_id": str(form.get("department_id", "")),
        "reason": str(form.get("reason", "")).strip(),
        "case_id": str(form.get("case_id", "")).strip() or None,
    }
    try:
        valid = RedCardForm.model_validate(typed)
    except ValidationError as e:
        errors = _invalid_fields(e)
        return await _cards_page(request, staff, typed=typed, errors=errors, status=400)
    try:
        async with request.app[keys.db].begin() as session:
            await batches.issue_red_card(
                session,
                staff=staff,
                department_id=valid.department_id,
                reason=valid.reason,
                case_id=valid.case_id,
                now=utcnow(),
            )
    except AppError as e:
        errors = _refused_field(e, "case_id")
        return await _cards_page(request, staff, typed=typed, errors=errors, status=400)
    raise web.HTTPSeeOther("/cases/red-cards")


def setup(app: web.Application) -> None:
    app.router.add_get("/cases/batches", batches_page, name="cases_batches")
    app.router.add_post("/cases/batches", batches_create, name="cases_batches_create")
    app.router.add_get("/cases/red-cards", red_cards_page, name="cases_red_cards")
    app.router.add_post("/cases/red-cards", red_cards_create, name="cases_red_cards_create")

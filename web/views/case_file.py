"""The case page's content: the case file in words (petitioner, matter, channel, departments
and officers by name, deadlines with their clocks, the timeline) and the forms for every
action the viewer may take now (web/views/case_actions.py handles them). Rendered for GET
/cases/{id} and again, with what was typed and the message, when an action is refused."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from server.auth.permissions import StaffIdentity
from server.cases import agreements, queries, sign_off
from server.cases.catalogue import active_matter_types
from server.cases.labels import STATE_LABELS
from server.cases.schemas import CaseDetail, DeadlineView, TimelineEvent
from server.cases.statemachine import LEGAL_ROUTES, OTHER_ACTIONS, TRANSITIONS
from server.http import keys
from server.http.auth import client_ip
from server.kernel.db import utcnow
from server.org import service as org
from server.org.schemas import Role
from server.sessions import record as session_records
from web.labels import CHANNEL_LABELS, GRADE_LABELS, SESSION_OUTCOME_LABELS
from web.render import page
from web.views import case_notices

#: The service chain (接、转、调、诉、化) in order, with what each link means.
CHAIN = [
    ("接", "接待登记"),
    ("转", "转送交办、复查复核"),
    ("调", "调解"),
    ("诉", "诉讼、仲裁、行政复议"),
    ("化", "答复化解"),
]

#: Actions that cannot be undone: the form asks for a confirmation first.
IRREVERSIBLE = frozenset({"not_accept", "redirect_legal", "terminate", "close"})

#: (field, label, kind) of each action's form; kind: text, textarea, legal_route,
#: department, transfer_target, deadline_open, deadline_paused, days, handler_role,
#: supervision_type, due_days.
FORM_FIELDS: dict[str, list[tuple[str, str, str]]] = {
    "accept": [("note", "受理意见（可选）", "textarea")],
    "not_accept": [("reason", "不予受理理由", "textarea")],
    "redirect_legal": [
        ("legal_route", "法定途径", "legal_route"),
        ("reason", "导入理由", "textarea"),
    ],
    "transfer": [
        ("target_department_id", "承办单位", "transfer_target"),
        ("reason", "交办要求（可选）", "textarea"),
    ],
    "start_handling": [],
    "reply": [("reply", "书面答复意见", "textarea")],
    "revisit": [("note", "回访情况", "textarea")],
    "reopen": [("reason", "未解决的原因", "textarea")],
    "close": [],
    "terminate": [("reason", "终止理由", "textarea")],
    "claim": [],
    "add_handler": [
        ("department_id", "协办单位", "transfer_target"),
        ("role", "角色", "handler_role"),
        ("task", "协办任务（可选）", "textarea"),
    ],
    "extend": [
        ("kind", "期限", "deadline_open"),
        ("days", "延长天数", "days"),
        ("reason", "延期理由", "textarea"),
    ],
    "pause": [("kind", "期限", "deadline_open"), ("reason", "中止计时理由", "textarea")],
    "resume": [("kind", "期限", "deadline_paused")],
    "supervise": [
        ("type", "督办方式", "supervision_type"),
        ("note", "督办意见", "textarea"),
        ("due_days", "办理时限（天）", "due_days"),
    ],
    "request_review": [("reason", "复查/复核请求及理由", "textarea")],
    "respond_supervision": [("response", "督办答复（已采取的措施和办理结果）", "textarea")],
    "close_supervision": [
        ("verdict", "评议结果", "verdict"),
        ("comment", "评议意见（不满意时必填）", "textarea"),
    ],
    "invite_expert": [("expert", "专家", "expert"), ("task", "咨询事项（可选）", "textarea")],
    "expert_opinion": [("opinion", "专家意见", "textarea")],
    "mark_hard": [("reason", "列为疑难积案的理由（必填）", "textarea")],
}

HANDLER_ROLES = {"co": "协办单位", "expert": "专家", "supervisor": "督导", "mediator": "调解"}
SUPERVISION_TYPES = {
    "supervision": "督办",
    "report": "要求报告",
    "leader": "领导督办",
    "expert_panel": "专家会诊",
    "legal_route": "法律途径指导",
}
DONE_MESSAGES = {
    "registered": "登记成功。请核对事项信息，并告知信访人事项编号",
    "accept": "已受理",
    "not_accept": "已决定不予受理",
    "redirect_legal": "已导入法定途径",
    "transfer": "已转送/交办",
    "start_handling": "已开始办理",
    "reply": "书面答复已提交",
    "revisit": "回访已记录",
    "reopen": "已退回办理",
    "close": "已结案",
    "terminate": "已终止",
    "claim": "已认领，您是本事项的首问责任人",
    "add_handler": "已增加协办单位",
    "extend": "办理期限已延长",
    "pause": "已中止计时",
    "resume": "已恢复计时",
    "supervise": "已督办",
    "request_review": "复查/复核申请已登记",
    "respond_supervision": "督办答复已提交",
    "close_supervision": "督办评议已记录",
    "invite_expert": "已邀请专家",
    "expert_opinion": "专家意见已记录",
    "mark_hard": "已列为疑难积案",
    # 签发 (server.cases.sign_off)
    "drafted": "已提交，等待承办单位领导签发",
    "sign_off": "已签发，书面意见已发出",
    "return_draft": "已退回修改",
}
VERDICTS = {"satisfied": "满意", "unsatisfied": "不满意"}


def action_label(name: str) -> str:
    t = TRANSITIONS.get(name)
    return t.label_zh if t is not None else OTHER_ACTIONS[name]


@dataclass
class FormState:
    """An action form sent back: what was typed and the messages (field → zh-CN)."""

    action: str
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: A message for the whole form (or the page when the form is gone: stale state).
    message: str = ""


def deadline_clock_text(d: DeadlineView, now: datetime) -> tuple[str, str, int]:
    """(colour, state, days) of a deadline's clock: green/yellow/red while it runs ("left":
    days left; "overdue": days over), grey when paused ("paused") or finished ("")."""
    if d.status in ("met", "cancelled", "lapsed"):
        return "grey", "", 0
    if d.status == "paused":
        return "grey", "paused", 0
    days = (d.due_at - now).total_seconds() / 86400
    if days < 0 or d.status == "overdue":
        return "red", "overdue", max(1, math.ceil(-days))
    colour = {"yellow": "yellow", "red": "red"}.get(d.warn_level, "green")
    return colour, "left", max(0, math.floor(days))


def event_words(e: TimelineEvent, dept_names: dict[int, str]) -> list[str]:
    """The details of a timeline entry in words (department names, not ids)."""
    p = e.payload or {}
    out: list[str] = []
    if "target_department_id" in p:
        out.append("转送至" + dept_names.get(int(p["target_department_id"]), "（已撤销的单位）"))
    if e.type == "handler_added" and p.get("department_id"):
        out.append("协办单位：" + dept_names.get(int(p["department_id"]), ""))
    if p.get("legal_route"):
        out.append("途径：" + LEGAL_ROUTES.get(str(p["legal_route"]), str(p["legal_route"])))
    if p.get("room"):
        out.append("移交：" + str(p["room"]))
    if e.type == "deadline_extended" and p.get("days"):
        out.append(f"延长{p['days']}日")
    if e.type == "session_outcome" and p.get("outcome"):
        outcome = str(p["outcome"])
        out.append("结果：" + SESSION_OUTCOME_LABELS.get(outcome, outcome))
    if p.get("child_case_no"):
        out.append("新事项：" + str(p["child_case_no"]))
    if e.type == "escalated" and p.get("level"):
        out.append(f"第{p['level']}级")
    if e.type == "deadline_warning" and p.get("level") in ("yellow", "red"):
        out.append("黄色预警" if p["level"] == "yellow" else "红色预警")
    if e.type == "supervision_response" and p.get("response"):
        out.append(str(p["response"]))
    if e.type == "supervision_verdict":
        out.append("满意" if p.get("satisfied") else "不满意")
        if p.get("comment"):
            out.append(str(p["comment"]))
    if e.type == "expert_opinion" and p.get("opinion"):
        out.append(str(p["opinion"]))
    if e.type == "batch_assigned":
        out.append(f"{p.get('title', '')}，责任领导：{p.get('leader', '')}")
    for key in ("reason", "note"):
        if p.get(key):
            out.append(str(p[key]))
    return out


async def render_case_page(
    request: web.Request,
    staff: StaffIdentity,
    case_id: int,
    *,
    form: FormState | None = None,
    status: int = 200,
) -> web.Response:
    pii = request.app[keys.pii]
    async with request.app[keys.db].begin() as session:
        detail = await queries.case_detail(
            session, staff=staff, case_id=case_id, ip=client_ip(request), pii=pii
        )
        petitioner = await queries.case_petitioner(
            session, staff=staff, case_id=case_id, pii=pii, ip=client_ip(request)
        )
        events = await queries.timeline(session, staff=staff, case_id=case_id)
        case_agreements = await agreements.case_agreements(session, case_id=case_id)
        sessions = await session_records.records_for_case(
            session, case_id=case_id, viewer=staff, ip=client_ip(request)
        )
        matters = dict(await active_matter_types(session))
        targets = (
            await queries.transfer_targets(session, staff=staff, case_id=case_id)
            if {"transfer", "add_handler"} & {*detail.transitions, *detail.actions}
            else []
        )
        experts = (
            await org.active_staff_with_roles(session, roles=[Role.expert])
            if "invite_expert" in detail.actions
            else []
        )
        staff_ids = {e.actor_id for e in events if e.actor_id is not None}
        staff_ids |= {h.staff_id for h in detail.handlers if h.staff_id is not None}
        if detail.first_receiver_id is not None:
            staff_ids.add(detail.first_receiver_id)
        staff_names = await org.staff_names(session, staff_ids=staff_ids)
        dept_ids = {h.department_id for h in detail.handlers if h.department_id is not None}
        dept_ids |= {
            int(e.payload["target_department_id"])
            for e in events
            if (e.payload or {}).get("target_department_id")
        }
        if detail.lead_dept_id is not None:
            dept_ids.add(detail.lead_dept_id)
        dept_names = await org.department_names(session, department_ids=dept_ids)
        site_name = await org.site_name(session, site_id=detail.site_id)
        draft = await sign_off.draft_view(session, staff=staff, case_id=case_id)
        if draft is not None and draft["drafted_by"] is not None:
            staff_names |= await org.staff_names(session, staff_ids={int(str(draft["drafted_by"]))})
    return page(
        request,
        "cases/detail.html",
        {
            "case": detail,
            "events": events,
            "labels": STATE_LABELS,
            "agreements": case_agreements,
            "sessions": sessions,
            "masked_id_number": masked_id_number,
            "notices": case_notices.notice_links(detail),  # written notices (PDF)
            **case_context(
                detail,
                events,
                petitioner=petitioner,
                matters=matters,
                staff_names=staff_names,
                dept_names=dept_names,
                site_name=site_name,
                targets=targets,
                experts=experts,
                form=form,
                done=request.query.get("done", ""),
                draft=draft,
            ),
        },
        status=status,
    )


def case_context(
    detail: CaseDetail,
    events: list[TimelineEvent],
    *,
    petitioner: Any,
    matters: dict[str, str],
    staff_names: dict[int, str],
    dept_names: dict[int, str],
    site_name: str,
    targets: list[tuple[int, str]],
    form: FormState | None,
    done: str,
    draft: dict[str, Any] | None = None,
    experts: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The template context beyond the case itself (separate so that template tests can build
    it from plain values)."""
    now = utcnow()
    offered = [n for n in (*detail.transitions, *detail.actions) if n in FORM_FIELDS]
    open_kinds = [(d.kind, d.label_zh) for d in detail.deadlines if d.status in ("open", "overdue")]
    paused_kinds = [(d.kind, d.label_zh) for d in detail.deadlines if d.status == "paused"]
    if not open_kinds:
        offered = [n for n in offered if n not in ("extend", "pause")]
    if not paused_kinds:
        offered = [n for n in offered if n != "resume"]
    lead = [
        h for h in detail.handlers if h.active and h.role == "lead" and h.department_id is not None
    ]
    assisting = [
        h
        for h in detail.handlers
        if h.active and h.role not in ("lead", "legal_route") and h.department_id is not None
    ]
    redirect = next((e for e in reversed(events) if e.type == "redirect_legal"), None)
    handover = None
    if redirect is not None:  # 导入法定途径: which procedure, which room received it, why
        p = redirect.payload or {}
        route = str(p.get("legal_route", ""))
        handover = {
            "route": LEGAL_ROUTES.get(route, route),
            "room": str(p.get("room", "")),
            "reason": str(p.get("reason", "")),
            "at": redirect.at,
        }
    return {
        "petitioner": petitioner,
        "matter_label": matters.get(detail.matter_type or "", detail.matter_type or ""),
        "channel_label": CHANNEL_LABELS.get(detail.channel.value, detail.channel.value),
        "grade_label": GRADE_LABELS.get(detail.grade, detail.grade),
        "site_name": site_name,
        "lead_dept": dept_names.get(detail.lead_dept_id or 0, ""),
        "lead_handlers": [staff_names[h.staff_id] for h in lead if h.staff_id in staff_names],
        "assisting": sorted({dept_names.get(h.department_id or 0, "") for h in assisting} - {""}),
        "first_receiver": staff_names.get(detail.first_receiver_id or 0, ""),
        "staff_names": staff_names,
        "dept_names": dept_names,
        # 专家意见: each invited expert's latest written opinion (the case is already visible)
        "expert_opinions": [
            (staff_names.get(h.staff_id or 0, ""), h.reply)
            for h in detail.handlers
            if h.role == "expert" and h.reply
        ],
        "handover": handover,
        "notes": [e for e in events if e.type == "accept" and (e.payload or {}).get("note")],
        "event_words": lambda e: event_words(e, dept_names),
        "clock": lambda d: deadline_clock_text(d, now),
        "chain": CHAIN,
        "chain_current": detail.link,
        "actions": [
            {
                "name": n,
                "label": action_label(n),
                "fields": FORM_FIELDS[n],
                "confirm": n in IRREVERSIBLE,
            }
            for n in offered
        ],
        "choices": {
            "legal_route": list(LEGAL_ROUTES.items()),
            "transfer_target": targets,
            "deadline_open": open_kinds,
            "deadline_paused": paused_kinds,
            "handler_role": list(HANDLER_ROLES.items()),
            "expert": experts or [],
            "supervision_type": list(SUPERVISION_TYPES.items()),
            "verdict": list(VERDICTS.items()),
        },
        "form": form or FormState(action=""),
        "draft": draft,  # 签发: a draft reply/refusal awaiting the leader (sign_off.draft_view)
        "done": DONE_MESSAGES.get(done, ""),
    }


def masked_id_number(value: str | None) -> str:
    """An ID number on the page shows region and last four only (330106********123X); the
    full number is in the audited API answer."""
    return f"{value[:6]}{'*' * (len(value) - 10)}{value[-4:]}" if value else ""

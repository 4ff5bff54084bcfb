"""No page shows a raw code (issue #5): every state, status, role and event a page prints goes
through `web.labels` and the catalogue. The pages are rendered by the app's own templates and
`page()` with every value of each code, in zh-CN (no code may show as visible text, the label
must) and in English (the label's translation must show)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
from babel.messages.pofile import read_po

from scheduling.models import BookingStatus, JobKind, JobStatus
from server.app import create_app
from server.auth.permissions import StaffIdentity
from server.cases.models import CaseState, Channel
from server.cases.statemachine import TRANSITIONS
from server.cases.worklist import MyWork
from server.http import keys
from server.org.models import Role
from server.queue.service import CallState, QueuePolicy
from server.sessions.models import ParticipantRole, SessionState
from tests.conftest import make_settings
from web.labels import (
    CASE_EVENT_LABELS,
    DEADLINE_STATUS_LABELS,
    ENUMS,
    INVITE_STATUS_LABELS,
    LABELS,
    label,
)
from web.render import page
from web.views.case_file import case_context

ROOT = Path(__file__).resolve().parents[3]
AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
STAFF = StaffIdentity(
    staff_id=1,
    username="supervisor01",
    display_name="督导员",
    site_id=1,
    department_id=None,
    roles=frozenset({Role.centre_supervisor}),
)


def case_page_context(case: Any) -> dict[str, Any]:
    """What the case page adds to the case (web/views/case_file.py), for a plain case."""
    fields = vars(case) | {
        "deadlines": [SimpleNamespace(**{"kind": "handling", **vars(d)}) for d in case.deadlines]
    }
    full = SimpleNamespace(
        id=1, state=CaseState.handling, channel=Channel.window, grade="simple",
        matter_type=None, lead_dept_id=None, first_receiver_id=None, site_id=1,
        handlers=[], transitions=[], actions=[], **fields,
    )  # fmt: skip
    return {
        "case": full,
        **case_context(
            full,  # type: ignore[arg-type]
            [],
            petitioner=None,
            matters={},
            staff_names={},
            dept_names={},
            site_name="",
            targets=[],
            form=None,
            done="",
        ),
    }


def _catalogue() -> dict[str, str]:
    with (ROOT / "web/locale/en/LC_MESSAGES/messages.po").open("rb") as fh:
        catalog = read_po(fh, locale="en")
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


ENGLISH = _catalogue()


def test_every_code_has_a_label_with_english() -> None:
    for table, codes in ENUMS.items():
        missing = [c.value for c in codes if c.value not in LABELS[table]]
        assert not missing, (table, missing)
    assert set(CallState) <= set(LABELS["call_state"])
    assert set(TRANSITIONS) | {s.value for s in CaseState} <= set(CASE_EVENT_LABELS)
    untranslated = sorted(
        {zh for table in LABELS.values() for zh in table.values() if zh not in ENGLISH}
    )
    assert not untranslated, untranslated


class _Text(HTMLParser):
    """The text a person sees: no tags, attributes, scripts or styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "template"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


async def test_the_call_page_polls_a_translated_state(app_client: Any) -> None:
    """call.js writes `state_label` as it is: the JSON carries it in the page's language."""
    from tests.conftest import signed_in

    token = await signed_in(app_client, "community_agent")
    resp = await app_client.post(
        "/call",
        data={"_csrf": token, "matter_code": "wage_arrears", "resident_name": "王五",
              "resident_phone": "13912345678"},
        allow_redirects=False,
    )  # fmt: skip
    entry = resp.headers["Location"].rsplit("/", 1)[1]
    zh = await (await app_client.get(f"/api/queue/calls/{entry}")).json()
    en = await (await app_client.get(f"/api/queue/calls/{entry}?lang=en")).json()
    assert (zh["state"], zh["state_label"], en["state_label"]) == ("waiting", "等待接听", "Waiting")


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.parts)


@pytest.fixture
async def app(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[web.Application]:
    application = create_app(make_settings(tmp_path, demo_sqlite_url))
    server = TestServer(application)
    await server.start_server()  # loads the catalogues
    try:
        yield application
    finally:
        await server.close()


def render(app: web.Application, template: str, context: dict[str, Any], lang: str) -> str:
    request = make_mocked_request("GET", f"/?lang={lang}", app=app)
    request[keys.staff] = STAFF
    response = page(request, template, context)
    assert response.text is not None
    return visible_text(response.text)


def _ns(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(**kw)


def _fmt(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else "—"


def _pages() -> Iterator[tuple[str, str, dict[str, Any], list[tuple[str, str]]]]:
    """(page, template, context, [(table, code) shown on it])."""
    sessions = [_ns(id=i, room_id=f"r-{i}", title=f"会话{i}", state=s, site_name="拱墅区信访超市",
                    planned_start=None)
                for i, s in enumerate(SessionState, 1)]  # fmt: skip
    cases = [_ns(id=i, case_no=f"330105-2026-{i:06d}", summary="诉求", state=s)
             for i, s in enumerate(CaseState, 1)]  # fmt: skip
    yield (
        "home",
        "home.html",
        {
            "tiles": [],
            "role_labels": [],
            "my_cases": cases,
            "queue_waiting": [],
            "my_calls": [],
            "placed_calls": [],
            "my_sessions": sessions,
            "supervisor": True,
            "live_sessions": sessions,
            "tile_counts": {},
            "work": MyWork(),
            "my_batches": [],
            "shown": 10,
            "mark": lambda m: ("grey", "—", 0),
            "case_viewer": True,
            "judicial": [],
            "judicial_form": {},
            "judicial_done": "",
        },
        [("session_state", s.value) for s in SessionState]
        + [("case_state", s.value) for s in CaseState],
    )
    yield (
        "sessions",
        "sessions.html",
        {"rows": sessions, "can_create": False, "can_play": True},
        [("session_state", s.value) for s in SessionState],
    )
    participants = [
        _ns(display_name=f"参会人{i}", role=role, invite_status=status, joined_at=AT,
            left_at=None, no_show=False)
        for i, (role, status) in enumerate(
            zip(list(ParticipantRole) * 2, INVITE_STATUS_LABELS, strict=False), 1)
    ]  # fmt: skip
    record = _ns(
        title="邻里纠纷调解",
        session_id=7,
        planned_start=AT,
        planned_end=AT,
        actual_start=None,
        actual_end=None,
        ical_sequence=2,
        participants=participants,
        bookings=[
            _ns(id=i, start=AT, end=AT, status=s, previous_id=None, reason="")
            for i, s in enumerate(BookingStatus, 1)
        ],
        jobs=[
            _ns(kind=k, due_at=AT, status=s, attempts=1, last_error="")
            for k in JobKind
            for s in JobStatus
        ],
    )
    for state in SessionState:
        yield (
            f"scheduling session ({state.value})",
            "scheduling/session.html",
            {"r": record, "fmt": _fmt, "state": label("session_state", state)},
            [("session_state", state.value)]
            + [("participant_role", r.value) for r in ParticipantRole]
            + [("invite_status", s) for s in INVITE_STATUS_LABELS]
            + [("booking_status", s.value) for s in BookingStatus]
            + [("job_kind", k.value) for k in JobKind]
            + [("job_status", s.value) for s in JobStatus],
        )
    case = _ns(
        case_no="330105-2026-000001",
        state_label="办理中",
        link="调",
        confidential=False,
        non_accept_proposed=False,
        summary="诉求",
        reply_text="",
        collective=False,
        headcount=None,
        representatives=[],
        deadlines=[
            _ns(label_zh="办理期限", due_at=AT, status=s, warn_level="none", extension_days=0)
            for s in DEADLINE_STATUS_LABELS
        ],
    )
    yield (
        "case detail",
        "cases/detail.html",
        {
            **case_page_context(case),
            "events": [_ns(at=AT, type=t, payload={}, actor_id=None) for t in CASE_EVENT_LABELS],
            "labels": LABELS["case_state"],
            "agreements": [],
        },
        [("deadline_status", s) for s in DEADLINE_STATUS_LABELS]
        + [("case_event", t) for t in CASE_EVENT_LABELS],
    )
    for call_state in CallState:
        entry = _ns(id=3, state=call_state, matter_name="劳资纠纷", resident_name="王五",
                    room_id="r-call")  # fmt: skip
        yield (
            f"call page ({call_state.value})",
            "call_live.html",
            {"entry": entry, "callback_error": "", "policy": QueuePolicy()},
            [("call_state", call_state.value)],
        )

    for case_state in CaseState:
        yield (
            f"follow ({case_state.value})",
            "follow.html",
            {
                "case_no": "330105-2026-000001",
                "registered_at": AT,
                "state": case_state.value,
                "state_label": label("case_state_public", case_state),
            },
            [("case_state_public", case_state.value)],
        )


PAGES = list(_pages())


@pytest.mark.parametrize(("name", "template", "context", "shown"), PAGES, ids=[p[0] for p in PAGES])
async def test_pages_show_labels_never_codes(
    app: web.Application,
    name: str,
    template: str,
    context: dict[str, Any],
    shown: list[tuple[str, str]],
) -> None:
    zh = render(app, template, context, "zh-CN")
    words = set(re.findall(r"[A-Za-z_]+", zh))
    raw = sorted({code for _table, code in shown if code in words})
    assert not raw, f"{name} shows raw codes {raw}"
    for table, code in shown:
        assert label(table, code) in zh, (name, table, code)
    en = render(app, template, context, "en")
    for table, code in shown:
        assert ENGLISH[label(table, code)] in en, (name, table, code)

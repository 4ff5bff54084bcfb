"""Every page shows times in the district's zone (issue #15): rendered by the app's own
templates and `page()` with stored (UTC) times just before midnight UTC, each page shows the
Beijing date and time and never a "UTC" label or the UTC date."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from scheduling.models import BookingStatus, JobKind, JobStatus
from server.app import create_app
from server.cases.labels import STATE_LABELS
from server.cases.models import CaseState
from server.sessions.models import ParticipantRole
from tests.component.web.test_status_labels import case_page_context, render
from tests.conftest import make_settings
from web.views.case_list import list_context

TEMPLATES = Path(__file__).resolve().parents[3] / "web" / "templates"
#: Stored instant: 23:30 UTC on 31 March = 07:30 on 1 April in Beijing.
AT = datetime(2027, 3, 31, 23, 30, tzinfo=UTC)
#: A deadline ending at local midnight starting 1 May (16:00 UTC on 30 April).
DUE = datetime(2027, 4, 30, 16, 0, tzinfo=UTC)
LOCAL = "2027-04-01 07:30"


def _ns(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(**kw)


def _pages() -> Iterator[tuple[str, str, dict[str, Any], list[str]]]:
    """(page, template, context, texts the page must show)."""
    yield (
        "case list",
        "cases/list.html",
        list_context(
            items=[
                _ns(id=1, case_no="330105-2027-000001", confidential=False, lead_dept_id=None,
                    state=CaseState.registered, summary="诉求", registered_at=AT)
            ],
            total=1,
        ),
        [LOCAL],
    )  # fmt: skip
    case = _ns(
        case_no="330105-2027-000001", state_label="办理中", link="调", confidential=False,
        non_accept_proposed=False, summary="诉求", reply_text="", collective=False,
        headcount=None, representatives=[],
        deadlines=[_ns(label_zh="办理期限", due_at=DUE, status="open", warn_level="none",
                       extension_days=0)],
    )  # fmt: skip
    yield (
        "case page (deadlines, timeline)",
        "cases/detail.html",
        {
            **case_page_context(case),
            "events": [_ns(at=AT, type="registered", payload={}, actor_id=None)],
            "labels": STATE_LABELS,
            "agreements": [],
        },
        [LOCAL, "2027-05-01 00:00"],
    )
    yield (
        "progress (follow) page",
        "follow.html",
        {"case_no": "330105-2027-000001", "registered_at": AT, "state": "registered",
         "state_label": "已登记"},
        [LOCAL],
    )  # fmt: skip
    yield (
        "audit log",
        "audit.html",
        {
            "rows": [_ns(id=1, at=AT, actor_name="王建国", actor_username="window01",
                         action="case.view", action_label="查看信访事项", target="信访事项 1",
                         detail="", ip="10.0.0.1")],
            "typed": {"actor": "", "action": "", "object_type": "", "target": "",
                      "since": "", "until": "", "before": ""},
            "errors": {}, "query": None, "chain": None, "more": False, "paged": False,
            "actions": [], "object_types": [],
        },
        [LOCAL + ":00"],
    )  # fmt: skip
    signatures = [
        _ns(signer="party:0", signer_name="赵一", method="typed", data="赵一", signed_at=AT,
            via="own_link", id_method=None, id_last4=None)
    ]  # fmt: skip
    yield (
        "agreement",
        "cases/agreement.html",
        {
            "a": _ns(id=5, case_id=1, status="effective",
                     parties=[{"name": "赵一", "role": "applicant"}], facts="漏水", terms=[],
                     effective_at=AT, judicial_due_at=DUE, judicial_requested_at=None,
                     judicial_result=None, signatures=signatures,
                     missing_signers=[]),
            "case_no": "330105-2027-000001", "roles": {}, "signers": [], "can_sign": False,
            "rows": [], "sent_party": None, "via_labels": {"own_link": "本人链接签署"},
            "id_labels": {}, "id_methods": [], "link_form": None, "width": 600, "height": 200,
        },
        [LOCAL, "本协议自 2027-04-01 起生效", "在 2027-04-30 前"],
    )  # fmt: skip
    yield (
        "recordings",
        "recordings.html",
        {
            "call": _ns(id=7, title="调解", room_id="r-7"),
            "items": [_ns(id=1, display_name="王某", kind="video", started_at=AT, duration_s=60.0,
                          size_bytes=1048576, interrupted=False, sha256="ab" * 32,
                          sha256_short="abab", offset_s=0.0)],
            "reason": "", "error": False, "grant": None, "total_s": 60.0, "reason_max": 200,
        },
        [LOCAL + ":00"],
    )  # fmt: skip
    record = _ns(
        title="邻里纠纷调解", session_id=7, planned_start=AT, planned_end=AT, actual_start=AT,
        actual_end=None, ical_sequence=0,
        participants=[_ns(display_name="王某", role=ParticipantRole.party, invite_status="sent",
                          joined_at=AT, left_at=None, no_show=False)],
        bookings=[_ns(id=1, start=AT, end=AT, status=BookingStatus.confirmed, previous_id=None,
                      reason="")],
        jobs=[_ns(kind=JobKind.reminder, due_at=AT, status=JobStatus.pending, attempts=0,
                  last_error="")],
    )  # fmt: skip
    yield (
        "scheduling session",
        "scheduling/session.html",
        {"r": record, "state": "已预约"},
        [LOCAL],
    )


PAGES = list(_pages())


@pytest.fixture
async def app(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[web.Application]:
    application = create_app(make_settings(tmp_path, demo_sqlite_url))
    server = TestServer(application)
    await server.start_server()  # loads the catalogues
    try:
        yield application
    finally:
        await server.close()


@pytest.mark.parametrize(("name", "template", "context", "shown"), PAGES, ids=[p[0] for p in PAGES])
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
async def test_pages_show_the_district_clock(
    app: web.Application,
    name: str,
    template: str,
    context: dict[str, Any],
    shown: list[str],
    lang: str,
) -> None:
    text = render(app, template, context, lang)
    assert "UTC" not in text, name
    assert "2027-03-31" not in text, f"{name} shows the UTC date"
    assert "23:30" not in text, f"{name} shows the UTC time"
    if lang == "zh-CN":
        for expected in shown:
            assert expected in text, (name, expected)
    else:
        assert LOCAL in text, name


async def test_the_configured_zone_is_used(tmp_path: Path, demo_sqlite_url: str) -> None:
    application = create_app(make_settings(tmp_path, demo_sqlite_url, timezone="Asia/Urumqi"))
    server = TestServer(application)
    await server.start_server()
    try:
        text = render(
            application,
            "follow.html",
            {"case_no": "1", "registered_at": AT, "state": "registered", "state_label": "已登记"},
            "zh-CN",
        )
    finally:
        await server.close()
    assert "2027-04-01 05:30" in text  # UTC+6


def test_no_template_formats_a_time_itself() -> None:
    """Templates show times only through the `local` filter: no strftime, no UTC label."""
    offenders = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        source = path.read_text()
        # isoformat() only in machine-readable attributes (<time datetime="…">)
        source = re.sub(r'datetime="\{\{ [\w.]+\.isoformat\(\) \}\}"', "", source)
        if "UTC" in source or ".strftime(" in source or ".isoformat(" in source:
            offenders.append(path.name)
    assert not offenders, offenders


async def test_the_browser_is_told_the_district_zone(app_client: TestClient[Any, Any]) -> None:
    """room.js and desk.js format live times with `timeZone` from <html data-tz>."""
    html = await (await app_client.get("/login")).text()
    assert '<html lang="zh-CN" data-tz="Asia/Shanghai">' in html

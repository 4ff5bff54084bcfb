"""Every session belongs to its case file (issue #16 items 1-3, issue #17 finding 3), through
the whole app on the demo district: the session record of a case (participants, attendance,
consent, recordings, chat, outcome) on the API, the case page and its own page; the case
timeline; the case's visibility on every session path (a confidential accusation's sessions
are a 404 for the accused unit); playback by the session's own mediator and host; bookings
by case number; join links for staff to hand over."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.auth.service import identity_of
from server.cases import intake
from server.cases.deadline_clock import DeadlineClock
from server.cases.models import CaseEvent, Channel
from server.cases.schemas import IntakeRequest, PetitionerInput
from server.http import keys
from server.kernel.db import utcnow
from server.org.models import Department, Site, SiteLevel, Staff
from server.sessions import service as sessions
from server.sessions.schemas import (
    ChatRecord,
    EventRecord,
    RecordedFile,
    RecordingRecord,
    SessionKind,
    SessionOutcome,
)
from tests.conftest import sign_in, signed_in

Client = TestClient[Any, Any]
T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # 09:00 in Hangzhou
PERSON = PetitionerInput(name="王小明", phone="13812345678")


async def _staff(client: Client, username: str) -> Staff:
    async with client.app[keys.db]() as s:
        row: Staff | None = await s.scalar(select(Staff).where(Staff.username == username))
        assert row is not None
        return row


async def _register(client: Client, *, accusation: bool = False) -> tuple[int, str]:
    """A case registered at the centre by window01 (an accusation of the urban bureau, or a
    wage claim); returns (id, case number)."""
    async with client.app[keys.db].begin() as s:
        staff = await s.scalar(select(Staff).where(Staff.username == "window01"))
        centre = await s.scalar(select(Site.id).where(Site.level == SiteLevel.district))
        urban = await s.scalar(select(Department.id).where(Department.code == "urban"))
        assert staff is not None and centre is not None
        request = IntakeRequest(
            channel=Channel.window,
            site_id=centre,
            summary="检举城管执法人员收受好处" if accusation else "某公司拖欠三个月工资未发放",
            matter_type="official_misconduct" if accusation else "wage_arrears",
            petitioner=PERSON,
            attributes={"accused": "区城管局某中队"}
            if accusation
            else {"employer": "某公司", "months": 3},
            accused_department_id=urban if accusation else None,
        )
        result = await intake.intake(
            s,
            pii=client.app[keys.pii],
            staff=identity_of(staff),
            request=request,
            now=utcnow(),
            deadlines=DeadlineClock(),
        )
        return result.case.id, result.case.case_no


GOOD = {"seconds": 1740.0, "median_kbps": 1800, "min_kbps": 900, "loss_pct": 0.2,
        "max_loss_pct": 1.0, "video_paused_s": 0.0, "grade": "good"}  # fmt: skip
POOR = {"seconds": 720.0, "median_kbps": 160, "min_kbps": 40, "loss_pct": 6.5,
        "max_loss_pct": 30.0, "video_paused_s": 300.0, "grade": "poor"}  # fmt: skip


async def _held_session(client: Client, case_id: int, *, host: str = "window01") -> int:
    """A mediation of the case, held as signaling records it: the host and mediator01 and a
    guest join, answer the recording question, chat, are recorded; it ends with an outcome."""
    host_row, mediator = await _staff(client, host), await _staff(client, "mediator01")
    db = client.app[keys.db]
    async with db.begin() as s:
        view = await sessions.create_session(
            s,
            kind=SessionKind.mediation,
            title="工资纠纷调解",
            case_id=case_id,
            host_site_id=host_row.site_id,
            created_by_id=host_row.id,
            recording_allowed=True,
            now=T0,
        )
    sid = view.id

    def ev(type_: str, minutes: float, **payload: Any) -> EventRecord:
        return EventRecord(sid, type_, "system", payload, T0 + timedelta(minutes=minutes))

    staff_host = f"staff:{host_row.id}"
    staff_med = f"staff:{mediator.id}"
    guest = "guest:jti-zhang"
    records: list[EventRecord | ChatRecord | RecordingRecord] = [
        ev("participant.joined", 0, identity=staff_host, role="host", display_name="窗口甲"),
        ev("participant.joined", 1, identity=staff_med, role="mediator", display_name="调解员甲"),
        ev("participant.joined", 2, identity=guest, role="party", display_name="张三"),
        ev("session.started", 2),
        ev("recording.consent", 3, identity=staff_med, role="mediator"),
        ev("recording.consent", 3.5, identity=guest, role="party"),
        ev("recording.refused", 4, identity=staff_host, role="host"),
        ChatRecord(sid, guest, "张三", "我同意调解方案", T0 + timedelta(minutes=20)),
        RecordingRecord(
            sid,
            files=(
                RecordedFile(guest, "video", f"s{sid}/g.webm", "ab" * 32, 100, T0, 1500.0),
                RecordedFile(staff_med, "video", f"s{sid}/m.webm", "cd" * 32, 100, T0, 1500.0),
            ),
        ),
        ev("participant.left", 30, identity=guest),
        # the SFU's summaries of their links (media/quality.py), the guest's over a reconnect
        ev("participant.quality", 10, identity=guest, quality=dict(POOR, seconds=480.0)),
        ev("participant.quality", 30, identity=guest, quality=POOR),
        ev("participant.quality", 31, identity=staff_med, quality=GOOD),
        ev("participant.left", 31, identity=staff_med),
        ev("participant.left", 32, identity=staff_host),
    ]
    async with db.begin() as s:
        await sessions.write_records(s, records, deadlines=DeadlineClock())
        await sessions.record_outcome(
            s, session_id=sid, outcome=SessionOutcome.agreement, now=T0 + timedelta(minutes=31)
        )
        await sessions.write_records(s, [ev("session.ended", 32)], deadlines=DeadlineClock())
    return sid


async def _audits(client: Client, action: str) -> list[AuditEntry]:
    async with client.app[keys.db]() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# --- the session record ---------------------------------------------------------------------


async def test_the_case_api_returns_its_sessions_with_attendance_consent_and_recordings(
    app_client: Client,
) -> None:
    case_id, case_no = await _register(app_client)
    sid = await _held_session(app_client, case_id)
    await signed_in(app_client, "window_officer")
    resp = await app_client.get(f"/api/cases/{case_id}/sessions")
    assert resp.status == 200, await resp.text()
    [rec] = await resp.json()
    assert (rec["session_id"], rec["case_id"], rec["case_no"]) == (sid, case_id, case_no)
    assert (rec["kind"], rec["state"], rec["outcome"]) == ("mediation", "ended", "agreement")
    assert rec["actual_start"].startswith("2026-11-30T01:02")
    assert rec["actual_end"].startswith("2026-11-30T01:32")
    assert rec["duration_s"] == 30 * 60
    assert rec["host_names"] == ["窗口甲"] and rec["mediator_names"] == ["调解员甲"]
    people = {p["display_name"]: p for p in rec["participants"]}
    assert {n: (p["role"], p["identity_kind"]) for n, p in people.items()} == {
        "窗口甲": ("host", "staff"),
        "调解员甲": ("mediator", "staff"),
        "张三": ("party", "guest"),
    }
    zhang = people["张三"]
    assert zhang["joined_at"].startswith("2026-11-30T01:02")
    assert zhang["left_at"].startswith("2026-11-30T01:30")
    assert zhang["consent"] == "given" and zhang["recording_consent_at"].startswith(
        "2026-11-30T01:03:30"
    )
    assert people["窗口甲"]["consent"] == "refused"
    assert zhang["quality"] == {**POOR, "seconds": 1200.0, "video_paused_s": 600.0}
    assert people["调解员甲"]["quality"]["grade"] == "good"
    assert people["窗口甲"]["quality"] is None  # no media summary arrived
    assert people["窗口甲"]["recording_refused_at"].startswith("2026-11-30T01:04")
    assert [(r["display_name"], r["sha256"]) for r in rec["recordings"]] == [
        ("张三", "ab" * 32),
        ("调解员甲", "cd" * 32),
    ]
    # window01 hosted it: the recordings are hers to play back
    assert rec["recordings"][0]["playback_url"] == f"/sessions/{sid}/recordings"
    assert rec["chat_count"] == 1 and rec["chat"] is None
    assert rec["record_url"] == f"/sessions/{sid}/record"
    views = await _audits(app_client, "case.sessions_view")
    assert [v.object_id for v in views] == [str(case_id)]


async def test_the_session_page_has_the_transcript_and_the_case_page_the_session(
    app_client: Client,
) -> None:
    case_id, case_no = await _register(app_client)
    sid = await _held_session(app_client, case_id)
    await signed_in(app_client, "window_officer")
    page = await app_client.get(f"/sessions/{sid}/record")
    html = await page.text()
    assert page.status == 200, html
    assert "我同意调解方案" in html and case_no in html and "达成调解协议" in html
    assert [a.object_id for a in await _audits(app_client, "session.record_view")] == [str(sid)]

    case_page = await app_client.get(f"/cases/{case_id}")
    html = await case_page.text()
    assert case_page.status == 200, html
    section = html[html.index('id="case-sessions"') : html.index('id="timeline"')]
    for text in ("视频调解", "张三", "调解员甲", "同意录音录像", "拒绝录音录像", "30 分钟",
                 "达成调解协议", f"/sessions/{sid}/record", f"/sessions/{sid}/recordings",
                 "2026-11-30 09:02", "网络较差", "带宽约 160 kbps", "丢包 6.5%",
                 "视频暂停 600 秒", "网络良好"):  # fmt: skip
        assert text in section, text
    timeline = html[html.index('id="timeline"') :]
    assert "视频会话开始" in timeline and "视频会话结束" in timeline
    assert "视频会话结果已记录" in timeline


async def test_the_case_timeline_says_when_its_session_started_ended_and_its_outcome(
    app_client: Client,
) -> None:
    case_id, _ = await _register(app_client)
    sid = await _held_session(app_client, case_id)
    async with app_client.app[keys.db]() as s:
        events = list(
            await s.scalars(
                select(CaseEvent)
                .where(CaseEvent.case_id == case_id, CaseEvent.type.like("session_%"))
                .order_by(CaseEvent.id)
            )
        )
    assert [(e.type, e.at, e.payload.get("session_id")) for e in events] == [
        ("session_started", T0 + timedelta(minutes=2), sid),
        ("session_outcome", T0 + timedelta(minutes=31), sid),
        ("session_ended", T0 + timedelta(minutes=32), sid),
    ]
    assert events[1].payload["outcome"] == "agreement"
    await signed_in(app_client, "window_officer")
    page = await (await app_client.get(f"/cases/{case_id}")).text()
    assert "结果：达成调解协议" in page  # the timeline says which outcome


async def test_a_reception_filed_under_its_case_after_it_started_says_so_on_the_timeline(
    app_client: Client,
) -> None:
    """The desk creates the case while the call runs: the start comes before the case."""
    case_id, _ = await _register(app_client)
    async with app_client.app[keys.db].begin() as s:
        view = await sessions.create_session(
            s, kind=SessionKind.reception, title="远程视频接访", case_id=None,
            host_site_id=None, created_by_id=None, now=T0,
        )  # fmt: skip
        await sessions.go_live(
            s, session_id=view.id, now=T0 + timedelta(minutes=1), deadlines=DeadlineClock()
        )
        await sessions.attach_case(
            s, session_id=view.id, case_id=case_id, deadlines=DeadlineClock()
        )
        await sessions.end_from_room(s, session_id=view.id, now=T0 + timedelta(minutes=9))
    async with app_client.app[keys.db]() as s:
        events = await s.execute(
            select(CaseEvent.type, CaseEvent.at)
            .where(CaseEvent.case_id == case_id, CaseEvent.type.like("session_%"))
            .order_by(CaseEvent.id)
        )
        assert list(events) == [
            ("session_started", T0 + timedelta(minutes=1)),
            ("session_ended", T0 + timedelta(minutes=9)),
        ]


# --- confidentiality ------------------------------------------------------------------------


async def test_the_accused_unit_gets_404_on_every_session_path_of_an_accusation(
    app_client: Client,
) -> None:
    case_id, _ = await _register(app_client, accusation=True)
    sid = await _held_session(app_client, case_id, host="supervisor01")
    await sign_in(app_client, "handler03")  # 城管 (urban), the accused unit
    for url in (
        f"/api/cases/{case_id}/sessions",
        f"/api/scheduling/sessions/{sid}",
        f"/api/scheduling/sessions/{sid}/invite.ics",
        f"/sessions/{sid}/record",
        f"/sessions/{sid}/recordings",
    ):
        resp = await app_client.get(url, headers={"Accept": "application/json"})
        body = await resp.text()
        assert resp.status == 404, (url, resp.status)
        assert "工资纠纷调解" not in body and "张三" not in body, url
    # the supervisor (who may see it) gets the record
    app_client.session.cookie_jar.clear()
    await signed_in(app_client, "centre_supervisor")
    resp = await app_client.get(f"/api/scheduling/sessions/{sid}")
    assert resp.status == 200 and "张三" in await resp.text()


# --- playback by the session's own mediator and host ----------------------------------------


async def test_the_sessions_own_mediator_and_host_may_play_its_recordings(
    app_client: Client,
) -> None:
    case_id, _ = await _register(app_client)
    sid = await _held_session(app_client, case_id)
    recdir = app_client.app[keys.settings].effective_recordings_dir
    data = b"x" * 100
    (recdir / f"s{sid}").mkdir(parents=True, exist_ok=True)
    (recdir / f"s{sid}" / "g.webm").write_bytes(data)
    async with app_client.app[keys.db].begin() as s:
        from server.sessions.models import Recording

        for r in await s.scalars(select(Recording).where(Recording.session_id == sid)):
            r.sha256 = hashlib.sha256(data).hexdigest()
        first = await s.scalar(
            select(Recording.id).where(Recording.session_id == sid).order_by(Recording.id)
        )
    # mediator01 is no handler of the case (he cannot open it), but he held the session
    token = await sign_in(app_client, "mediator01")
    assert (await app_client.get(f"/cases/{case_id}")).status == 404
    assert (await app_client.get(f"/sessions/{sid}/recordings")).status == 200
    resp = await app_client.post(
        f"/sessions/{sid}/recordings", data={"_csrf": token, "reason": "核对调解过程"}
    )
    html = await resp.text()
    assert resp.status == 200, html
    grant = re.search(r"/recordings/\d+/media\?grant=([^\"&]+)", html)
    assert grant
    media = await app_client.get(f"/recordings/{first}/media?grant={grant[1]}")
    assert media.status == 200 and await media.read() == data
    plays = await _audits(app_client, "recording.play")
    assert plays[-1].detail["reason"] == "核对调解过程"
    # the host, a window officer without recording.play, may play her own session
    app_client.session.cookie_jar.clear()
    await signed_in(app_client, "window_officer")
    assert (await app_client.get(f"/sessions/{sid}/recordings")).status == 200
    # another mediator, who had no part in it and cannot see the case: 404
    app_client.session.cookie_jar.clear()
    await sign_in(app_client, "mediator02")
    assert (await app_client.get(f"/sessions/{sid}/recordings")).status == 404


# --- booking by case number -----------------------------------------------------------------


async def _free_slot(client: Client, token: str, staff_id: int, n: int = 0) -> tuple[str, str]:
    """The n-th free hour of the staff member (the slot finder, as the booking form uses it)."""
    resp = await client.post(
        "/api/scheduling/slots",
        json={"people": [{"staff_id": staff_id}], "duration_min": 60, "limit": n + 1},
        headers={"X-CSRF-Token": token},
    )
    slots = (await resp.json())["slots"]
    return slots[n]["start"], slots[n]["end"]


def _booking(case_no: str | None, staff_id: int, slot: tuple[str, str]) -> dict[str, Any]:
    return {
        "start": slot[0],
        "end": slot[1],
        "staff": [{"staff_id": staff_id, "as_role": "mediator"}],
        "guests": [{"display_name": "李四", "phone": "13900000000"}],
        "title": "欠薪调解",
        **({"case_no": case_no} if case_no is not None else {}),
    }


async def test_booking_takes_the_case_number_and_never_reveals_a_hidden_case(
    app_client: Client,
) -> None:
    case_id, case_no = await _register(app_client)
    _, secret_no = await _register(app_client, accusation=True)
    mediator = await _staff(app_client, "mediator01")
    token = await sign_in(app_client, "handler03")  # urban: may not see the accusation
    headers = {"X-CSRF-Token": token}
    slot = await _free_slot(app_client, token, mediator.id)
    unknown = await app_client.post(
        "/api/scheduling/bookings", json=_booking("330105-2099-999999", mediator.id, slot),
        headers=headers,
    )  # fmt: skip
    hidden = await app_client.post(
        "/api/scheduling/bookings", json=_booking(secret_no, mediator.id, slot), headers=headers
    )
    for resp in (unknown, hidden):
        body = await resp.json()
        assert resp.status == 404, body
        assert body["error"] == "case_not_found" and body["details"]["field"] == "case_no"
        assert body["message_zh"] == "案件不存在或无权查看"
    app_client.session.cookie_jar.clear()
    token = await signed_in(app_client, "window_officer")
    ok = await app_client.post(
        "/api/scheduling/bookings",
        json=_booking(case_no, mediator.id, slot),
        headers={"X-CSRF-Token": token},
    )
    out = await ok.json()
    assert ok.status == 201, out
    async with app_client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=out["session_id"])
    assert call.case_id == case_id and call.recording_allowed  # a mediation records

    # the mediator booked for it may now open the case they mediate (a named handler)
    app_client.session.cookie_jar.clear()
    await sign_in(app_client, "mediator01")
    assert (await app_client.get(f"/api/cases/{case_id}")).status == 200
    page = await app_client.get(f"/cases/{case_id}")
    assert page.status == 200 and "调解" in await page.text()


async def test_a_mediator_sees_only_the_cases_they_are_booked_to_mediate(
    app_client: Client,
) -> None:
    case_id, _ = await _register(app_client)
    await sign_in(app_client, "mediator01")
    assert (await app_client.get(f"/api/cases/{case_id}")).status == 404


async def test_the_booking_form_shows_an_unknown_case_number_next_to_the_field(
    app_client: Client,
) -> None:
    mediator = await _staff(app_client, "mediator01")
    token = await signed_in(app_client, "window_officer")
    start, end = await _free_slot(app_client, token, mediator.id)
    resp = await app_client.post(
        "/scheduling/book",
        data={"_csrf": token, "start": start, "end": end, "staff_id": str(mediator.id),
              "resource_ids": "", "title": "欠薪调解", "case_no": "330105-2099-000000",
              "guest_name": "李四"},
    )  # fmt: skip
    html = await resp.text()
    assert resp.status == 404, html
    field = re.search(
        r'<input name="case_no" value="330105-2099-000000"[^>]*aria-invalid="true"', html
    )
    assert field, html
    assert 'id="case_no-error"' in html and "案件不存在或无权查看" in html
    assert 'value="欠薪调解"' in html and 'value="李四"' in html  # what was typed stays


async def test_staff_get_the_partys_join_link_on_the_bookings_page(app_client: Client) -> None:
    case_id, case_no = await _register(app_client)
    mediator = await _staff(app_client, "mediator01")
    token = await signed_in(app_client, "window_officer")
    start, end = await _free_slot(app_client, token, mediator.id)
    resp = await app_client.post(
        "/scheduling/book",
        data={"_csrf": token, "start": start, "end": end, "staff_id": str(mediator.id),
              "resource_ids": "", "title": "欠薪调解", "case_no": case_no,
              "guest_name": "李四", "guest_phone": "13900000000"},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 303, await resp.text()
    page_url = resp.headers["Location"]
    sid = int(re.findall(r"/scheduling/sessions/(\d+)", page_url)[0])
    page = await (await app_client.get(page_url)).text()
    assert "/join/" not in page and f'action="/scheduling/sessions/{sid}/links"' in page
    links = await app_client.post(f"/scheduling/sessions/{sid}/links", data={"_csrf": token})
    html = await links.text()
    assert links.status == 200, html
    [url] = set(re.findall(r'readonly value="([^"]+/join/[^"]+)"', html))
    assert "李四" in html and "copy-link.js" in html
    async with app_client.app[keys.db]() as s:
        admission = await sessions.admit_join_token(
            s,
            secret=app_client.app[keys.settings].secret_bytes(),
            token=url.rsplit("/join/", 1)[1],
            now=datetime.fromisoformat(start),
        )
    assert admission.session.id == sid and admission.grant.display_name == "李四"
    assert (await _audits(app_client, "schedule.links_issued"))[0].object_id == str(sid)
    del case_id


async def test_the_openapi_document_lists_the_case_sessions(app_client: Client) -> None:
    doc = await (await app_client.get("/api/openapi.json")).json()
    op = doc["paths"]["/api/cases/{case_id}/sessions"]["get"]
    assert "cases" in op["tags"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["type"] == "array"


async def test_a_room_made_from_sessions_takes_the_case_number_with_the_same_rule(
    app_client: Client,
) -> None:
    case_id, case_no = await _register(app_client)
    _, secret_no = await _register(app_client, accusation=True)
    token = await sign_in(app_client, "handler03")  # urban: may not see the accusation
    headers = {"X-CSRF-Token": token}
    for number in ("330105-2099-999999", secret_no):
        resp = await app_client.post(
            "/api/sessions",
            json={"kind": "mediation", "title": "调解", "case_no": number},
            headers=headers,
        )
        body = await resp.json()
        assert resp.status == 404 and body["error"] == "case_not_found", body
    app_client.session.cookie_jar.clear()
    token = await signed_in(app_client, "window_officer")
    resp = await app_client.post(
        "/api/sessions",
        json={"kind": "mediation", "title": "调解", "case_no": case_no},
        headers={"X-CSRF-Token": token},
    )
    out = await resp.json()
    assert resp.status == 201, out
    async with app_client.app[keys.db]() as s:
        assert (await sessions.get_session_by_id(s, session_id=out["id"])).case_id == case_id


async def test_the_desk_ending_a_reception_closes_its_session_with_the_outcome(
    app_client: Client,
) -> None:
    token = await signed_in(app_client, "community_agent")
    resp = await app_client.post(
        "/call",
        data={"_csrf": token, "matter_code": "wage_arrears", "resident_name": "王五",
              "resident_phone": "13912345678"},
        allow_redirects=False,
    )  # fmt: skip
    entry_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    app_client.session.cookie_jar.clear()
    token = await signed_in(app_client, "window_officer")
    accept = await app_client.post(
        f"/desk/calls/{entry_id}/accept", data={"_csrf": token}, allow_redirects=False
    )
    assert accept.status == 303
    end = await app_client.post(
        f"/desk/calls/{entry_id}/end",
        data={"_csrf": token, "outcome": "accepted"},
        allow_redirects=False,
    )
    assert end.status == 303
    async with app_client.app[keys.db]() as s:
        case_id = await s.scalar(
            select(CaseEvent.case_id).where(CaseEvent.type == "session_outcome")
        )
    assert case_id is not None
    [rec] = await (await app_client.get(f"/api/cases/{case_id}/sessions")).json()
    assert (rec["kind"], rec["state"], rec["outcome"]) == ("reception", "ended", "case_accepted")
    page = await (await app_client.get(f"/cases/{case_id}")).text()
    assert "已受理为案件" in page and "视频会话结束" in page


async def test_a_session_without_a_case_is_read_only_by_those_who_took_part(
    app_client: Client,
) -> None:
    creator = await _staff(app_client, "window01")
    async with app_client.app[keys.db].begin() as s:
        view = await sessions.create_session(
            s, kind=SessionKind.mediation, title="临时调解", case_id=None,
            host_site_id=None, created_by_id=creator.id, now=T0,
        )  # fmt: skip
        await sessions.write_records(
            s,
            [ChatRecord(view.id, "guest:x", "赵六", "我的电话是 139…", T0)],
            deadlines=DeadlineClock(),
        )
    await sign_in(app_client, "mediator02")
    assert (await app_client.get(f"/sessions/{view.id}/record")).status == 404
    app_client.session.cookie_jar.clear()
    await signed_in(app_client, "window_officer")
    page = await app_client.get(f"/sessions/{view.id}/record")
    assert page.status == 200 and "我的电话是" in await page.text()


async def test_the_case_page_offers_a_booking_for_the_case(app_client: Client) -> None:
    case_id, case_no = await _register(app_client)
    await signed_in(app_client, "window_officer")
    html = await (await app_client.get(f"/cases/{case_id}")).text()
    link = re.search(r'id="book-for-case" href="([^"]+)"', html)
    assert link and case_no in link[1]
    form = await (await app_client.get(link[1].replace("&amp;", "&"))).text()
    assert f'name="case_no" maxlength="40" autocomplete="off" value="{case_no}"' in form


async def test_calendars_show_an_accusations_session_to_the_accused_unit_as_busy_time(
    app_client: Client,
) -> None:
    _, secret_no = await _register(app_client, accusation=True)
    mediator = await _staff(app_client, "mediator01")
    token = await signed_in(app_client, "centre_supervisor")
    slot = await _free_slot(app_client, token, mediator.id)
    booking = _booking(secret_no, mediator.id, slot) | {"title": "检举件约谈"}
    resp = await app_client.post(
        "/api/scheduling/bookings", json=booking, headers={"X-CSRF-Token": token}
    )
    assert resp.status == 201, await resp.text()
    week = f"/scheduling/calendar?owner=staff:{mediator.id}&week={slot[0][:10]}"
    assert "检举件约谈" in await (await app_client.get(week)).text()
    app_client.session.cookie_jar.clear()
    await sign_in(app_client, "handler03")  # the accused unit
    html = await (await app_client.get(week)).text()
    assert "检举件约谈" not in html and "已占用" in html
    assert "/scheduling/sessions/" not in html


async def test_a_cases_session_list_costs_the_same_queries_for_two_sessions_or_eight(
    app_client: Client,
) -> None:
    """The list loads participants, recordings, chat counts, composites and sites once for all
    the case's sessions (#21: one query per session and table took 5.2 s for a case with some
    70 sessions on a loaded PostgreSQL in the long fuzz run)."""
    from sqlalchemy import event

    case_id, _ = await _register(app_client)
    engine = app_client.app[keys.db].kw["bind"].sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async def listed() -> tuple[int, int]:
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            resp = await app_client.get(f"/api/cases/{case_id}/sessions")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert resp.status == 200, await resp.text()
        return len(await resp.json()), len(statements)

    for _ in range(2):
        await _held_session(app_client, case_id)
    await signed_in(app_client, "window_officer")
    two, queries_for_two = await listed()
    for _ in range(6):
        await _held_session(app_client, case_id)
    await signed_in(app_client, "window_officer")
    eight, queries_for_eight = await listed()
    assert (two, eight) == (2, 8)
    assert queries_for_eight == queries_for_two, "\n".join(
        s.split("\n")[0][:120] for s in statements
    )

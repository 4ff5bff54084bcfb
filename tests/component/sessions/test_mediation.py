"""A mediation booked from its case, through the whole app on the demo district (issue #16
items 2, 3, 5): several parties with their sides and the mediator as a person; reschedule and
cancel from the booking's page; join links with QR codes and a print sheet; the mediator
records the outcome with the case's agreement; no-show per role, swept by the job runner with
an injected clock."""

from __future__ import annotations

import html as htmlmod
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from scheduling import service as scheduling
from server.auth.service import identity_of
from server.cases.agreements import draft_agreement
from server.cases.deadline_clock import DeadlineClock
from server.cases.models import CaseEvent
from server.cases.schemas import AgreementDraft
from server.http import keys
from server.kernel.db import utcnow
from server.kernel.jobs import JobRunner
from server.sessions import no_show
from server.sessions import service as sessions
from server.sessions.schemas import EventRecord, SessionOutcome, SessionState
from tests.component.sessions.test_case_sessions import Client, _audits, _register, _staff
from tests.conftest import signed_in
from tests.fakes import FakeClock

AFTER = timedelta(minutes=15)
PARTIES = {
    "party_kind_0": "applicant", "party_name_0": "张三", "party_phone_0": "13800000001",
    "party_kind_1": "respondent", "party_name_1": "李经理", "party_phone_1": "13800000002",
    "party_kind_2": "applicant_agent", "party_name_2": "王律师", "party_phone_2": "",
    "party_kind_3": "interpreter", "party_name_3": "赵翻译", "party_phone_3": "",
    "party_kind_4": "observer", "party_name_4": "", "party_phone_4": "",
}  # fmt: skip


async def _room_id(client: Client) -> int:
    html = await (await client.get("/scheduling/book")).text()
    rooms = re.findall(r'<option value="(\d+)" >[^<]*调解室', html)
    assert rooms, html
    return int(rooms[0])


async def _book(
    client: Client, token: str, case_no: str, *, parties: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    """Book through the form as a window officer would: mediator01 and a mediation room, the
    first free slot; returns the session id and the slot's hidden fields."""
    mediator = await _staff(client, "mediator01")
    room = await _room_id(client)
    finder = await client.get(
        f"/scheduling/book?case_no={case_no}&mediator_id={mediator.id}&room_id={room}&duration=60"
    )
    html = await finder.text()
    assert finder.status == 200 and "可选时段" in html, html
    slot = dict(re.findall(r'name="(start|end|staff_id|resource_ids)" value="([^"]*)"', html)[:4])
    assert slot["staff_id"] == str(mediator.id) and slot["resource_ids"] == str(room)
    chosen = await client.get("/scheduling/book", params={**slot, "case_no": case_no})
    page = await chosen.text()
    assert mediator.display_name in page and 'name="party_kind_0"' in page
    assert 'name="recording" checked' in page  # recording on by default for a mediation
    resp = await client.post(
        "/scheduling/book",
        data={**slot, **(PARTIES if parties is None else parties), "_csrf": token,
              "title": "工资纠纷调解", "case_no": case_no, "recording_sent": "1",
              "recording": "on"},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 303, await resp.text()
    return int(re.findall(r"/scheduling/sessions/(\d+)", resp.headers["Location"])[0]), slot


# --- booking from the case ------------------------------------------------------------------


async def test_a_mediation_booked_from_the_case_lists_every_party_and_the_mediator(
    app_client: Client,
) -> None:
    case_id, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    sid, _ = await _book(app_client, token, case_no)
    mediator = await _staff(app_client, "mediator01")
    async with app_client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
        record = await scheduling.session_record(s, session_id=sid)
    assert call.case_id == case_id and call.recording_allowed
    guests = {(p.display_name, p.role.value, p.side) for p in record.participants if not p.staff_id}
    assert guests == {
        ("张三", "party", "applicant"),
        ("李经理", "party", "respondent"),
        ("王律师", "agent", "applicant"),
        ("赵翻译", "interpreter", None),
    }
    [staff] = [p for p in record.participants if p.staff_id]
    assert staff.staff_id == mediator.id and staff.role.value == "mediator"
    page = await (await app_client.get(f"/sessions/{sid}/record")).text()
    assert "当事人（申请人）" in page and "当事人（被申请人）" in page and "翻译人员" in page
    assert f"<dt>调解员</dt><dd>{mediator.display_name}</dd>" in page
    booking_page = await (await app_client.get(f"/scheduling/sessions/{sid}")).text()
    assert "代办员（申请人）" in booking_page and "李经理" in booking_page


async def test_a_bad_party_phone_is_shown_next_to_its_field_with_what_was_typed(
    app_client: Client,
) -> None:
    _, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    mediator = await _staff(app_client, "mediator01")
    finder = await (await app_client.get(f"/scheduling/book?mediator_id={mediator.id}")).text()
    slot = dict(re.findall(r'name="(start|end|staff_id|resource_ids)" value="([^"]*)"', finder)[:4])
    resp = await app_client.post(
        "/scheduling/book",
        data={**slot, **PARTIES, "party_phone_1": "12ab", "_csrf": token, "title": "调解",
              "case_no": case_no},
    )  # fmt: skip
    html = await resp.text()
    assert resp.status == 422, html
    assert re.search(r'name="party_phone_1" value="12ab"[^>]*aria-invalid="true"', html), html
    assert 'id="party_phone_1-error"' in html and "手机号码格式不正确" in html
    assert 'value="李经理"' in html


# --- reschedule and cancel from the booking's page ------------------------------------------


async def test_reschedule_and_cancel_from_the_bookings_page(app_client: Client) -> None:
    _, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    sid, slot = await _book(app_client, token, case_no)
    page = await (await app_client.get(f"/scheduling/sessions/{sid}")).text()
    assert 'id="reschedule-form"' in page and f'href="/scheduling/sessions/{sid}/cancel"' in page
    # a free slot of the mediator and the room on a later day, from the slot finder (not
    # "tomorrow": a weekend or a public holiday has no office hours)
    mediator = await _staff(app_client, "mediator01")
    zone = ZoneInfo(app_client.app[keys.settings].timezone)  # the form takes the district's time
    booked = datetime.fromisoformat(slot["start"]).astimezone(zone)
    next_day = datetime.combine(booked.date() + timedelta(days=1), datetime.min.time(), zone)
    found = await app_client.post(
        "/api/scheduling/slots",
        json={
            "people": [{"staff_id": mediator.id}],
            "resources": [{"resource_id": await _room_id(app_client)}],
            "duration_min": 60,
            "start": next_day.isoformat(),
            "limit": 1,
        },
        headers={"X-CSRF-Token": token},
    )
    body = await found.json()
    assert found.status == 200, body
    start = datetime.fromisoformat(body["slots"][0]["start"])
    start_local = start.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    no_reason = await app_client.post(
        f"/scheduling/sessions/{sid}/reschedule",
        data={"_csrf": token, "start_local": start_local, "duration": "60", "reason": ""},
    )
    html = await no_reason.text()
    assert no_reason.status == 422 and 'id="reason-error"' in html, html
    moved = await app_client.post(
        f"/scheduling/sessions/{sid}/reschedule",
        data={"_csrf": token, "start_local": start_local, "duration": "45", "reason": "当事人请假"},
        allow_redirects=False,
    )
    assert moved.status == 303, await moved.text()
    async with app_client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
    assert call.planned_start == start and call.ical_sequence == 1
    assert call.planned_end == start + timedelta(minutes=45)
    assert "已改期" in await (await app_client.get(moved.headers["Location"])).text()

    confirm = await app_client.get(f"/scheduling/sessions/{sid}/cancel")
    text = await confirm.text()
    assert confirm.status == 200 and 'name="confirm"' in text and "取消通知" in text
    unconfirmed = await app_client.post(
        f"/scheduling/sessions/{sid}/cancel", data={"_csrf": token, "reason": "双方和解"}
    )
    assert unconfirmed.status == 422 and "确认取消" in await unconfirmed.text()
    async with app_client.app[keys.db]() as s:
        assert (await sessions.get_session_by_id(s, session_id=sid)).state == SessionState.scheduled
    done = await app_client.post(
        f"/scheduling/sessions/{sid}/cancel",
        data={"_csrf": token, "reason": "双方和解", "confirm": "yes"},
        allow_redirects=False,
    )
    assert done.status == 303, await done.text()
    async with app_client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
        record = await scheduling.session_record(s, session_id=sid)
    assert call.state == SessionState.cancelled and call.ical_sequence == 2
    assert any(j.kind == "cancel" for j in record.jobs)
    after = await (await app_client.get(done.headers["Location"])).text()
    assert 'id="reschedule-form"' not in after and "预约已取消" in after
    no_csrf = await app_client.post(
        f"/scheduling/sessions/{sid}/cancel", data={"reason": "x", "confirm": "yes"}
    )
    assert no_csrf.status == 403


# --- join links: QR codes and the print sheet -----------------------------------------------


async def test_join_links_have_a_qr_code_each_and_a_printable_sheet(app_client: Client) -> None:
    _, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    sid, _ = await _book(app_client, token, case_no)
    links = await (
        await app_client.post(f"/scheduling/sessions/{sid}/links", data={"_csrf": token})
    ).text()
    assert links.count('class="join-qr" src="data:image/svg+xml') == 4, links
    assert f'href="/scheduling/sessions/{sid}/links/print"' in links
    sheet = await app_client.get(f"/scheduling/sessions/{sid}/links/print")
    text = await sheet.text()
    assert sheet.status == 200 and "生成入会通知" in text and "/join/" not in text
    printed = await app_client.post(
        f"/scheduling/sessions/{sid}/links/print", data={"_csrf": token}
    )
    text = await printed.text()
    assert printed.status == 200, text
    blocks = re.findall(r'<article class="card print-party".*?</article>', text, re.S)
    assert len(blocks) == 4
    async with app_client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
    assert call.planned_start is not None
    zone = ZoneInfo(app_client.app[keys.settings].timezone)
    when = call.planned_start.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    for name, block in zip(("张三", "李经理", "王律师", "赵翻译"), blocks, strict=True):
        assert name in block and when in block and "/join/" in block
        assert 'src="data:image/svg+xml' in block
    assert "被申请人" in blocks[1]
    assert len(await _audits(app_client, "schedule.links_issued")) == 2


# --- the outcome of a mediation -------------------------------------------------------------


async def _hold(client: Client, sid: int, *, parties: bool = True) -> datetime:
    """The booked mediation is held as signaling records it: the mediator and both parties
    join, it starts and ends. Returns the start."""
    mediator = await _staff(client, "mediator01")
    async with client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
        people = await sessions.participants(s, session_id=sid)
    assert call.planned_start is not None
    t0 = call.planned_start

    def ev(type_: str, minutes: float, **payload: Any) -> EventRecord:
        return EventRecord(sid, type_, "system", payload, t0 + timedelta(minutes=minutes))

    records = [ev("participant.joined", 0, identity=f"staff:{mediator.id}", role="mediator")]
    if parties:
        records += [
            ev("participant.joined", 1, identity=p.identity, role=p.role.value)
            for p in people
            if p.role.value == "party"
        ]
    records += [ev("session.started", 1), ev("session.ended", 40)]
    async with client.app[keys.db].begin() as s:
        await sessions.write_records(s, records, deadlines=DeadlineClock())
    return t0


async def _agreement(client: Client, case_id: int) -> int:
    mediator = await _staff(client, "mediator01")
    draft = AgreementDraft.model_validate(
        {
            "parties": [{"name": "张三", "role": "applicant"},
                        {"name": "李经理", "role": "respondent"}],
            "facts": "某公司拖欠张三三个月工资",
            "terms": [{"term": "支付工资三万元", "how": "银行转账", "by": "2027-01-15"}],
        }
    )  # fmt: skip
    async with client.app[keys.db].begin() as s:
        view = await draft_agreement(
            s, staff=identity_of(mediator), case_id=case_id, draft=draft, now=utcnow()
        )
    return view.id


async def test_the_mediator_records_the_agreement_linked_to_the_cases_agreement(
    app_client: Client,
) -> None:
    case_id, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    sid, _ = await _book(app_client, token, case_no)
    # before the session ran there is no outcome form
    app_client.session.cookie_jar.clear()
    token = await signed_in(app_client, "mediator")
    assert 'id="outcome-form"' not in await (await app_client.get(f"/sessions/{sid}/record")).text()
    await _hold(app_client, sid)
    agreement_id = await _agreement(app_client, case_id)
    page = await (await app_client.get(f"/sessions/{sid}/record")).text()
    assert 'id="outcome-form"' in page and f'<option value="{agreement_id}"' in page
    for outcome in ("agreement", "no_agreement", "party_withdrew", "adjourned"):
        assert f'name="outcome" value="{outcome}"' in page
    missing = await app_client.post(
        f"/sessions/{sid}/outcome", data={"_csrf": token, "outcome": "agreement"}
    )
    html = await missing.text()
    assert missing.status == 422 and 'id="agreement_id-error"' in html, html
    done = await app_client.post(
        f"/sessions/{sid}/outcome",
        data={"_csrf": token, "outcome": "agreement", "agreement_id": str(agreement_id)},
        allow_redirects=False,
    )
    assert done.status == 303, await done.text()
    record = await (await app_client.get(done.headers["Location"])).text()
    assert f'href="/agreements/{agreement_id}"' in record and "调解结果已记录" in record
    async with app_client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
        events = list(
            await s.scalars(
                select(CaseEvent).where(
                    CaseEvent.case_id == case_id, CaseEvent.type == "session_outcome"
                )
            )
        )
    assert call.outcome == SessionOutcome.agreement
    assert [e.payload["outcome"] for e in events] == ["agreement"]
    app_client.session.cookie_jar.clear()
    await signed_in(app_client, "window_officer")  # who registered the case and booked it
    case_page = await (await app_client.get(f"/cases/{case_id}")).text()
    assert "达成调解协议" in case_page and f'href="/agreements/{agreement_id}"' in case_page
    assert (await _audits(app_client, "session.outcome_recorded"))[0].object_id == str(sid)

    # a supervisor sees the record but is not its mediator: no form, and a POST is refused
    app_client.session.cookie_jar.clear()
    token = await signed_in(app_client, "centre_supervisor")
    page = await (await app_client.get(f"/sessions/{sid}/record")).text()
    assert "达成调解协议" in page and 'id="outcome-form"' not in page
    refused = await app_client.post(
        f"/sessions/{sid}/outcome", data={"_csrf": token, "outcome": "no_agreement"}
    )
    assert refused.status == 422
    async with app_client.app[keys.db]() as s:
        assert (await sessions.get_session_by_id(s, session_id=sid)).outcome == "agreement"


async def test_the_outcome_form_drafts_an_agreement_from_the_sessions_parties(
    app_client: Client,
) -> None:
    case_id, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    sid, _ = await _book(app_client, token, case_no)
    await _hold(app_client, sid)
    app_client.session.cookie_jar.clear()
    token = await signed_in(app_client, "mediator")
    short = await app_client.post(
        f"/sessions/{sid}/outcome",
        data={"_csrf": token, "outcome": "agreement", "agreement_id": "new", "facts": "短"},
    )
    assert short.status == 422 and 'id="facts-error"' in await short.text()
    done = await app_client.post(
        f"/sessions/{sid}/outcome",
        data={"_csrf": token, "outcome": "agreement", "agreement_id": "new",
              "facts": "某公司拖欠张三三个月工资", "term": "支付工资三万元",
              "how": "银行转账", "by": "2027-01-15"},
        allow_redirects=False,
    )  # fmt: skip
    assert done.status == 303, await done.text()
    record = await (await app_client.get(done.headers["Location"])).text()
    [agreement_id] = re.findall(r'href="/agreements/(\d+)"', record)
    agreement = await (await app_client.get(f"/agreements/{agreement_id}")).text()
    assert "张三" in agreement and "李经理" in agreement
    del case_id


# --- no-show per role -----------------------------------------------------------------------


async def _sweep_at(client: Client, at: datetime) -> None:
    """One round of a job runner with the app's no-show task, at `at` (an injected clock)."""
    runner = JobRunner(client.app[keys.db], clock=FakeClock(at))
    runner.add_periodic(no_show.periodic(client.app[keys.db], after=AFTER))
    await runner.run_once()


async def _live_with(client: Client, sid: int, identities: list[tuple[str, str]]) -> datetime:
    async with client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
    assert call.planned_start is not None
    t0 = call.planned_start
    records = [
        EventRecord(sid, "participant.joined", "system", {"identity": i, "role": r}, t0)
        for i, r in identities
    ]
    records.append(EventRecord(sid, "session.started", "system", {}, t0))
    async with client.app[keys.db].begin() as s:
        await sessions.write_records(s, records, deadlines=DeadlineClock())
    return t0


async def test_the_mediator_alone_in_the_room_does_not_keep_a_session_without_parties(
    app_client: Client,
) -> None:
    case_id, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    sid, _ = await _book(app_client, token, case_no)
    mediator = await _staff(app_client, "mediator01")
    t0 = await _live_with(app_client, sid, [(f"staff:{mediator.id}", "mediator")])
    await _sweep_at(app_client, t0 + AFTER - timedelta(seconds=1))
    async with app_client.app[keys.db]() as s:
        assert (await sessions.get_session_by_id(s, session_id=sid)).state == SessionState.live
    await _sweep_at(app_client, t0 + AFTER)
    async with app_client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
        people = await sessions.participants(s, session_id=sid)
        types = list(await s.scalars(select(CaseEvent.type).where(CaseEvent.case_id == case_id)))
    assert call.state == SessionState.no_show
    absent = {p.display_name for p in people if p.no_show}
    assert absent == {"张三", "李经理", "王律师", "赵翻译"}  # every guest, no staff member
    assert not any(p.no_show for p in people if p.staff_id is not None)
    assert "session_no_show" in types
    # the mediator leaves and the room closes: still a no-show
    async with app_client.app[keys.db].begin() as s:
        await sessions.write_records(
            s,
            [EventRecord(sid, "session.ended", "system", {}, t0 + AFTER + timedelta(minutes=1))],
            deadlines=DeadlineClock(),
        )
        await sessions.end_from_room(s, session_id=sid, now=t0 + AFTER + timedelta(minutes=1))
    async with app_client.app[keys.db]() as s:
        assert (await sessions.get_session_by_id(s, session_id=sid)).state == SessionState.no_show
    # the case page says so and offers a new booking (with the parties) or a call-back
    html = await (await app_client.get(f"/cases/{case_id}")).text()
    assert "当事人均未在规定时间内到场" in html and "预约回访通话" in html
    again = re.search(rf'href="(/scheduling/book\?[^"]*from_session={sid}[^"]*)"', html)
    assert again, html
    form = await (await app_client.get(htmlmod.unescape(again[1]))).text()
    assert 'value="张三"' in form and 'value="13800000002"' in form


async def test_one_party_came_is_not_a_no_show_and_the_other_is_marked_absent(
    app_client: Client,
) -> None:
    _, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    sid, _ = await _book(app_client, token, case_no)
    mediator = await _staff(app_client, "mediator01")
    async with app_client.app[keys.db]() as s:
        people = await sessions.participants(s, session_id=sid)
    applicant = next(p for p in people if p.display_name == "张三")
    t0 = await _live_with(
        app_client, sid, [(f"staff:{mediator.id}", "mediator"), (applicant.identity, "party")]
    )
    await _sweep_at(app_client, t0 + AFTER)
    async with app_client.app[keys.db]() as s:
        call = await sessions.get_session_by_id(s, session_id=sid)
        people = await sessions.participants(s, session_id=sid)
    assert call.state == SessionState.live
    marks = {p.display_name: p.no_show for p in people if p.staff_id is None}
    assert marks == {"张三": False, "李经理": True, "王律师": True, "赵翻译": True}
    page = await (await app_client.get(f"/sessions/{sid}/record")).text()
    assert "未到场" in page


async def test_a_late_party_after_a_no_show_ends_the_session_as_held(app_client: Client) -> None:
    _, case_no = await _register(app_client)
    token = await signed_in(app_client, "window_officer")
    sid, _ = await _book(app_client, token, case_no, parties={
        "party_kind_0": "applicant", "party_name_0": "张三",
        "party_kind_1": "respondent", "party_name_1": "李经理",
    })  # fmt: skip
    mediator = await _staff(app_client, "mediator01")
    t0 = await _live_with(app_client, sid, [(f"staff:{mediator.id}", "mediator")])
    await _sweep_at(app_client, t0 + AFTER)
    async with app_client.app[keys.db]() as s:
        people = await sessions.participants(s, session_id=sid)
    late = next(p for p in people if p.display_name == "李经理")
    at = t0 + AFTER + timedelta(minutes=2)
    async with app_client.app[keys.db].begin() as s:
        await sessions.write_records(
            s,
            [
                EventRecord(
                    sid,
                    "participant.joined",
                    "system",
                    {"identity": late.identity, "role": "party"},
                    at,
                )
            ],
            deadlines=DeadlineClock(),
        )
        view = await sessions.end_from_room(s, session_id=sid, now=at + timedelta(minutes=30))
    assert view.state == SessionState.ended
    async with app_client.app[keys.db]() as s:
        people = await sessions.participants(s, session_id=sid)
    assert not next(p for p in people if p.identity == late.identity).no_show

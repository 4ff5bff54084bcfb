"""The 调解笔录 (issue #20 item 2) through the whole app, on SQLite and PostgreSQL: the mediator
writes it (autosave with versions, a stale save refused, the no-script form stamping a new
paragraph with the session clock), 定稿, one party confirms by their SMS link (an older link
superseded), the other on the mediator's device (a wrong name refused), the PDF is made, noted
on the case timeline and listed in the signed evidence manifest — one changed byte in it is
named by `verify_package`. Who may write and read it; every access audited."""

from __future__ import annotations

import re
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from server.cases.models import CaseEvent, CaseNotification
from server.http import keys
from server.sessions import service as sessions
from server.sessions.evidence.package import verify_package
from server.sessions.evidence.service import EvidenceContext
from tests.component.sessions.test_case_sessions import _audits, _register
from tests.component.sessions.test_evidence import _tampered
from tests.component.sessions.test_mediation import _book, _hold
from tests.conftest import make_settings, signed_in

Client = TestClient[Any, Any]
TWO_PARTIES = {
    "party_kind_0": "applicant", "party_name_0": "张三", "party_phone_0": "13800000001",
    "party_kind_1": "respondent", "party_name_1": "李经理", "party_phone_1": "13800000002",
}  # fmt: skip


@pytest.fixture
async def client(tmp_path: Path, demo_db_url: str) -> AsyncIterator[Client]:
    from server.app import create_app

    async with TestClient(TestServer(create_app(make_settings(tmp_path, demo_db_url)))) as c:
        yield c


async def _held_mediation(client: Client) -> tuple[int, int]:
    """A mediation of a wage case booked with two parties, held (both joined) and ended."""
    case_id, case_no = await _register(client)
    token = await signed_in(client, "window_officer")
    sid, _ = await _book(client, token, case_no, parties=TWO_PARTIES)
    await _hold(client, sid)
    await client.post("/logout", data={"_csrf": token})
    return case_id, sid


async def _parties(client: Client, sid: int) -> dict[str, int]:
    async with client.app[keys.db]() as s:
        people = await sessions.participants(s, session_id=sid)
    return {p.display_name: p.id for p in people if p.role.value == "party"}


async def _save(client: Client, sid: int, token: str, version: int, texts: list[str]) -> Any:
    return await client.post(
        f"/sessions/{sid}/minutes",
        json={"version": version, "paragraphs": [{"at_s": 60 * i, "text": t} for i, t in enumerate(texts)]},
        headers={"X-CSRF-Token": token},
    )  # fmt: skip


def _link_token(body: str) -> str:
    found = re.findall(r"/minutes/([A-Za-z0-9_.-]+)", body)
    assert found, body
    return str(found[0])


async def _sms(client: Client, sid: int) -> list[str]:
    async with client.app[keys.db]() as s:
        rows = await s.scalars(
            select(CaseNotification.body)
            .where(CaseNotification.dedupe_key.like(f"minutes_link:{sid}:%"))
            .order_by(CaseNotification.id)
        )
        return list(rows)


async def test_written_frozen_confirmed_both_ways_and_filed_as_signed_evidence(
    client: Client, tmp_path: Path
) -> None:
    case_id, sid = await _held_mediation(client)
    token = await signed_in(client, "mediator")
    page = await (await client.get(f"/sessions/{sid}/minutes")).text()
    assert 'id="minutes-form"' in page and "调解笔录" in page

    # autosave: versions; a stale save (another tab) is refused, nothing overwritten
    first = await _save(
        client, sid, token, 0, ["调解员说明调解规则。", "张三陈述：公司拖欠工资三个月。"]
    )
    assert first.status == 200 and (await first.json())["version"] == 1
    stale = await _save(client, sid, token, 0, ["另一窗口的内容"])
    assert stale.status == 409 and (await stale.json())["error"] == "minutes_conflict"
    # the no-script form: a new paragraph stamped with the session clock (the session is over:
    # its clock is past the 39 minutes it lasted)
    resp = await client.post(
        f"/sessions/{sid}/minutes",
        data={"_csrf": token, "version": "1", "at_s": ["0", "60"],
              "text": ["调解员说明调解规则。", "张三陈述：公司拖欠工资三个月。"],
              "new_text": "李经理表示同意分两期支付。"},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 303, await resp.text()
    page = await (await client.get(f"/sessions/{sid}/minutes")).text()
    assert "01:00" in page and "李经理表示同意分两期支付。" in page
    assert len(await _audits(client, "session.minutes_save")) == 2

    resp = await client.post(
        f"/sessions/{sid}/minutes/freeze", data={"_csrf": token, "version": "2"}
    )
    assert resp.status == 200 and "笔录已定稿" in await resp.text()
    again = await _save(client, sid, token, 2, ["改动"])
    assert again.status == 409 and (await again.json())["error"] == "minutes_frozen"

    parties = await _parties(client, sid)
    assert set(parties) == {"张三", "李经理"}
    # 张三 gets two links; only the newer one confirms
    for _ in range(2):
        resp = await client.post(
            f"/sessions/{sid}/minutes/link",
            data={"_csrf": token, "participant": str(parties["张三"]), "phone": "13800000001"},
        )
        assert resp.status == 200 and "确认链接已通过短信发送" in await resp.text()
    older, newer = [_link_token(b) for b in await _sms(client, sid)]
    bad_phone = await client.post(
        f"/sessions/{sid}/minutes/link",
        data={"_csrf": token, "participant": str(parties["李经理"]), "phone": "123"},
    )
    assert bad_phone.status == 422 and "请输入11位手机号码" in await bad_phone.text()

    party_client = client  # the party's own page needs no sign-in
    old_page = await party_client.get(f"/minutes/{older}")
    assert old_page.status == 404 and "新的确认链接" in await old_page.text()
    view = await party_client.get(f"/minutes/{newer}")
    text = await view.text()
    assert view.status == 200 and "张*" in text and "李经理表示同意分两期支付。" in text
    unticked = await party_client.post(f"/minutes/{newer}", data={"_csrf": token})
    assert unticked.status == 422
    ok = await party_client.post(f"/minutes/{newer}", data={"_csrf": token, "agreed": "yes"})
    assert ok.status == 200 and "确认成功" in await ok.text()

    wrong = await client.post(
        f"/sessions/{sid}/minutes/device",
        data={
            "_csrf": token,
            "participant": str(parties["李经理"]),
            "name": "李",
            "present": "yes",
        },
    )
    assert wrong.status == 422 and "姓名与参会当事人不符" in await wrong.text()
    right = await client.post(
        f"/sessions/{sid}/minutes/device",
        data={"_csrf": token, "participant": str(parties["李经理"]), "name": "李经理",
              "present": "yes"},
    )  # fmt: skip
    page = await right.text()
    assert (
        right.status == 200 and "在调解员设备上当面确认" in page and "本人通过短信链接确认" in page
    )

    closed = await client.post(f"/sessions/{sid}/minutes/close", data={"_csrf": token})
    assert closed.status == 200 and "笔录PDF已生成" in await closed.text()
    pdf = await client.get(f"/sessions/{sid}/minutes.pdf")
    body = await pdf.read()
    assert pdf.status == 200 and body.startswith(b"%PDF")
    async with client.app[keys.db]() as s:
        events = list(
            await s.scalars(
                select(CaseEvent).where(
                    CaseEvent.case_id == case_id, CaseEvent.type == "session_minutes"
                )
            )
        )
    assert len(events) == 1 and events[0].payload == {"session_id": sid, "confirmed": 2}
    for action in ("freeze", "link_sent", "link_view", "confirm", "close", "pdf"):
        assert await _audits(client, f"session.minutes_{action}"), action

    # the evidence package lists the PDF; one changed byte in it is named
    await client.post("/logout", data={"_csrf": token})
    token = await signed_in(client, "centre_supervisor")
    resp = await client.post(
        f"/sessions/{sid}/evidence", data={"_csrf": token, "reason": "移送法院司法确认"}
    )
    assert resp.status == 200, await resp.text()
    pkg = tmp_path / "pkg.zip"
    pkg.write_bytes(await resp.read())
    name = f"transcript/minutes-{sid}.pdf"
    with zipfile.ZipFile(pkg) as zf:
        assert zf.read(name) == body
    trusted = dict(EvidenceContext.from_settings(client.app[keys.settings]).keys.public_keys)
    checked = verify_package(pkg, trusted_keys=trusted)
    assert checked.ok and name in checked.checked
    changed = verify_package(_tampered(pkg, name, tmp_path / "t.zip"), trusted_keys=trusted)
    assert changed.first is not None and changed.first.what == name


async def test_only_who_ran_the_session_writes_it_and_readers_of_the_case_read_it(
    client: Client,
) -> None:
    _, sid = await _held_mediation(client)
    token = await signed_in(client, "mediator")
    assert (await _save(client, sid, token, 0, ["调解员说明调解规则。"])).status == 200
    await client.post("/logout", data={"_csrf": token})

    token = await signed_in(client, "centre_supervisor")  # may see the case: reads, not writes
    page = await client.get(f"/sessions/{sid}/minutes")
    html = await page.text()
    assert page.status == 200 and "调解员说明调解规则。" in html and 'id="minutes-form"' not in html
    refused = await _save(client, sid, token, 1, ["督导员改写"])
    assert refused.status == 403
    views = await _audits(client, "session.minutes_view")
    assert any(v.actor.startswith("staff:") for v in views)


async def test_a_reader_who_may_not_know_the_guests_gets_neither_text_nor_names(
    client: Client,
) -> None:
    """Confidentiality decided once (server.sessions.record: the guests' names in clear or
    not) and applied to the 笔录: its text names the parties, so a reader who may see the
    session but not who its guests are gets no text, masked names and no PDF; whoever ran
    the session sees everything."""
    from server.auth.service import identity_of
    from server.sessions import minutes
    from tests.component.sessions.test_case_sessions import _staff

    _, sid = await _held_mediation(client)
    token = await signed_in(client, "mediator")
    assert (await _save(client, sid, token, 0, ["张三陈述：公司拖欠工资。"])).status == 200
    mediator = identity_of(await _staff(client, "mediator01"))
    reader = identity_of(await _staff(client, "supervisor01"))
    async with client.app[keys.db].begin() as s:
        withheld = await minutes.view(
            s, staff=reader, session_id=sid, may_read=True, names_in_clear=False
        )
        full = await minutes.view(
            s, staff=mediator, session_id=sid, may_read=True, names_in_clear=False
        )
    assert withheld.withheld and withheld.paragraphs == []
    assert {p.name for p in withheld.parties} == {"张*", "李**"}
    assert not full.withheld and full.paragraphs[0].text.startswith("张三陈述")
    assert {p.name for p in full.parties} == {"张三", "李经理"}
    async with client.app[keys.db].begin() as s:
        with pytest.raises(minutes.MinutesWithheld):
            await minutes.pdf_for(
                s, staff=reader, session_id=sid, may_read=True, names_in_clear=False
            )

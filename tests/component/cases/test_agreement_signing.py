"""Signing a mediation agreement (#17 item 4): each party through their own SMS link or on the
mediator's device, present and identified (which is recorded); effective only when every party
and the mediator have signed; 司法确认 by the agreement's mediator or the court liaison."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.auth import csrf
from server.cases import agreements
from server.cases.models import CaseEvent, CaseNotification, MediationAgreement
from server.http import keys
from server.kernel.db import utcnow
from tests.conftest import make_settings, sign_in, signed_in

DRAFT = {
    "parties": [{"name": "赵一", "role": "applicant"}, {"name": "钱二", "role": "respondent"}],
    "facts": "楼上住户卫生间漏水，损坏楼下吊顶。",
    "terms": [{"term": "钱二赔偿赵一维修费3000元", "how": "银行转账", "by": "2026-04-01"}],
}


@pytest.fixture
async def client(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    from server.app import create_app
    from web.views import cases as case_pages

    app = create_app(make_settings(tmp_path, demo_sqlite_url))
    if "cases" not in app.router.named_resources():
        case_pages.setup(app)
    async with TestClient(TestServer(app)) as c:
        yield c


async def post(client: TestClient[Any, Any], token: str, path: str, body: dict[str, Any]) -> Any:
    return await client.post(path, json=body, headers={csrf.HEADER: token})


async def _case_and_agreement(client: TestClient[Any, Any]) -> tuple[int, int, str]:
    """A case registered at the window and a draft agreement by mediator01 (signed in after)."""
    token = await signed_in(client, "window_officer")
    me = await (await client.get("/api/me")).json()
    resp = await post(
        client,
        token,
        "/api/cases",
        {"channel": "window", "site_id": me["site_id"], "summary": "楼上漏水损坏吊顶"},
    )
    case_id = (await resp.json())["case"]["id"]
    token = await sign_in(client, "mediator01")
    resp = await post(client, token, f"/api/cases/{case_id}/agreements", DRAFT)
    assert resp.status == 201, await resp.text()
    return case_id, (await resp.json())["id"], token


async def _sms_token(client: TestClient[Any, Any], agreement_id: int) -> tuple[str, str]:
    async with client.app[keys.db]() as session:
        row = (
            await session.scalars(
                select(CaseNotification)
                .where(CaseNotification.dedupe_key.startswith(f"agreement_link:{agreement_id}:"))
                .order_by(CaseNotification.id.desc())
            )
        ).first()
    assert row is not None
    found = re.search(r"/sign/(\S+)", row.body)
    assert found is not None
    return found.group(1), row.body


async def _audit(client: TestClient[Any, Any], action: str) -> list[AuditEntry]:
    async with client.app[keys.db]() as session:
        return list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


async def test_one_party_by_own_link_the_other_on_the_mediators_device(
    client: TestClient[Any, Any],
) -> None:
    case_id, agreement_id, token = await _case_and_agreement(client)
    link = f"/api/agreements/{agreement_id}/parties/0/sign-link"

    # 发送签署链接: the phone is checked; the SMS carries the link and its end in district time.
    bad = await post(client, token, link, {"phone": "12345"})
    assert bad.status == 422 and (await bad.json())["error"] == "invalid_phone"
    bad = await post(
        client,
        token,
        f"/api/agreements/{agreement_id}/parties/7/sign-link",
        {"phone": "13912345678"},
    )
    assert bad.status == 422
    sent = await post(client, token, link, {"phone": "13912345678"})
    assert sent.status == 201, await sent.text()
    body = await sent.json()
    assert body["to"] == "139****5678" and body["party"] == 0
    sms_token, sms = await _sms_token(client, agreement_id)
    assert "赵*" in sms and "赵一" not in sms
    assert "链接有效期至" in sms and "（北京时间）" in sms and "UTC" not in sms
    assert (await _audit(client, "agreement.sign_link_sent"))[-1].detail["party"] == 0
    # the phone is kept, encrypted, for the 司法确认 reminder (server.cases.agreements)
    async with client.app[keys.db]() as s:
        stored = await s.scalar(
            select(MediationAgreement.party_phones_enc).where(MediationAgreement.id == agreement_id)
        )
    assert stored is not None and "13912345678" not in str(stored)
    assert client.app[keys.pii].decrypt(stored["0"]) == "13912345678"

    # Only the agreement's own mediator sends its links; a window officer may not at all.
    other = await sign_in(client, "mediator02")
    assert (await post(client, other, link, {"phone": "13912345678"})).status == 403
    window = await signed_in(client, "window_officer")
    assert (await post(client, window, link, {"phone": "13912345678"})).status == 403

    # The party's page, signed out: the text, their name masked, 我已阅读并同意.
    await client.post("/logout", data={"_csrf": window})
    page = await client.get(f"/sign/{sms_token}")
    html = await page.text()
    assert page.status == 200, html
    assert 'id="party-name">赵*<' in html and "申请人：赵*" in html and "被申请人：钱*" in html
    assert "卫生间漏水" in html and "我已阅读并同意" in html
    views = await _audit(client, "agreement.link_view")
    assert views[-1].actor == f"party:{agreement_id}:0" and views[-1].detail["case_id"] == case_id
    api = await client.get(f"/api/public/agreements/sign/{sms_token}")
    assert api.status == 200 and (await api.json())["party_name_masked"] == "赵*"

    csrf_cookie = await _csrf(client, f"/sign/{sms_token}")
    not_agreed = await client.post(
        f"/sign/{sms_token}", data={"_csrf": csrf_cookie, "signer_name": "赵一"}
    )
    assert not_agreed.status == 422 and "我已阅读并同意" in await not_agreed.text()
    wrong = await client.post(
        f"/sign/{sms_token}", data={"_csrf": csrf_cookie, "agreed": "yes", "signer_name": "赵二"}
    )
    assert wrong.status == 422 and "姓名与协议中的当事人不一致" in await wrong.text()
    done = await client.post(
        f"/sign/{sms_token}", data={"_csrf": csrf_cookie, "agreed": "yes", "signer_name": "赵一"}
    )
    html = await done.text()
    assert done.status == 200 and 'id="signed"' in html and 'id="signed-waiting"' in html
    signed = (await _audit(client, "agreement.sign"))[-1]
    assert signed.actor == f"party:{agreement_id}:0" and signed.detail["via"] == "own_link"

    # Used: the same link again, on the page and the API.
    again = await client.get(f"/sign/{sms_token}")
    assert again.status == 404 and "您已签署本协议" in await again.text()
    used = await client.post(
        f"/api/public/agreements/sign/{sms_token}",
        json={"agreed": True, "signer_name": "赵一"},
        headers={csrf.HEADER: csrf_cookie},
    )
    assert used.status == 409 and (await used.json())["error"] == "sign_link_used"

    # The mediator alone cannot sign for 钱二 without recording how 钱二 was identified.
    token = await sign_in(client, "mediator01")
    sign = f"/api/agreements/{agreement_id}/signatures"
    typed = {"signer": "party:1", "signer_name": "钱二", "method": "typed", "data": "钱二"}
    bad = await post(client, token, sign, typed)
    assert bad.status == 422 and (await bad.json())["error"] == "identification_required"
    bad = await post(client, token, sign, {**typed, "identification": "id_card"})
    assert bad.status == 422 and (await bad.json())["details"]["field"] == "id_last4"
    bad = await post(client, token, sign, {**typed, "identification": "id_card", "id_last4": "12"})
    assert bad.status == 422
    other = await sign_in(client, "mediator02")  # not the agreement's mediator
    assert (await post(client, other, sign, {**typed, "identification": "face"})).status in (
        403,
        404,
    )
    token = await sign_in(client, "mediator01")
    ok = await post(client, token, sign, {**typed, "identification": "id_card", "id_last4": "123x"})
    assert ok.status == 200, await ok.text()
    view = await ok.json()
    assert view["status"] == "draft" and view["missing_signers"] == ["mediator"]
    by = {s["signer"]: s for s in view["signatures"]}
    assert by["party:0"]["via"] == "own_link" and by["party:0"]["id_method"] is None
    assert by["party:1"]["via"] == "mediator_device"
    assert (by["party:1"]["id_method"], by["party:1"]["id_last4"]) == ("id_card", "123X")
    device = (await _audit(client, "agreement.sign"))[-1]
    assert device.detail == {
        "signer": "party:1",
        "via": "mediator_device",
        "identification": "id_card",
        "effective": False,
    }

    # Only with every party and the mediator signed does it take effect.
    ok = await post(
        client, token, sign, {"signer": "mediator", "signer_name": "调解员甲", "data": "调解员甲"}
    )
    view = await ok.json()
    assert view["status"] == "effective" and view["judicial_due_at"]

    # The page shows who signed, when (Beijing time) and how.
    html = await (await client.get(f"/agreements/{agreement_id}")).text()
    assert 'data-signer="party:0" data-method="typed" data-via="own_link"' in html
    assert "本人链接签署" in html
    assert "调解员设备签署（身份证核验，身份证号后4位123X）" in html
    assert "调解员本人签署" in html and "（北京时间）" in html
    assert 'id="pending-parties"' not in html

    # The timeline has the link sent and the agreement effective.
    async with client.app[keys.db]() as session:
        events = set(
            await session.scalars(select(CaseEvent.type).where(CaseEvent.case_id == case_id))
        )
    assert {"agreement_link_sent", "agreement_effective"} <= events


async def _csrf(client: TestClient[Any, Any], path: str) -> str:
    resp = await client.get(path)
    cookie = resp.cookies.get(csrf.COOKIE) or client.session.cookie_jar.filter_cookies(
        client.make_url("/")
    ).get(csrf.COOKIE)
    assert cookie is not None
    return cookie.value


async def test_bad_links_are_refused_with_a_clear_message(client: TestClient[Any, Any]) -> None:
    _, agreement_id, _ = await _case_and_agreement(client)
    secret = client.app[keys.settings].secret_bytes()
    async with client.app[keys.db].begin() as session:
        a = await session.get(MediationAgreement, agreement_id)
        assert a is not None
        expired = agreements.party_sign_token(
            a, party_index=1, secret=secret, now=utcnow() - agreements.SIGN_LINK_TTL * 2
        )
        changed = agreements.party_sign_token(a, party_index=1, secret=secret, now=utcnow())
        a.terms = [*a.terms, {"term": "另赔偿100元", "how": "现金", "by": "2026-12-31"}]
    for token, status, code, words in (
        ("not-a-token", 404, "invalid_sign_link", "签署链接无效"),
        (expired, 410, "sign_link_expired", "签署链接已过期"),
        (changed, 409, "agreement_changed", "协议内容在发送签署链接后已修改"),
    ):
        page = await client.get(f"/sign/{token}")
        html = await page.text()
        assert page.status == 404 and words in html and 'id="party-sign-form"' not in html
        api = await client.get(f"/api/public/agreements/sign/{token}")
        assert api.status == status and (await api.json())["error"] == code
        posted = await client.post(
            f"/api/public/agreements/sign/{token}",
            json={"agreed": True, "signer_name": "钱二"},
            headers={csrf.HEADER: await _csrf(client, "/login")},
        )
        assert posted.status == status
    not_agreed = await client.post(
        f"/api/public/agreements/sign/{changed}",
        json={"agreed": False, "signer_name": "钱二"},
        headers={csrf.HEADER: await _csrf(client, "/login")},
    )
    assert not_agreed.status == 422


async def test_send_link_form_on_the_agreement_page(client: TestClient[Any, Any]) -> None:
    _, agreement_id, token = await _case_and_agreement(client)
    html = await (await client.get(f"/agreements/{agreement_id}")).text()
    assert html.count("发送签署链接") >= 2 and html.count("在调解员设备上签署") == 2
    assert 'name="identification" value="id_card"' in html
    form = f"/agreements/{agreement_id}/parties/1/sign-link"
    bad = await client.post(form, data={"_csrf": token, "phone": "1"})
    assert bad.status == 422 and "手机号码无效" in await bad.text()
    ok = await client.post(
        form, data={"_csrf": token, "phone": "13812345678"}, allow_redirects=False
    )
    assert ok.status == 303 and ok.headers["Location"].endswith("?sent=1")
    html = await (await client.get(ok.headers["Location"])).text()
    assert 'id="link-sent"' in html and "钱二" in html
    _, sms = await _sms_token(client, agreement_id)
    assert "钱*" in sms
    await signed_in(client, "window_officer")  # sees the case, not the mediator's actions
    html = await (await client.get(f"/agreements/{agreement_id}")).text()
    assert "发送签署链接" not in html and 'id="sign-form"' not in html


async def test_judicial_confirmation_by_mediator_or_court_liaison(
    client: TestClient[Any, Any],
) -> None:
    _, agreement_id, token = await _case_and_agreement(client)
    sign = f"/api/agreements/{agreement_id}/signatures"
    for i, name in enumerate(("赵一", "钱二")):
        ok = await post(
            client,
            token,
            sign,
            {"signer": f"party:{i}", "signer_name": name, "data": name, "identification": "face"},
        )
        assert ok.status == 200, await ok.text()
    view = await (
        await post(client, token, sign, {"signer": "mediator", "signer_name": "甲", "data": "甲"})
    ).json()
    assert view["status"] == "effective"
    judicial = f"/api/agreements/{agreement_id}/judicial"
    body = {"requested_at": view["effective_at"], "result": None}
    window = await signed_in(client, "window_officer")
    assert (await post(client, window, judicial, body)).status == 403
    other = await sign_in(client, "mediator02")
    assert (await post(client, other, judicial, body)).status == 403
    court = await signed_in(client, "court_liaison")
    ok = await post(client, court, judicial, {**body, "result": "confirmed"})
    assert ok.status == 200, await ok.text()
    assert (await ok.json())["judicial_result"] == "confirmed"
    entry = (await _audit(client, "agreement.judicial"))[-1]
    assert entry.detail["late"] is False and entry.actor.startswith("staff:")
    # the court liaison reads no case content through this role; their home page still works
    assert (await client.get(f"/api/agreements/{agreement_id}")).status == 403
    await sign_in(client, "mediator01")  # the page shows the request and the court's result
    html = await (await client.get(f"/agreements/{agreement_id}")).text()
    assert 'id="judicial" data-late="false"' in html and "法院已确认有效" in html
    await signed_in(client, "court_liaison")
    home = await client.get("/")
    assert home.status == 200 and "法院联络员" in await home.text()


def test_pdf_lists_each_signature_with_how_it_was_given() -> None:
    from server.cases.schemas import AgreementView, SignatureView

    now = utcnow()
    sigs = [
        SignatureView(
            signer="party:0",
            signer_name="赵一",
            method="typed",
            data="赵一",
            signed_at=now,
            via="own_link",
        ),
        SignatureView(
            signer="party:1",
            signer_name="钱二",
            method="typed",
            data="钱二",
            signed_at=now,
            via="mediator_device",
            id_method="face",
        ),
        SignatureView(
            signer="mediator",
            signer_name="甲",
            method="typed",
            data="甲",
            signed_at=now,
            via="own_account",
        ),
    ]
    assert [agreements.how_signed(s) for s in sigs] == [
        "本人链接签署",
        "调解员设备签署（人脸核验）",
        "调解员本人签署",
    ]
    view = AgreementView(
        id=1,
        case_id=1,
        session_id=None,
        mediator_id=1,
        parties=DRAFT["parties"],
        facts="事实",
        terms=DRAFT["terms"],
        status="effective",
        effective_at=now,
        judicial_due_at=now + timedelta(days=30),
        judicial_requested_at=None,
        judicial_result=None,
        signatures=sigs,
        missing_signers=[],
    )
    try:
        font = agreements.cjk_font()
    except agreements.CjkFontMissing:
        pytest.skip("no CJK font installed")
    pdf = agreements.agreement_pdf(view, case_no="T-1", font=font)
    assert pdf.startswith(b"%PDF")


async def test_a_new_link_supersedes_the_partys_older_ones(client: TestClient[Any, Any]) -> None:
    """Only the newest link sent to a party signs: a resend (lost phone, wrong number)
    cuts off the earlier SMS; another party's link is unaffected."""
    _, agreement_id, token = await _case_and_agreement(client)
    link = f"/api/agreements/{agreement_id}/parties/0/sign-link"
    assert (await post(client, token, link, {"phone": "13912345678"})).status == 201
    first, _ = await _sms_token(client, agreement_id)
    other = f"/api/agreements/{agreement_id}/parties/1/sign-link"
    assert (await post(client, token, other, {"phone": "13987654321"})).status == 201
    second_party, _ = await _sms_token(client, agreement_id)
    assert (await post(client, token, link, {"phone": "13700001111"})).status == 201
    newest, _ = await _sms_token(client, agreement_id)
    assert newest != first

    page = await client.get(f"/sign/{first}")
    html = await page.text()
    assert page.status == 404 and "此链接已失效" in html and 'id="party-sign-form"' not in html
    api = await client.get(f"/api/public/agreements/sign/{first}")
    assert api.status == 410 and (await api.json())["error"] == "sign_link_superseded"
    posted = await client.post(
        f"/api/public/agreements/sign/{first}",
        json={"agreed": True, "signer_name": "赵一"},
        headers={csrf.HEADER: await _csrf(client, "/login")},
    )
    assert posted.status == 410
    assert (await client.get(f"/api/public/agreements/sign/{newest}")).status == 200
    assert (await client.get(f"/api/public/agreements/sign/{second_party}")).status == 200
    signed = await client.post(
        f"/api/public/agreements/sign/{newest}",
        json={"agreed": True, "signer_name": "赵一"},
        headers={csrf.HEADER: await _csrf(client, "/login")},
    )
    assert signed.status == 200, await signed.text()

"""专家意见 on the case page (#17 finding 12): a supervisor invites an expert by name, the
expert finds the case and records a written opinion, which the case page and its timeline
show; a short opinion is refused at its field and nothing is written."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.component.web.test_case_workbench import (
    Client,
    act,
    as_user,
    client,
    counts,
    db,
    register,
    text_of,
)

__all__ = ["client", "db"]  # the fixtures

OPINION = "依据《养老机构管理办法》，养老院应当公开收费项目和标准，建议责令限期公示。"


async def test_an_invited_expert_records_an_opinion_shown_on_the_case_page(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "expert01")
    assert (await client.get(f"/cases/{case_id}")).status == 404  # not invited: out of scope
    token = await as_user(client, "supervisor01")
    page = await (await client.get(f"/cases/{case_id}")).text()
    assert 'id="action-invite_expert"' in page and 'value="expert01"' in page
    resp = await act(client, token, case_id, "invite_expert", expert="", task="")
    assert resp.status == 422 and "请选择专家" in await resp.text()
    resp = await act(client, token, case_id, "invite_expert", expert="handler01", task="")
    assert resp.status == 422 and "所选人员不是专家" in await resp.text()
    resp = await act(
        client, token, case_id, "invite_expert", expert="expert01", task="收费是否合规"
    )
    assert resp.status == 303
    assert 'id="action-expert_opinion"' not in await (await client.get(f"/cases/{case_id}")).text()

    token = await as_user(client, "expert01")
    page = await (await client.get(f"/cases/{case_id}")).text()
    assert 'id="action-expert_opinion"' in page
    before = await counts(db, case_id, "case.expert_opinion")
    resp = await act(client, token, case_id, "expert_opinion", opinion="同意")
    assert resp.status == 422 and "专家意见过短" in await resp.text()
    assert await counts(db, case_id, "case.expert_opinion") == before
    resp = await act(client, token, case_id, "expert_opinion", opinion=OPINION)
    assert resp.status == 303 and resp.headers["Location"].endswith("done=expert_opinion")
    events, audits = await counts(db, case_id, "case.expert_opinion")
    assert (events, audits) == (before[0] + 1, 1)

    token = await as_user(client, "supervisor01")
    text = text_of(await (await client.get(f"/cases/{case_id}")).text())
    assert "专家意见" in text and OPINION in text
    assert text.count(OPINION) == 2  # the facts card and the timeline


async def test_a_redirect_shows_the_hand_over_and_the_room_may_open_the_case(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "window01")
    resp = await act(
        client, token, case_id, "redirect_legal", legal_route="arbitration",
        reason="劳动争议应申请仲裁", confirm="yes",
    )  # fmt: skip
    assert resp.status == 303
    text = text_of(await (await client.get(f"/cases/{case_id}")).text())
    assert "接收单位" in text and "区劳动人事争议仲裁院接谈室" in text
    assert "移交：区劳动人事争议仲裁院接谈室" in text  # the timeline
    assert (
        f"/cases/{case_id}/notices/legal_route.pdf"
        in await (await client.get(f"/cases/{case_id}")).text()
    )


async def test_a_supervisor_marks_a_long_standing_case_hard_with_a_reason(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    """列为疑难积案 (梯次滤化, DOMAIN §4): the supervisor's action, with a required reason; the
    grade shows on the case page, the reason on the timeline; a handler may not; once hard,
    the action is no longer offered."""
    case_id = await register(client)
    token = await as_user(client, "leader01")
    assert 'id="action-mark_hard"' not in await (await client.get(f"/cases/{case_id}")).text()
    resp = await act(client, token, case_id, "mark_hard", reason="多年未结")
    assert resp.status in (403, 404)

    token = await as_user(client, "supervisor01")
    page = await (await client.get(f"/cases/{case_id}")).text()
    assert 'id="action-mark_hard"' in page and "列为疑难积案" in page
    before = await counts(db, case_id, "case.marked_hard")
    resp = await act(client, token, case_id, "mark_hard", reason="")
    assert resp.status == 422
    assert await counts(db, case_id, "case.marked_hard") == before
    reason = "该事项历经三次复查，涉及多个部门，久拖未决"
    resp = await act(client, token, case_id, "mark_hard", reason=reason)
    assert resp.status == 303 and resp.headers["Location"].endswith("done=mark_hard")
    assert await counts(db, case_id, "case.marked_hard") == (before[0] + 1, 1)
    page = await (await client.get(f"/cases/{case_id}")).text()
    text = text_of(page)
    assert "疑难积案" in text and reason in text
    assert 'id="action-mark_hard"' not in page
    resp = await act(client, token, case_id, "mark_hard", reason=reason)
    assert resp.status in (200, 409) and await counts(db, case_id, "case.marked_hard") == (
        before[0] + 1,
        1,
    )

"""The session record service on both backends (SQLite here, PostgreSQL under `integration`):
`records_for_case` and `record` assemble attendance across reconnects, consent answers,
recordings and chat, and follow the case's visibility."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth.permissions import StaffIdentity
from server.auth.service import identity_of
from server.cases import intake
from server.cases.access import CaseNotFound
from server.cases.deadline_clock import DeadlineClock
from server.cases.models import Channel
from server.cases.schemas import IntakeRequest, PetitionerInput
from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from server.org.models import Department, Site, SiteLevel, Staff
from server.sessions import record as records
from server.sessions import service as sessions
from server.sessions.errors import SessionNotFound
from server.sessions.schemas import ChatRecord, EventRecord, SessionKind

T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


@pytest.fixture
async def db(demo_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _who(s: AsyncSession, username: str) -> StaffIdentity:
    row = await s.scalar(select(Staff).where(Staff.username == username))
    assert row is not None
    return identity_of(row)


async def test_attendance_across_reconnects_consent_and_visibility(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as s:
        window = await _who(s, "window01")
        centre = await s.scalar(select(Site.id).where(Site.level == SiteLevel.district))
        urban = await s.scalar(select(Department.id).where(Department.code == "urban"))
        assert centre is not None
        created = await intake.intake(
            s,
            pii=PiiCipher(secrets.token_bytes(32)),
            staff=window,
            request=IntakeRequest(
                channel=Channel.window,
                site_id=centre,
                summary="检举城管执法人员收受好处",
                matter_type="official_misconduct",
                petitioner=PetitionerInput(name="王小明", phone="13812345678"),
                attributes={"accused": "区城管局某中队"},
                accused_department_id=urban,
            ),
            now=T0,
            deadlines=DeadlineClock(),
        )
        case_id = created.case.id
        view = await sessions.create_session(
            s, kind=SessionKind.mediation, title="约谈", case_id=case_id,
            host_site_id=centre, created_by_id=window.staff_id, now=T0,
        )  # fmt: skip

    def ev(type_: str, minutes: int, **payload: object) -> EventRecord:
        return EventRecord(view.id, type_, "system", payload, T0 + timedelta(minutes=minutes))

    guest = {"identity": "guest:j1", "role": "party", "display_name": "张三"}
    async with db.begin() as s:
        await sessions.write_records(
            s,
            [
                ev("participant.joined", 0, **guest),
                ev("recording.refused", 1, **guest),
                ev("participant.left", 5, identity="guest:j1"),  # a dropped connection
                ev("participant.joined", 6, **guest),
                ev("recording.consent", 7, **guest),  # asked again, now yes
                ChatRecord(view.id, "guest:j1", "张三", "好的", T0 + timedelta(minutes=8)),
                ev("participant.left", 40, identity="guest:j1"),
            ],
            deadlines=DeadlineClock(),
        )
    async with db.begin() as s:
        [rec] = await records.records_for_case(s, case_id=case_id, viewer=window)
        full = await records.record(s, session_id=view.id, viewer=window)
        hidden_from = await _who(s, "handler03")  # urban, the accused unit
        with pytest.raises(CaseNotFound):
            await records.records_for_case(s, case_id=case_id, viewer=hidden_from)
        with pytest.raises(SessionNotFound):
            await records.record(s, session_id=view.id, viewer=hidden_from)
        assert await records.hidden_sessions(s, viewer=hidden_from, session_ids=[view.id]) == {
            view.id
        }
    [zhang] = rec.participants
    assert (zhang.joined_at, zhang.left_at) == (T0, T0 + timedelta(minutes=40))
    assert zhang.consent == "given" and zhang.recording_consent_at == T0 + timedelta(minutes=7)
    assert zhang.recording_refused_at == T0 + timedelta(minutes=1)
    assert zhang.identity_kind == "guest" and rec.case_no == created.case.case_no
    assert rec.chat is None and rec.chat_count == 1
    assert full.chat is not None and [c.text for c in full.chat] == ["好的"]

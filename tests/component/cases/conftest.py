from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth.permissions import StaffIdentity
from server.auth.service import identity_of
from server.cases.catalogue import load_case_reference
from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from server.org.models import Department, Site, SiteLevel, Staff

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Hangzhou


@pytest.fixture
async def db(demo_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_db_url)
    maker = make_sessionmaker(engine)
    async with maker.begin() as session:
        await load_case_reference(session, knowledge_at=NOW)
    yield maker
    await engine.dispose()


@pytest.fixture
def pii() -> PiiCipher:
    return PiiCipher(secrets.token_bytes(32))


async def who(session: AsyncSession, username: str) -> StaffIdentity:
    staff = await session.scalar(select(Staff).where(Staff.username == username))
    assert staff is not None, username
    return identity_of(staff)


async def centre_id(session: AsyncSession) -> int:
    site = await session.scalar(select(Site.id).where(Site.level == SiteLevel.district))
    assert site is not None
    return site


async def dept_id(session: AsyncSession, code: str) -> int:
    dept = await session.scalar(select(Department.id).where(Department.code == code))
    assert dept is not None
    return dept

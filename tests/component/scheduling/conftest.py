from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from server.org.models import Resource, ResourceType, Role, Site, SiteLevel, Staff, StaffRole

#: Monday 2026-12-07 08:00 in Hangzhou.
NOW = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
TZ = "Asia/Shanghai"


@pytest.fixture
async def db(demo_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def pii() -> PiiCipher:
    return PiiCipher(secrets.token_bytes(32))


@dataclass(frozen=True)
class Ids:
    mediators: list[int]
    mediation_dept: int
    centre: int
    centre_room: int
    street: int
    street_room: int
    community_terminals: list[int]  # at two different community points
    community_sites: list[int]


async def demo_ids(session: AsyncSession) -> Ids:
    mediators = list(
        await session.scalars(
            select(Staff.id)
            .join(StaffRole, StaffRole.staff_id == Staff.id)
            .where(StaffRole.role == Role.mediator)
            .order_by(Staff.id)
        )
    )
    dept = await session.scalar(select(Staff.department_id).where(Staff.id == mediators[0]))
    assert dept is not None
    centre = await session.scalar(select(Site.id).where(Site.level == SiteLevel.district))
    street = await session.scalar(
        select(Site.id).where(Site.level == SiteLevel.street).order_by(Site.id)
    )
    assert centre is not None and street is not None
    centre_room = await session.scalar(
        select(Resource.id).where(
            Resource.site_id == centre, Resource.type == ResourceType.mediation_room
        )
    )
    street_room = await session.scalar(
        select(Resource.id).where(
            Resource.site_id == street, Resource.type == ResourceType.mediation_room
        )
    )
    rows = (
        await session.execute(
            select(Resource.id, Resource.site_id)
            .join(Site, Site.id == Resource.site_id)
            .where(Site.level == SiteLevel.community, Resource.type == ResourceType.video_terminal)
            .order_by(Resource.id)
            .limit(2)
        )
    ).all()
    assert centre_room is not None and street_room is not None
    return Ids(
        mediators=mediators,
        mediation_dept=dept,
        centre=centre,
        centre_room=centre_room,
        street=street,
        street_room=street_room,
        community_terminals=[r[0] for r in rows],
        community_sites=[r[1] for r in rows],
    )

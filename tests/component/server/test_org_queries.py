"""The organisation look-ups pages use instead of their own queries (demo district)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.kernel.db import make_engine, make_sessionmaker
from server.kernel.errors import NotFound
from server.org import service as org
from server.org.models import Department, Resource, Site, SiteLevel, Staff


@pytest.fixture
async def db(demo_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_choice_lists(db: async_sessionmaker[AsyncSession]) -> None:
    async with db() as s:
        depts = await org.departments(s)
        communities = await org.sites(s, community=True)
        others = await org.sites(s, community=False)
        levels: dict[int, SiteLevel] = {
            r.id: r.level for r in await s.execute(select(Site.id, Site.level))
        }
        dept_rows = (await s.execute(select(Department.id, Department.name))).all()
    assert [(d.id, d.name) for d in depts] == sorted(dept_rows)
    assert communities and others
    assert [c.id for c in communities] == sorted(c.id for c in communities)
    assert {levels[c.id] for c in communities} == {SiteLevel.community}
    assert SiteLevel.community not in {levels[o.id] for o in others}
    assert len(communities) + len(others) == len(levels)


async def test_site_or_district(db: async_sessionmaker[AsyncSession]) -> None:
    async with db() as s:
        district = await s.scalar(select(Site.id).where(Site.level == SiteLevel.district))
        street = await s.scalar(select(Site.id).where(Site.level == SiteLevel.street).limit(1))
        assert district is not None and street is not None
        assert await org.site_or_district(s, site_id=street) == street
        assert await org.site_or_district(s, site_id=None) == district
        assert await org.site_or_district(s, site_id=999_999) == district


async def test_site_or_district_without_a_district(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        async with make_sessionmaker(engine)() as s:
            with pytest.raises(NotFound):
                await org.site_or_district(s, site_id=None)
    finally:
        await engine.dispose()


async def test_names(db: async_sessionmaker[AsyncSession]) -> None:
    async with db() as s:
        person = await s.scalar(select(Staff).limit(1))
        thing = await s.scalar(select(Resource).limit(1))
        assert person is not None and thing is not None
        assert await org.staff_name(s, staff_id=person.id) == person.display_name
        assert await org.resource_name(s, resource_id=thing.id) == thing.name
        assert await org.staff_name(s, staff_id=999_999) is None
        assert await org.resource_name(s, resource_id=999_999) is None

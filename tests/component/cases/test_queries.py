"""The small case look-ups pages and the API use instead of their own queries."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases.catalogue import MATTER_TYPES, active_matter_types
from server.cases.intake import create_case
from server.cases.models import Channel, MatterType
from server.cases.queries import case_number, petitioner_phone
from server.cases.schemas import PetitionerInput
from server.kernel.crypto import PiiCipher
from tests.component.cases.conftest import NOW, centre_id


async def test_case_number_and_petitioner_phone(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db.begin() as s:
        site = await centre_id(s)
        with_phone = await create_case(
            s, pii=pii, site_id=site, channel=Channel.kiosk, summary="楼上漏水",
            petitioner=PetitionerInput(name="张三", phone="13812345678"),
            first_receiver_id=None, now=NOW,
        )  # fmt: skip
        letter = await create_case(
            s, pii=pii, site_id=site, channel=Channel.letter, summary="来信",
            petitioner=None, first_receiver_id=None, now=NOW,
        )  # fmt: skip
    async with db() as s:
        assert await case_number(s, case_id=with_phone.id) == with_phone.case_no
        assert await case_number(s, case_id=999_999) == ""
        assert await petitioner_phone(s, pii=pii, case_id=with_phone.id) == "13812345678"
        assert await petitioner_phone(s, pii=pii, case_id=letter.id) is None
        assert await petitioner_phone(s, pii=pii, case_id=999_999) is None


async def test_active_matter_types(db: async_sessionmaker[AsyncSession]) -> None:
    async with db() as s:
        loaded = await active_matter_types(s)
    assert loaded and ("wage_arrears", "拖欠工资") in loaded
    async with db.begin() as s:
        await s.execute(
            update(MatterType).where(MatterType.code == "wage_arrears").values(active=False)
        )
    async with db() as s:
        assert "wage_arrears" not in dict(await active_matter_types(s))
    async with db.begin() as s:
        await s.execute(update(MatterType).values(active=False))
    async with db() as s:
        # nothing active: the built-in catalogue
        assert await active_matter_types(s) == [(code, name) for code, name, *_ in MATTER_TYPES]

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from server.cases.intake import create_case
from server.cases.models import Channel, Petitioner
from server.cases.schemas import PetitionerInput
from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from server.pii_rotation import rotate


async def test_rotation_rewrites_every_row_and_lookup_still_works(demo_db_url: str) -> None:
    engine = make_engine(demo_db_url)
    db = make_sessionmaker(engine)
    old = PiiCipher(b"old-secret")
    try:
        async with db.begin() as s:
            for i in range(3):
                await create_case(
                    s,
                    pii=old,
                    site_id=1,
                    channel=Channel.window,
                    summary="x",
                    petitioner=PetitionerInput(
                        name=f"张{i}",
                        phone=f"1380000000{i}",
                        id_number="11010519491231002X" if i == 0 else None,
                    ),
                    first_receiver_id=None,
                    now=datetime(2026, 1, 1, tzinfo=UTC),
                )
        new = PiiCipher(b"new-secret", old_secrets=(b"old-secret",))
        async with db.begin() as s:
            assert await rotate(s, pii=new) == 3
        async with db.begin() as s:
            assert await rotate(s, pii=new) == 0  # idempotent
            rows = (await s.scalars(select(Petitioner).order_by(Petitioner.id))).all()
            assert [new.decrypt(r.name_enc) for r in rows] == ["张0", "张1", "张2"]
            assert rows[1].phone_hash == new.lookup_hash("13800000001")
            assert all(r.key_id == new.key_id for r in rows)
        only_new = PiiCipher(b"new-secret")  # the old key can now be dropped
        assert only_new.decrypt(rows[0].id_number_enc or "") == "11010519491231002X"
    finally:
        await engine.dispose()

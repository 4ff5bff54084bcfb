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


async def test_rotation_seals_residents_numbers_in_the_outbox(db_url: str) -> None:
    """#17 finding 13: a resident's number queued in the clear by an earlier version is sealed
    by `onedoor pii rotate`, a sealed one is re-encrypted under the new key, and a staff
    member's number (the staff directory holds it anyway) is left as it is."""
    from server.cases.models import CaseNotification
    from server.cases.outbox import ResidentPhone, StaffPhone, enqueue

    engine = make_engine(db_url)
    db = make_sessionmaker(engine)
    old = PiiCipher(b"old-secret")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with db.begin() as s:
            s.add(  # a resident's, queued in the clear as before the rule
                CaseNotification(
                    dedupe_key="reception:1",
                    to="13800000001",
                    subject="s",
                    body="b",
                    created_at=at,
                    due_at=at,
                )
            )
            for key, to in (
                ("eval:2", ResidentPhone("13800000002", old)),
                ("warn:3", StaffPhone("13900000003")),  # a staff member's
            ):
                await enqueue(s, key=key, case_id=None, to=to, subject="s", body="b", now=at)
        new = PiiCipher(b"new-secret", old_secrets=(b"old-secret",))
        async with db.begin() as s:
            assert await rotate(s, pii=new) == 2
        async with db.begin() as s:
            assert await rotate(s, pii=new) == 0  # idempotent
            rows = await s.execute(select(CaseNotification.dedupe_key, CaseNotification.to))
            stored: dict[str, str] = dict(rows.tuples().all())
        assert stored["warn:3"] == "13900000003"
        only_new = PiiCipher(b"new-secret")
        assert only_new.decrypt(stored["reception:1"]) == "13800000001"
        assert only_new.decrypt(stored["eval:2"]) == "13800000002"
    finally:
        await engine.dispose()

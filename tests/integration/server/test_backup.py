"""Backup a deployment and restore it into an empty one (SQLite → PostgreSQL), then compare."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from server.audit.service import record, verify
from server.backup import BackupError, backup, restore
from server.cases.intake import add_representatives, create_case
from server.cases.models import Channel
from server.cases.schemas import PetitionerInput, RepresentativeInput
from server.kernel.crypto import PiiCipher
from server.kernel.db import Base, make_engine, make_sessionmaker

pytestmark = pytest.mark.integration


async def _snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = make_engine(url)
    out = {}
    try:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                rows = (
                    await conn.execute(select(table).order_by(*table.primary_key.columns))
                ).all()
                out[table.name] = [tuple(r) for r in rows]
    finally:
        await engine.dispose()
    return out


async def test_backup_restore_round_trip(demo_sqlite_url: str, pg_url: str, tmp_path: Path) -> None:
    source = make_engine(demo_sqlite_url)
    pii = PiiCipher(b"s")
    async with make_sessionmaker(source).begin() as s:
        case_ids = []
        for i in range(3):
            case = await create_case(
                s,
                pii=pii,
                site_id=1,
                channel=Channel.kiosk,
                summary=f"事项{i}",
                petitioner=PetitionerInput(name="李秀英", phone="13900001111"),
                first_receiver_id=None,
                now=datetime(2026, 5, 1, tzinfo=UTC),
            )
            case_ids.append(case.id)
        # A collective visit's representatives (encrypted rows of their own) travel too.
        await add_representatives(
            s,
            pii=pii,
            case_id=case_ids[-1],
            representatives=[RepresentativeInput(name="赵一", phone="13900002222")],
            now=datetime(2026, 5, 1, tzinfo=UTC),
        )
        await record(
            s, actor="staff:1", action="recording.play", object_type="recording", object_id="1"
        )
    rec_src = tmp_path / "rec-src"
    (rec_src / "room-1").mkdir(parents=True)
    (rec_src / "room-1" / "a.webm").write_bytes(b"\x1aE\xdf\xa3webm-bytes")
    archive = tmp_path / "backup.tar.gz"
    summary = await backup(source, recordings_dir=rec_src, target=archive)
    await source.dispose()
    assert summary.tables["petition_case"] == 3 and summary.recordings == 1
    assert summary.tables["case_representative"] == 1

    target = make_engine(pg_url)
    rec_dst = tmp_path / "rec-dst"
    try:
        await restore(target, recordings_dir=rec_dst, source=archive)
        with pytest.raises(BackupError, match="not empty"):
            await restore(target, recordings_dir=rec_dst, source=archive)
        async with make_sessionmaker(target).begin() as s:
            assert (await verify(s)).ok  # the audit chain survives the move
            # sequences continue after the restored ids
            case = await create_case(
                s,
                pii=pii,
                site_id=1,
                channel=Channel.web,
                summary="新",
                petitioner=None,
                first_receiver_id=None,
                now=datetime(2026, 5, 2, tzinfo=UTC),
            )
        assert case.case_no.endswith("000004")
    finally:
        await target.dispose()
    assert (rec_dst / "room-1" / "a.webm").read_bytes() == b"\x1aE\xdf\xa3webm-bytes"
    before = await _snapshot(demo_sqlite_url)
    after = await _snapshot(pg_url)
    grown = {"petition_case", "case_event", "audit_log", "case_counter"}  # the case added above
    for name, rows in before.items():
        if name in grown:
            assert len(after[name]) > len(rows) or name == "case_counter", name
        else:
            assert after[name] == rows, name


async def test_tampered_backup_is_refused(
    demo_sqlite_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    import tarfile

    source = make_engine(demo_sqlite_url)
    archive = tmp_path / "b.tar.gz"
    await backup(source, recordings_dir=tmp_path / "none", target=archive)
    await source.dispose()
    tampered = tmp_path / "t.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "tables/staff.jsonl":
                data = data.replace(b"window01", b"attacker")
                member.size = len(data)
            import io

            dst.addfile(member, io.BytesIO(data))
    target = make_engine(sqlite_url)
    try:
        with pytest.raises(BackupError, match="checksum"):
            await restore(target, recordings_dir=tmp_path / "r", source=tampered)
    finally:
        await target.dispose()

"""Logical backup and restore of a whole deployment: every table, plus the recordings.

The archive (tar.gz) holds `manifest.json` (schema revision, row counts, SHA-256 of each
member), one JSON-lines file per table in foreign-key order, and `recordings/`. It does not
depend on the backend: a SQLite deployment restores into PostgreSQL and back. Restore refuses
a database that already holds data, or one at another schema revision.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Date, DateTime, Numeric, Time, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

import server.models  # noqa: F401  (fills Base.metadata)
from server.kernel.db import Base

FORMAT = "onedoor-backup-v1"
#: A deployment holding rows in any of these is not empty (migrations seed only reference data).
OPERATIONAL_TABLES = ("site", "staff", "petition_case", "audit_log", "call_session")
BATCH = 2000


class BackupError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class BackupSummary:
    tables: dict[str, int]
    recordings: int
    path: Path


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _decoder(type_: Any) -> Any:
    """How to turn a column's JSON text back into its Python value (None: as it is)."""
    base = getattr(type_, "impl", None) or type_
    if isinstance(base, DateTime):
        return datetime.fromisoformat
    if isinstance(base, Date):
        return date.fromisoformat
    if isinstance(base, Time):
        return dtime.fromisoformat
    if isinstance(base, Numeric) and getattr(base, "asdecimal", False):
        return Decimal
    return None


async def _revision(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return sorted(r[0] for r in rows)


def _add(tar: tarfile.TarFile, name: str, data: bytes, digests: dict[str, str]) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))
    digests[name] = hashlib.sha256(data).hexdigest()


def _add_recordings(tar: tarfile.TarFile, recordings_dir: Path, digests: dict[str, str]) -> int:
    count = 0
    if recordings_dir.exists():
        for path in sorted(p for p in recordings_dir.rglob("*") if p.is_file()):
            _add(
                tar,
                f"recordings/{path.relative_to(recordings_dir).as_posix()}",
                path.read_bytes(),
                digests,
            )
            count += 1
    return count


def _write_recordings(members: dict[str, bytes], recordings_dir: Path) -> int:
    count = 0
    root = recordings_dir.resolve()
    for name, data in members.items():
        if not name.startswith("recordings/"):
            continue
        dest = (root / name.removeprefix("recordings/")).resolve()
        if not dest.is_relative_to(root):  # never write outside the recordings directory
            raise BackupError(f"unsafe path in backup: {name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        count += 1
    return count


async def backup(engine: AsyncEngine, *, recordings_dir: Path, target: Path) -> BackupSummary:
    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                lines: list[str] = []
                pk = list(table.primary_key.columns)
                result = await conn.stream(select(table).order_by(*pk))
                async for row in result:
                    lines.append(
                        json.dumps(
                            {k: _encode(v) for k, v in row._mapping.items()}, ensure_ascii=False
                        )
                    )
                counts[table.name] = len(lines)
                _add(tar, f"tables/{table.name}.jsonl", ("\n".join(lines)).encode(), digests)
        n_recordings = await asyncio.to_thread(_add_recordings, tar, recordings_dir, digests)
        manifest = {
            "format": FORMAT,
            "revision": await _revision(engine),
            "tables": counts,
            "sha256": digests,
            "created_at": time.time(),
        }
        _add(tar, "manifest.json", json.dumps(manifest, indent=1).encode(), {})
    tmp.replace(target)
    return BackupSummary(tables=counts, recordings=n_recordings, path=target)


async def restore(engine: AsyncEngine, *, recordings_dir: Path, source: Path) -> BackupSummary:
    with tarfile.open(source, "r:gz") as tar:
        manifest_file = tar.extractfile("manifest.json")
        if manifest_file is None:
            raise BackupError("not an onedoor backup: no manifest")
        manifest = json.loads(manifest_file.read())
        if manifest.get("format") != FORMAT:
            raise BackupError(f"unknown backup format {manifest.get('format')!r}")
        if manifest["revision"] != await _revision(engine):
            raise BackupError(
                f"schema revision differs: backup {manifest['revision']}, "
                f"database {await _revision(engine)} (run `onedoor db upgrade` to match)"
            )
        members: dict[str, bytes] = {}
        for member in tar.getmembers():
            if member.name == "manifest.json" or not member.isfile():
                continue
            fh = tar.extractfile(member)
            data = fh.read() if fh else b""
            if hashlib.sha256(data).hexdigest() != manifest["sha256"].get(member.name):
                raise BackupError(f"{member.name} does not match its checksum")
            members[member.name] = data
    async with engine.begin() as conn:
        for name in OPERATIONAL_TABLES:
            table = Base.metadata.tables[name]
            if await conn.scalar(select(func.count()).select_from(table)):
                raise BackupError(f"the target database is not empty (table {table.name})")
        # Reference data that migrations seed is replaced by the backup's own copy.
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())
        for table in Base.metadata.sorted_tables:
            raw = members.get(f"tables/{table.name}.jsonl", b"").decode()
            rows = [json.loads(line) for line in raw.splitlines() if line]
            decoders = {c.name: d for c in table.columns if (d := _decoder(c.type)) is not None}
            for row in rows:
                for name, decode in decoders.items():
                    if row.get(name) is not None:
                        row[name] = decode(row[name])
            for start in range(0, len(rows), BATCH):
                await conn.execute(table.insert(), rows[start : start + BATCH])
        if conn.dialect.name == "postgresql":
            for table in Base.metadata.sorted_tables:
                pk = list(table.primary_key.columns)
                if (
                    len(pk) == 1
                    and pk[0].autoincrement is not False
                    and str(pk[0].type) == "INTEGER"
                ):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{pk[0].name}'), "
                            f"COALESCE((SELECT MAX({pk[0].name}) FROM {table.name}), 0) + 1, false)"
                        )
                    )
    recordings = await asyncio.to_thread(_write_recordings, members, recordings_dir)
    return BackupSummary(tables=manifest["tables"], recordings=recordings, path=source)

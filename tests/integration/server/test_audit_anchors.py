"""The audit chain's head time-stamped by a real RFC 3161 authority (`openssl ts -reply` on
loopback, issue #21 item 3): an untouched log verifies with its anchors; an attacker who holds
the MAC key, re-chains the log after an edit and rewrites the other witnesses is still caught
by the anchor; a forged or edited anchor line is named; an unchanged head is not re-anchored.
On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.anchors import ANCHOR_FILE, TsaWitness, anchor_newest
from server.audit.chain import WITNESS_FILE, AuditChain, AuditKeys, FileWitness, Witness
from server.audit.models import AuditEntry
from server.audit.service import record, verify
from server.kernel.crypto import derive_key
from server.kernel.db import make_engine, make_sessionmaker
from server.kernel.tsa import TsaConfig
from tests.integration.server.test_audit_tamper import SECRET, _rechain
from tests.tsa_loopback import Tsa, loopback_tsa


@pytest.fixture
async def tsa(tmp_path: Path) -> AsyncIterator[Tsa]:
    async with loopback_tsa(tmp_path / "tsa") as running:
        yield running


@pytest.fixture
def anchors(tmp_path: Path, tsa: Tsa) -> TsaWitness:
    return TsaWitness(tmp_path / ANCHOR_FILE, tsa.cert_pem)


@pytest.fixture
async def maker(
    db_url: str, tmp_path: Path, anchors: TsaWitness
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    witnesses: tuple[Witness, ...] = (FileWitness(tmp_path / WITNESS_FILE), anchors)
    chain = AuditChain(AuditKeys(SECRET), witnesses)
    engine = make_engine(db_url)
    yield make_sessionmaker(engine, info=chain.info())
    await engine.dispose()


async def _write(maker: async_sessionmaker[AsyncSession], n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        async with maker.begin() as s:
            await record(s, actor=f"staff:{i}", action="case.read", object_id=str(i))


async def _verify(maker: async_sessionmaker[AsyncSession]) -> tuple[bool, int | None, str]:
    async with maker() as s:
        result = await verify(s)
    return result.ok, result.first_bad_id, result.reason


async def test_anchored_heads_verify_and_an_unchanged_head_is_not_anchored_again(
    maker: async_sessionmaker[AsyncSession], anchors: TsaWitness, tsa: Tsa
) -> None:
    config = TsaConfig(tsa.url, tsa.cert_pem)
    assert await anchor_newest(maker, path=anchors.path, config=config) is None  # empty log
    await _write(maker, 3)
    first = await anchor_newest(maker, path=anchors.path, config=config)
    assert first is not None and first.entry_id == 3
    assert await anchor_newest(maker, path=anchors.path, config=config) is None  # unchanged
    await _write(maker, 2, start=3)
    second = await anchor_newest(maker, path=anchors.path, config=config)
    assert second is not None and second.entry_id == 5
    assert [a.head.entry_id for a in anchors.anchors()] == [3, 5]
    assert await _verify(maker) == (True, None, "")
    async with maker() as s:
        assert "tsa" in (await verify(s)).witnesses


async def test_a_rechained_log_with_rewritten_file_witness_is_caught_by_the_anchor(
    maker: async_sessionmaker[AsyncSession], anchors: TsaWitness, tsa: Tsa, tmp_path: Path
) -> None:
    await _write(maker, 4)
    await anchor_newest(maker, path=anchors.path, config=TsaConfig(tsa.url, tsa.cert_pem))
    # the attacker holds the MAC key: edits entry 2, re-chains, rewrites the file witness
    async with maker.begin() as s:
        await s.execute(update(AuditEntry).where(AuditEntry.id == 2).values(actor="staff:999"))
        await _rechain(s, derive_key(SECRET, b"audit-chain-v1"))
    async with maker() as s:
        rows = (await s.execute(AuditEntry.__table__.select().order_by(AuditEntry.id))).all()
    (tmp_path / WITNESS_FILE).write_text("".join(f"{r.id} {r.hash}\n" for r in rows))
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 4 and reason.startswith("re-chained"), reason


async def test_a_forged_anchor_line_is_named(
    maker: async_sessionmaker[AsyncSession], anchors: TsaWitness, tsa: Tsa
) -> None:
    await _write(maker, 2)
    await anchor_newest(maker, path=anchors.path, config=TsaConfig(tsa.url, tsa.cert_pem))
    line = json.loads(anchors.path.read_text())
    line["hash"] = "0" * 64  # the hash changed, the token kept: it covers another message
    anchors.path.write_text(json.dumps(line) + "\n")
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 2 and reason.startswith("forged anchor"), reason

    line["token"] = base64.b64encode(b"not a time stamp").decode()
    anchors.path.write_text(json.dumps(line) + "\n")
    ok, _, reason = await _verify(maker)
    assert not ok and reason.startswith("forged anchor"), reason

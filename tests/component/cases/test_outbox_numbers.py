"""Residents' numbers in the SMS outbox (#17 finding 13), on SQLite and PostgreSQL: every
service that texts a resident leaves no number in the clear in `case_notification` (read with
raw SQL), the sender still delivers to the right number, a bare number is refused, and
`onedoor pii rotate` seals the numbers an earlier version queued in the clear."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases import agreements, case_deadlines
from server.cases.deadline_clock import DeadlineClock
from server.cases.deadline_service import deliver_notifications
from server.cases.evaluation import ReplyNotice
from server.cases.outbox import StaffPhone, enqueue
from server.cases.receipts import send_reception_receipt
from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from tests.fakes import RecordingNotifier

from .conftest import NOW, who
from .test_agreements import _draft
from .test_lifecycle import SECRET, fire, register

PETITIONER = "13812345678"  # test_lifecycle.PERSON's number
PARTY = "13912345678"
ROOT = Path(__file__).resolve().parents[3]


async def outbox_rows(db: async_sessionmaker[AsyncSession]) -> list[tuple[str, str, str]]:
    """(dedupe_key, to, body) of every message, read with SQL as an intruder would."""
    async with db() as s:
        rows = await s.execute(text('SELECT dedupe_key, "to", body FROM case_notification'))
        return [(str(k), str(to), str(body)) for k, to, body in rows.all()]


async def test_every_resident_message_is_stored_sealed_and_sent_to_the_right_number(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(db, pii)  # the petitioner left PETITIONER
    async with db.begin() as s:  # 1. the reception receipt
        assert await send_reception_receipt(
            s,
            pii=pii,
            case_id=case_id,
            session_id=4242,
            outcome="joint",
            follow_url="https://xf.example/follow/x",
            now=NOW,
        )
    await fire(db, "handler01", case_id, "accept")
    async with db.begin() as s:  # 2. the extension notice
        await case_deadlines.extend(
            s,
            staff=await who(s, "leader01"),
            case_id=case_id,
            kind="handling",
            days=10,
            reason="需调取社保记录",
            now=NOW + timedelta(days=5),
            deadlines=DeadlineClock(),
            pii=pii,
        )
    await fire(db, "handler01", case_id, "start_handling")
    notice = ReplyNotice(pii=pii, secret=SECRET, base_url="https://xf.example")
    await fire(db, "handler01", case_id, "reply", reply="已补发工资", notice=notice)  # 3. eval
    dispute = await register(db, pii, matter="neighbour_dispute", summary="漏水纠纷")
    async with db.begin() as s:  # 4. a party's signing link
        view = await agreements.draft_agreement(
            s, staff=await who(s, "mediator01"), case_id=dispute, draft=_draft(), now=NOW
        )
        await agreements.send_sign_link(
            s,
            staff=await who(s, "mediator01"),
            agreement_id=view.id,
            party_index=1,
            phone=PARTY,
            secret=SECRET,
            pii=pii,
            base_url="https://xf.example",
            now=NOW,
        )
        await enqueue(  # and a staff member's message, kept as it is
            s,
            key="batch:test",
            case_id=None,
            to=StaffPhone("13900000001"),
            subject="集中交办",
            body="b",
            now=NOW,
        )

    rows = await outbox_rows(db)
    kinds = {key.split(":")[0] for key, _, _ in rows}
    assert {"reception", "ext", "eval", "agreement_link", "batch"} <= kinds
    for key, to, body in rows:
        assert PETITIONER not in to + body and PARTY not in to + body, key
        assert to.startswith("v1:") == (not key.startswith("batch:")), key
    digits = {"".join(c for c in to if c.isdigit()) for _, to, _ in rows}
    assert not digits & {PETITIONER, PARTY}

    notifier = RecordingNotifier()
    report = await deliver_notifications(
        db, notifier=notifier, now=NOW + timedelta(days=30), pii=pii
    )
    assert report.failed == 0 and report.retrying == 0
    sent = {(m.subject, m.to) for m in notifier.sent}
    assert {
        ("信访事项回执", PETITIONER),
        ("信访事项办理延期告知", PETITIONER),
        ("信访事项评价", PETITIONER),
        ("人民调解协议书签署", PARTY),
        ("集中交办", "13900000001"),
    } <= sent
    # sending changed nothing about how the numbers are kept
    assert all(PETITIONER not in to and PARTY not in to for _, to, _ in await outbox_rows(db))


async def test_a_sender_without_the_key_fails_the_message_instead_of_guessing(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(db, pii)
    async with db.begin() as s:
        await send_reception_receipt(
            s, pii=pii, case_id=case_id, session_id=1, outcome="joint", follow_url="u", now=NOW
        )
    notifier = RecordingNotifier()
    report = await deliver_notifications(
        db, notifier=notifier, now=NOW, pii=PiiCipher(secrets.token_bytes(32))
    )
    assert notifier.sent == [] and report.failed == 1


async def test_a_bare_number_is_refused(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        with pytest.raises(TypeError, match="ResidentPhone or a StaffPhone"):
            await enqueue(
                s,
                key="reception:9",
                case_id=None,
                to=PETITIONER,  # type: ignore[arg-type]
                subject="s",
                body="b",
                now=NOW,
            )
    assert await outbox_rows(db) == []


async def test_onedoor_pii_rotate_seals_numbers_queued_in_the_clear(
    db_url: str, tmp_path: Path
) -> None:
    """An earlier version queued residents' numbers in the clear; the operator runs
    `onedoor pii rotate` (docs/operations.md) once after upgrading, and again: no change."""
    secret = secrets.token_urlsafe(32)

    async def seed_and_read(seed: bool) -> dict[str, str]:
        engine = make_engine(db_url)
        try:
            async with make_sessionmaker(engine).begin() as s:
                if seed:
                    for key, to in (
                        ("reception:1", PETITIONER),
                        ("eval:2", PETITIONER),
                        ("agreement_link:3:1:x", PARTY),
                        ("ext:4", PETITIONER),
                        ("dl:5:warn:red:13900000005", "13900000005"),  # staff: as it is
                    ):
                        await s.execute(
                            text(
                                'INSERT INTO case_notification (dedupe_key, "to", channel, '
                                "subject, body, status, attempts, created_at, due_at, last_error)"
                                " VALUES (:k, :to, 'sms', 's', 'b', 'pending', 0, :at, :at, '')"
                            ),
                            {"k": key, "to": to, "at": NOW},
                        )
                rows = await s.execute(text('SELECT dedupe_key, "to" FROM case_notification'))
                return {str(k): str(to) for k, to in rows.all()}
        finally:
            await engine.dispose()

    await seed_and_read(seed=True)

    def rotate() -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONEDOOR_")}
        env |= {
            "ONEDOOR_DATABASE_URL": db_url,
            "ONEDOOR_SECRET_KEY": secret,
            "ONEDOOR_DATA_DIR": str(tmp_path / "data"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "server.cli", "pii", "rotate"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        return done.stdout

    assert "re-encrypted 4 rows" in rotate()
    stored = await seed_and_read(seed=False)
    pii = PiiCipher(secret.encode())
    assert stored["dl:5:warn:red:13900000005"] == "13900000005"
    for key in ("reception:1", "eval:2", "ext:4"):
        assert stored[key].startswith("v1:") and pii.decrypt(stored[key]) == PETITIONER
    assert pii.decrypt(stored["agreement_link:3:1:x"]) == PARTY
    assert "re-encrypted 0 rows" in rotate()  # idempotent
    assert await seed_and_read(seed=False) == stored

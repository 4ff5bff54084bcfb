"""The models and the migrations agree (`alembic check`), on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from server.cases.models import CaseNotification
from server.cli import MIGRATIONS_DIR
from server.kernel.db import make_engine, make_sessionmaker
from tests.conftest import in_thread

CREATED = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _config(url: str) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url
    cfg.attributes["skip_logging"] = True
    return cfg


def test_no_drift_between_models_and_migrations(db_url: str) -> None:
    with warnings.catch_warnings():
        # Alembic cannot compare expression indexes (the pg_trgm search indexes); the
        # migrations create them explicitly and the model declares them for PostgreSQL only.
        warnings.filterwarnings("ignore", message=".*expression-based index", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*operator clause", category=UserWarning)
        in_thread(command.check, _config(db_url))


def test_one_linear_history() -> None:
    script = ScriptDirectory.from_config(_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1, f"several migration heads: {script.get_heads()}"


async def test_0008_gives_existing_notifications_the_job_columns(db_url: str) -> None:
    """Down to 0007, a pending message written then, and up again: it is due at its creation
    time, with no error and no lease."""
    cfg = _config(db_url)
    in_thread(command.downgrade, cfg, "0007")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("case_notification")}
            )
            assert "due_at" not in columns and "locked_until" not in columns
            await conn.execute(
                text(
                    'INSERT INTO case_notification (dedupe_key, case_id, "to", channel, subject, '
                    "body, status, attempts, created_at) VALUES ('k1', NULL, '13900000000', "
                    "'sms', 's', 'b', 'pending', 0, :at)"
                ),
                {"at": CREATED},
            )
        in_thread(command.upgrade, cfg, "head")
        async with make_sessionmaker(engine)() as session:
            row = await session.scalar(
                select(CaseNotification).where(CaseNotification.dedupe_key == "k1")
            )
    finally:
        await engine.dispose()
    assert row is not None
    assert row.due_at == row.created_at == CREATED
    assert row.last_error == "" and row.locked_until is None

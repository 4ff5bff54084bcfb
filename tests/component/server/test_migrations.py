"""The models and the migrations agree (`alembic check`), on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from server.cli import MIGRATIONS_DIR
from tests.conftest import in_thread


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

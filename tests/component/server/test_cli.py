"""The `onedoor` command as an operator uses it (real subprocesses, real SQLite file)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import serve_settings
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[3]


def onedoor(
    data_dir: Path, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ONEDOOR_")}
    full_env.update({"ONEDOOR_DATA_DIR": str(data_dir), **env})
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        check=check,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli") / "data"
    onedoor(d, "db", "upgrade")
    out = onedoor(d, "demo", "load").stdout
    assert "demo password for every account (shown once)" in out
    assert "shown once" not in onedoor(d, "demo", "load").stdout  # second load changes nothing
    return d


def test_secret_key_file_is_private(data_dir: Path) -> None:
    assert (data_dir / "secret_key").stat().st_mode & 0o077 == 0


def test_user_add_and_bad_roles(data_dir: Path) -> None:
    ok = onedoor(
        data_dir,
        "user",
        "add",
        "newofficer",
        "--name",
        "新同志",
        "--site",
        "330105",
        "--department",
        "hrss",
        "--roles",
        "window_officer,mediator",
        "--password",
        "Strong-pass-2026",
    )
    assert "created staff newofficer" in ok.stdout
    dup = onedoor(
        data_dir,
        "user",
        "add",
        "newofficer",
        "--site",
        "330105",
        "--roles",
        "window_officer",
        "--password",
        "Strong-pass-2026",
        check=False,
    )
    assert dup.returncode == 1 and "conflict" in dup.stderr
    admins = onedoor(
        data_dir,
        "user",
        "add",
        "root2",
        "--site",
        "330105",
        "--roles",
        "sys_admin,audit_admin",
        "--password",
        "Strong-pass-2026",
        check=False,
    )
    assert admins.returncode == 1 and "two admin roles" in admins.stderr
    weak = onedoor(
        data_dir,
        "user",
        "add",
        "weak",
        "--site",
        "330105",
        "--roles",
        "window_officer",
        "--password",
        "short",
        check=False,
    )
    assert weak.returncode == 1 and "invalid_input" in weak.stderr


def test_audit_verify_detects_an_edited_row(data_dir: Path) -> None:
    assert "audit chain intact" in onedoor(data_dir, "audit", "verify").stdout
    with sqlite3.connect(data_dir / "onedoor.db") as conn:
        [(actor,)] = conn.execute("SELECT actor FROM audit_log WHERE id = 1").fetchall()
        conn.execute("UPDATE audit_log SET actor = 'staff:999' WHERE id = 1")
    broken = onedoor(data_dir, "audit", "verify", check=False)
    assert broken.returncode == 1 and "BROKEN at entry 1" in broken.stdout
    with sqlite3.connect(data_dir / "onedoor.db") as conn:
        conn.execute("UPDATE audit_log SET actor = ? WHERE id = 1", (actor,))
    assert onedoor(data_dir, "audit", "verify").returncode == 0


def test_check_hides_secrets_and_reports_reachability(data_dir: Path) -> None:
    out = onedoor(data_dir, "check", ONEDOOR_TURN_SECRET="turn-very-secret").stdout
    assert "turn-very-secret" not in out
    assert "ONEDOOR_TURN_SECRET = **********" in out
    assert "database: reachable" in out
    bad = onedoor(data_dir, "check", check=False, ONEDOOR_REDIS_URL="redis://127.0.0.1:1/0")
    assert bad.returncode == 1 and "redis: UNREACHABLE" in bad.stdout


def test_invalid_setting_fails_at_start_naming_the_variable(data_dir: Path) -> None:
    bad = onedoor(data_dir, "serve", check=False, ONEDOOR_DATABASE_URL="mysql://x/y")
    assert bad.returncode == 2 and "ONEDOOR_DATABASE_URL" in bad.stderr


def test_serve_port_is_the_port_in_invitation_links(tmp_path: Path) -> None:
    """`onedoor serve --port 9100` without ONEDOOR_PUBLIC_URL: links name 9100, not 8080."""
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///:memory:")
    served = serve_settings(settings, host="127.0.0.1", port=9100)
    assert served.effective_public_url == "http://127.0.0.1:9100"
    assert serve_settings(settings, host=None, port=None).port == settings.port
    public = settings.model_copy(update={"public_url": "https://xf.example.cn"})
    assert serve_settings(public, host=None, port=9100).effective_public_url == (
        "https://xf.example.cn"
    )


def test_token_create_list_revoke(data_dir: Path) -> None:
    out = onedoor(
        data_dir,
        "token",
        "create",
        "--user",
        "window01",
        "--name",
        "排班系统",
        "--scopes",
        "case.view,schedule.view",
        "--days",
        "30",
    ).stdout
    token = out.split("keep it safe: ", 1)[1].strip()
    assert token.startswith("odt_")
    token_id = out.split()[1]
    listing = onedoor(data_dir, "token", "list", "--user", "window01").stdout
    assert token[:12] in listing and token not in listing and "active" in listing
    refused = onedoor(
        data_dir,
        "token",
        "create",
        "--user",
        "window01",
        "--name",
        "x",
        "--scopes",
        "audit.read",
        check=False,
    )
    assert refused.returncode == 1 and "token_scope_not_allowed" in refused.stderr
    onedoor(data_dir, "token", "revoke", token_id)
    assert "revoked" in onedoor(data_dir, "token", "list").stdout


def test_holidays_load_replaces_a_year_and_refuses_a_bad_file(
    data_dir: Path, tmp_path: Path
) -> None:
    db = sqlite3.connect(data_dir / "onedoor.db")
    try:
        before = db.execute("SELECT count(*) FROM holiday WHERE day LIKE '2027-%'").fetchone()[0]
        assert before == 13  # the demo loaded the provisional 2027 file
        bad = tmp_path / "bad.json"
        bad.write_text('{"year": 2027, "days": [{"date": "2028-01-01", "name": "x"}]}')
        out = onedoor(data_dir, "holidays", "load", str(bad), check=False)
        assert out.returncode == 1 and "holiday_file_invalid" in out.stderr
        assert (
            db.execute("SELECT count(*) FROM holiday WHERE day LIKE '2027-%'").fetchone()[0] == 13
        )
        good = tmp_path / "good.json"
        good.write_text(
            '{"year": 2027, "days": [{"date": "2027-02-05", "workday": false, "name": "春节"}]}'
        )
        ok = onedoor(data_dir, "holidays", "load", str(good))
        assert "loaded 1 days for 2027" in ok.stdout
        assert db.execute("SELECT count(*) FROM holiday WHERE day LIKE '2027-%'").fetchone()[0] == 1
    finally:
        db.close()

"""docker-compose.yml is valid (checked by Debian's docker-compose; no engine needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_compose_file_is_valid_and_complete() -> None:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing: `make test` installs it")
    env = {
        **os.environ,
        "POSTGRES_PASSWORD": "p",
        "ONEDOOR_SECRET_KEY": "s",
        "ONEDOOR_MEDIA_HOST_ADDRESSES": "192.0.2.10",
        "TURN_HOST": "turn.example",
        "TURN_SECRET": "t",
        "ONEDOOR_PUBLIC_URL": "https://xf.example.gov.cn",
    }
    out = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for service in ("app:", "postgres:", "redis:", "coturn:"):
        assert service in out
    assert out.count("healthcheck:") >= 4
    assert "recordings" in out and "ONEDOOR_REDIS_URL" in out
    missing = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        env={k: v for k, v in env.items() if k != "ONEDOOR_SECRET_KEY"},
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "ONEDOOR_SECRET_KEY" in missing.stderr

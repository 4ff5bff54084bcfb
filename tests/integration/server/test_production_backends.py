"""The app on PostgreSQL + Redis (the production settings): readiness, sign-in, org browser."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.http import keys
from tests.conftest import PrivateRedis, load_demo_into, make_settings, signed_in

pytestmark = pytest.mark.integration


async def test_ready_and_sign_in_on_postgres_and_redis(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    await load_demo_into(pg_url)
    app = create_app(make_settings(tmp_path, pg_url, redis_url=redis_url))
    async with TestClient(TestServer(app)) as client:
        ready = await (await client.get("/readyz")).json()
        assert ready == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
        await signed_in(client, "centre_supervisor")
        tree = await (await client.get("/api/org/sites")).json()
        assert sum(len(street["children"]) for street in tree[0]["children"]) == 94


async def test_readyz_follows_a_redis_restart(tmp_path: Path, sqlite_url: str) -> None:
    """Redis goes away under a running app: /readyz says so, and recovers when it is back."""
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        app = create_app(make_settings(tmp_path, sqlite_url, redis_url=redis.url))
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/readyz")).status == 200
            redis.stop()
            resp = await client.get("/readyz")
            assert resp.status == 503
            body = await resp.json()
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["redis"].startswith("error")
            redis.start()
            for _ in range(50):
                if (await client.get("/readyz")).status == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await client.get("/readyz")).status == 200
    finally:
        redis.stop()


def test_start_fails_clearly_without_redis(tmp_path: Path, sqlite_url: str) -> None:
    """A node configured for Redis does not come up half-connected."""
    import subprocess
    import sys

    env = {
        "ONEDOOR_DATA_DIR": str(tmp_path),
        "ONEDOOR_DATABASE_URL": sqlite_url,
        "ONEDOOR_REDIS_URL": "redis://127.0.0.1:1/0",
        "ONEDOOR_SECRET_KEY": "k" * 32,
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "Redis" in out.stderr or "redis" in out.stderr


async def test_background_jobs_start_and_stop_with_the_app(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    """With background jobs on, the app starts its one job runner (deadline sweep, deadline
    notifications, scheduling reminders, retention, 司法确认 reminders) and stops it cleanly."""
    import asyncio

    await load_demo_into(pg_url)
    app = create_app(make_settings(tmp_path, pg_url, redis_url=redis_url, background_jobs=True))
    async with TestClient(TestServer(app)) as client:
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert "jobs-runner" in names
        assert app[keys.jobs].names == [
            "deadline_sweep",
            "session_no_show",
            "recording_retention",
            "judicial_reminders",
            "deadline_notifications",
            "reminders",
            "webhooks",
        ]
        assert (await client.get("/readyz")).status == 200
        await app[keys.jobs].run_once()  # one round for sure (the loop's may still be running)
        metrics = await (await client.get("/metrics")).text()
    assert "jobs-runner" not in {t.get_name() for t in asyncio.all_tasks()}
    assert 'onedoor_jobs_backlog{queue="reminders"} 0.0' in metrics

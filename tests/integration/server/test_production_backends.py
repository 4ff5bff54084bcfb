"""The app on PostgreSQL + Redis (the production settings): readiness, sign-in, org browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from tests.conftest import load_demo_into, make_settings, signed_in

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


async def test_readyz_reports_unreachable_redis(tmp_path: Path, sqlite_url: str) -> None:
    app = create_app(make_settings(tmp_path, sqlite_url, redis_url="redis://127.0.0.1:1/0"))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("error")


async def test_background_jobs_start_and_stop_with_the_app(tmp_path: Path, pg_url: str,
                                                           redis_url: str) -> None:
    """With background jobs on, the app starts its periodic jobs and stops them cleanly."""
    import asyncio

    await load_demo_into(pg_url)
    app = create_app(make_settings(tmp_path, pg_url, redis_url=redis_url, background_jobs=True))
    async with TestClient(TestServer(app)) as client:
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert "deadline-sweeper" in names
        assert (await client.get("/readyz")).status == 200
    assert "deadline-sweeper" not in {t.get_name() for t in asyncio.all_tasks()}

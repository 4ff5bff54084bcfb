"""Faults in the backing services, on a PostgreSQL of the test's own (killed and restarted).

Requests fail cleanly (503 with a code) while the database is down, nothing is half-written,
and the same app serves again once the database is back: no restart of the app.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from server.app import create_app
from server.cases.models import PetitionCase
from server.kernel.db import make_engine, make_sessionmaker
from tests.conftest import free_port, load_demo_into, make_settings, migrate, signed_in

pytestmark = pytest.mark.integration

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.data = root / "pg"
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(args)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        opts = (
            f"'-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=off'"
        )
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "-o",
            opts,
            "start",
        )

    def kill(self) -> None:
        """An abrupt stop (immediate mode: no clean shutdown, like a crash)."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists() or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL 15 binaries and root (for su postgres)")
    pg = PrivatePostgres(Path("/tmp") / f"onedoor-pg-{os.getpid()}-{tmp_path.name}")
    pg.init()
    pg.start()
    yield pg
    subprocess.run(
        [
            "su",
            "postgres",
            "-s",
            "/bin/sh",
            "-c",
            f"{PG_BIN / 'pg_ctl'} -D {pg.data} -m immediate stop",
        ],
        capture_output=True,
    )
    shutil.rmtree(pg.root, ignore_errors=True)


async def _intake(client: TestClient[Any, Any], token: str, n: int) -> Any:
    return await client.post(
        "/api/cases",
        json={
            "channel": "window",
            "site_id": 1,
            "summary": f"小区噪音扰民问题 {n}",
            "petitioner": {"name": "王秀英", "phone": "13812340000"},
        },
        headers={"X-CSRF-Token": token},
    )


@pytest.mark.timeout(300)
async def test_postgres_restart_fails_cleanly_and_recovers(
    tmp_path: Path, private_pg: PrivatePostgres
) -> None:
    migrate(private_pg.url)
    await load_demo_into(private_pg.url)
    app = create_app(make_settings(tmp_path, private_pg.url))
    async with TestClient(TestServer(app)) as client:
        token = await signed_in(client, "window_officer")
        assert (await _intake(client, token, 1)).status == 201

        await asyncio.to_thread(private_pg.kill)
        failed = await _intake(client, token, 2)
        assert failed.status == 503
        assert (await failed.json())["error"] == "service_unavailable"
        assert (await client.get("/readyz")).status == 503

        await asyncio.to_thread(private_pg.start)
        resp = await _intake(client, token, 3)
        for _ in range(50):
            if resp.status == 201:
                break
            await asyncio.sleep(0.2)
            resp = await _intake(client, token, 3)
        assert resp.status == 201, await resp.text()
        assert (await client.get("/readyz")).status == 200

    engine = make_engine(private_pg.url)
    try:
        async with make_sessionmaker(engine).begin() as s:
            rows = (
                await s.execute(
                    select(PetitionCase.seq, PetitionCase.summary).order_by(PetitionCase.seq)
                )
            ).all()
    finally:
        await engine.dispose()
    # The intake that met the outage left nothing behind; numbering stayed gap-free.
    assert [seq for seq, _ in rows] == [1, 2]
    assert [summary[-1] for _, summary in rows] == ["1", "3"]

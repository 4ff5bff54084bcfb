"""No request can hold the database (issue #21): failing requests release their connection.

A route added for the test runs a statement the driver rejects while binding (2**63 overflows
both SQLite's and PostgreSQL's integers) inside a transaction, the path every unexpected error
takes. A thousand of them, twenty at a time, must each end in a plain 500 (422 on PostgreSQL;
not a 503 "database is locked" behind a stuck writer), and afterwards the pool and SQLite's write gate are free and
a normal write succeeds (a held gate would make it fail with database_busy).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from server.app import create_app
from server.audit.models import AuditEntry
from server.audit.service import record
from server.http import keys
from server.http.auth import public
from server.kernel.sqlite_gate import gate_of
from server.org.models import Staff
from tests.conftest import make_settings

FAILING_REQUESTS = 1000
IN_FLIGHT = 20


@public("test only: a transaction whose statement fails in the driver")
async def _failing(request: web.Request) -> web.Response:
    async with request.app[keys.db].begin() as session:
        await session.get(Staff, 2**63)  # bypasses the edge's id check on purpose
    return web.json_response({})


@pytest.mark.timeout(300)
async def test_failing_requests_release_their_connections(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(tmp_path, db_url))
    app.router.add_get("/test/failing", _failing)
    statuses: Counter[str] = Counter()
    async with TestClient(TestServer(app)) as client:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            async with (
                gate,
                client.get("/test/failing", headers={"Accept": "application/json"}) as resp,
            ):
                body = await resp.json()
                statuses[f"{resp.status} {body['error']}"] += 1

        async def healthz_during() -> int:
            await asyncio.sleep(0)
            async with client.get("/healthz") as resp:
                return resp.status

        results = await asyncio.gather(*(one() for _ in range(FAILING_REQUESTS)), healthz_during())
        assert results[-1] == 200
        # On a loaded machine a request may wait past the gate's bound: 503 database_busy is
        # the designed answer. A stuck writer showed as "database is locked" after 30 s
        # (service_unavailable), or as a hang.
        # PostgreSQL's rejection is a data exception, answered 422 (server/middlewares.py).
        failed = "500 internal_error" if db_url.startswith("sqlite") else "422 invalid_input"
        assert set(statuses) <= {failed, "503 database_busy"}, statuses
        assert statuses[failed] > 0

        engine = app[keys.engine]
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        write_gate = gate_of(engine)
        assert write_gate is None or not write_gate.locked
        if db_url.startswith("sqlite"):
            assert write_gate is not None
        async with app[keys.db].begin() as session:
            await record(session, actor="test", action="test.write_after_failures")
        async with app[keys.db].begin() as session:
            written = await session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "test.write_after_failures")
            )
        assert written == 1
    caplog.clear()  # the thousand 500s logged their tracebacks, as unexpected errors should


async def test_healthz_answers_while_the_database_is_held(tmp_path: Path, sqlite_url: str) -> None:
    """Liveness never touches the database, even for a browser that sends its session cookie:
    with SQLite's write gate held by another transaction, /healthz still answers 200 (through
    the database it would wait out the gate and answer 503 database_busy); /readyz may wait."""
    app = create_app(make_settings(tmp_path, sqlite_url))
    async with TestClient(TestServer(app)) as client, app[keys.db].begin() as session:
        await record(session, actor="test", action="test.hold_the_gate")
        write_gate = gate_of(app[keys.engine])
        assert write_gate is not None and write_gate.locked
        async with client.get("/healthz", cookies={"od_session": "x" * 43}) as resp:
            assert resp.status == 200
            assert (await resp.json()) == {"status": "ok"}


async def test_a_request_that_cannot_get_the_database_answers_503_database_busy(
    tmp_path: Path, demo_sqlite_url: str
) -> None:
    """With the write gate held past the bound (shortened here), a request answers 503 with a
    stable code instead of queueing; once the holder is done, everything is free again."""
    app = create_app(make_settings(tmp_path, demo_sqlite_url))
    async with TestClient(TestServer(app)) as client:
        write_gate = gate_of(app[keys.engine])
        assert write_gate is not None
        write_gate.wait_s = 0.2
        async with app[keys.db].begin() as session:
            await record(session, actor="test", action="test.hold_the_gate")
            resp = await client.get("/api/public/reports/1")
            assert resp.status == 503
            assert (await resp.json())["error"] == "database_busy"
        assert not write_gate.locked
        assert app[keys.engine].sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        resp = await client.get("/api/public/reports/1")
        assert resp.status == 404  # reached the database: no such report

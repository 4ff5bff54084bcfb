"""Shared fixtures: settings, real PostgreSQL and Redis, schema built by the migrations, and an
aiohttp test client around `create_app`.

Under CI=true an unreachable PostgreSQL or Redis fails the run; locally it skips those tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from server.kernel.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "ONEDOOR_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ONEDOOR_TEST_REDIS", "redis://127.0.0.1:6379/0")
DEMO_PASSWORD = "demo-pass-2026"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _dump_asyncio_state() -> None:
    """Print every running event loop's pending tasks (with their stacks) and timers. A test
    that hangs with an idle loop shows only `select` in pytest-timeout's thread dump; this
    shows what the loop waits for."""
    import gc

    out = sys.stderr
    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]:
        if not loop.is_running():
            continue
        tasks = asyncio.all_tasks(loop)
        print(f"\n=== asyncio: {len(tasks)} pending tasks on {loop!r}", file=out)
        for task in sorted(tasks, key=lambda t: t.get_name()):
            print(f"--- {task!r}", file=out)
            task.print_stack(limit=12, file=out)
        scheduled = list(getattr(loop, "_scheduled", []))
        print(f"=== {len(scheduled)} timers", file=out)
        for handle in scheduled[:40]:
            print(f"    {handle!r}", file=out)
    out.flush()


@pytest.fixture(autouse=True)
def _hang_report(request: pytest.FixtureRequest) -> Iterator[None]:
    """A few seconds before pytest-timeout fails a test, dump the asyncio state (see above).
    Set up before and torn down after the test's other fixtures, so hangs in their teardown
    are covered too."""
    marker = request.node.get_closest_marker("timeout")
    timeout = (
        float(marker.args[0])
        if marker and marker.args
        else float(request.config.getini("timeout") or 0)
    )
    if timeout <= 10:
        yield
        return
    timer = threading.Timer(timeout - 5, _dump_asyncio_state)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, port: int) -> None:
    if _reachable(url, port):
        return
    message = f"{name} at {url} is unreachable"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service fails the run)")
    pytest.skip(message)


def _psql(sql: str, db: str = "postgres") -> None:
    parsed = urlparse(PG_ADMIN_URL.replace("+asyncpg", ""))
    subprocess.run(
        [
            "psql",
            "-h",
            parsed.hostname or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ],
        check=True,
        capture_output=True,
    )


def _pg_url(dbname: str) -> str:
    parsed = urlparse(PG_ADMIN_URL)
    return (
        PG_ADMIN_URL.replace(parsed.path, "/" + dbname, 1)
        if parsed.path
        else PG_ADMIN_URL + "/" + dbname
    )


def in_thread(fn: Any, *args: Any) -> Any:
    """Run blocking set-up (alembic, asyncio.run) on its own thread: session fixtures may be
    first requested from inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def migrate(url: str) -> None:
    from server.cli import alembic_upgrade

    in_thread(alembic_upgrade, url)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database migrated once per test session; tests clone it (fast)."""
    require_service("PostgreSQL", PG_ADMIN_URL, 5432)
    name = f"onedoor_tpl_{os.getpid()}"
    _psql(f'DROP DATABASE IF EXISTS "{name}"')
    _psql(f'CREATE DATABASE "{name}"')
    migrate(_pg_url(name))
    yield name
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test (cloned from the template)."""
    name = f"onedoor_t_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "onedoor.db"
    target.write_bytes(sqlite_template.read_bytes())
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL; tests using it run on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    """Each Redis test gets its own key and channel prefix."""
    return f"odtest:{uuid.uuid4().hex[:10]}:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, to stop and restart at will."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "secret_key": SecretStr(secrets.token_urlsafe(32)),
        "media_host_addresses": ["127.0.0.1"],
        "login_lockout_s": 60,
        # Periodic jobs would run at arbitrary moments inside tests; the tests that need them
        # turn them on, and the jobs' own tests call them directly.
        "background_jobs": False,
        # Many tests probe routes and permissions on purpose (a 403 per role, a 404 per
        # route); the error budget's own tests turn it on.
        "error_budget_per_10s": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return make_settings(tmp_path, sqlite_url)


async def load_demo_into(database_url: str) -> None:
    from server.demo.loader import load_demo
    from server.kernel.db import make_engine, make_sessionmaker

    engine = make_engine(database_url)
    async with make_sessionmaker(engine).begin() as session:
        await load_demo(session, password=DEMO_PASSWORD)
    await engine.dispose()


@pytest.fixture(scope="session")
def demo_sqlite_template(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-demo") / "demo.db"
    path.write_bytes(sqlite_template.read_bytes())
    in_thread(asyncio.run, load_demo_into(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def demo_sqlite_url(demo_sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "demo.db"
    target.write_bytes(demo_sqlite_template.read_bytes())
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture(scope="session")
def pg_demo_template(pg_template: str) -> Iterator[str]:
    """The migrated PostgreSQL template with the demo district loaded, once per test session
    (as `demo_sqlite_template`); tests clone it."""
    name = f"onedoor_tpld_{os.getpid()}"
    _psql(f'DROP DATABASE IF EXISTS "{name}"')
    _psql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    in_thread(asyncio.run, load_demo_into(_pg_url(name)))
    yield name
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_demo_url(pg_demo_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database with the demo district for one test (a clone)."""
    name = f"onedoor_t_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_demo_template}"')
    yield _pg_url(name)
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def demo_db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database with the demo district loaded, on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("demo_sqlite_url"))
    return str(request.getfixturevalue("pg_demo_url"))


@pytest.fixture
async def app_client(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    """The whole app on SQLite with the demo district, behind a real HTTP server."""
    from server.app import create_app

    app = create_app(make_settings(tmp_path, demo_sqlite_url))
    async with TestClient(TestServer(app)) as client:
        yield client


_CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


async def csrf_token(client: TestClient[Any, Any]) -> str:
    resp = await client.get("/login")
    match = _CSRF_RE.search(await resp.text())
    assert match, "login page carries a CSRF token"
    return match.group(1)


async def sign_in(
    client: TestClient[Any, Any], username: str, password: str = DEMO_PASSWORD
) -> str:
    """Sign in through the real form; returns the CSRF token for later state changes."""
    token = await csrf_token(client)
    resp = await client.post(
        "/login",
        data={"username": username, "password": password, "_csrf": token},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    return token


#: A demo account per role (server/demo/loader.py).
DEMO_USERS = {
    "community_agent": "agent001",
    "street_coordinator": "coord01",
    "centre_supervisor": "supervisor01",
    "window_officer": "window01",
    "dept_handler": "handler01",
    "dept_leader": "leader01",
    "supervising_leader": "dleader01",
    "mediator": "mediator01",
    "expert": "expert01",
    "court_liaison": "court01",
    "sys_admin": "sysadmin",
    "sec_admin": "secadmin",
    "audit_admin": "auditadmin",
}


async def signed_in(client: TestClient[Any, Any], role: str) -> str:
    """Sign in as the demo account holding `role`; returns the CSRF token."""
    return await sign_in(client, DEMO_USERS[role])

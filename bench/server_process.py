"""Start a real `onedoor serve` (migrated SQLite, demo district) as a subprocess on loopback.
Used by the benchmarks, the API fuzzer and the browser tests; `start_node` starts the nodes of a
multi-node deployment (one PostgreSQL, one Redis: the kill -9 test)."""

from __future__ import annotations

import contextlib
import hashlib
import http.cookiejar
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_PASSWORD = "demo-pass-2026"
START_TIMEOUT_S = 90  # imports the whole service: slow on a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    base_url: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "server.cli", *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        return out.stdout

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def start_again(self) -> None:
        """After `stop()` (or a crash): the same deployment (data, secret, port) comes back."""
        if self.process.poll() is None:
            raise RuntimeError("the server is still running")
        host, port = self.base_url.removeprefix("http://").rsplit(":", 1)
        self.process = _serve(self.env, int(port), self.log_path, host)

    def sign_in(self, username: str, password: str = DEMO_PASSWORD) -> tuple[str, str]:
        """(Cookie header value, CSRF token) of a signed-in staff session."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(self.base_url + "/login", timeout=10).read().decode()
        match = re.search(r'name="csrf-token" content="([^"]+)"', page)
        if match is None:
            raise RuntimeError("no CSRF token on the sign-in page")
        token = match.group(1)
        data = urllib.parse.urlencode(
            {"username": username, "password": password, "_csrf": token}
        ).encode()
        opener.open(self.base_url + "/login", data, timeout=10)
        cookies = "; ".join(f"{c.name}={c.value}" for c in jar)
        if "od_session=" not in cookies:
            raise RuntimeError(f"sign-in as {username} failed")
        return cookies, token


def start_server(tmp: Path, *, host: str = "127.0.0.1", **extra_env: str) -> ServerProcess:
    """`host`: the address it listens on (a shaped-link benchmark's namespace address)."""
    return start_node(tmp, extra_env, host=host)


def start_node(
    tmp: Path, extra_env: Mapping[str, str], *, prepare_db: bool = True, host: str = "127.0.0.1"
) -> ServerProcess:
    """Start one node with `ONEDOOR_*` overrides. `prepare_db=False`: its database is already
    migrated and holds the demo district (the second node of a deployment on one PostgreSQL)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEDOOR_")}
    env.update(
        {
            "ONEDOOR_DATA_DIR": str(tmp / "data"),
            "ONEDOOR_SECRET_KEY": secrets.token_urlsafe(32),
            "ONEDOOR_MEDIA_HOST_ADDRESSES": "127.0.0.1",
            "ONEDOOR_LOG_LEVEL": "INFO",
            # Every load client and browser joins from 127.0.0.1: one address, many residents.
            "ONEDOOR_JOIN_RATE_PER_MIN": "100000",
            **extra_env,
        }
    )
    if prepare_db and not {"ONEDOOR_DATABASE_URL", "ONEDOOR_SECRET_KEY"} & set(extra_env):
        # SQLite: a copy of a data directory prepared once per code version and settings
        template, secret = _prepared_sqlite(env)
        shutil.copytree(template / "data", Path(env["ONEDOOR_DATA_DIR"]), dirs_exist_ok=True)
        env["ONEDOOR_SECRET_KEY"] = secret  # the demo district was loaded under it
    elif prepare_db:
        _prepare(env)
    log_path = tmp / "server.log"
    process = _serve(env, port, log_path, host)
    return ServerProcess(f"http://{host}:{port}", tmp / "data", env, process, log_path)


def _prepare(env: Mapping[str, str]) -> None:
    """Migrate the database `env` names and load the demo district into it."""
    for args in (["db", "upgrade"], ["demo", "load", "--password", DEMO_PASSWORD]):
        subprocess.run(
            [sys.executable, "-m", "server.cli", *args],
            env=env,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )


def _code_version() -> str:
    """A digest of what a prepared database depends on: the service's code and migrations."""
    digest = hashlib.sha256()
    for folder in ("server", "migrations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _prepared_sqlite(env: Mapping[str, str]) -> tuple[Path, str]:
    """A data directory with the migrated SQLite database and the demo district, made once
    for this code version and these `ONEDOOR_*` settings (shared by every process on the
    machine: the browser tests start a server per test, and migrating and loading the district
    took half of each start), and the secret key it was made with."""
    settings = sorted(
        (k, v)
        for k, v in env.items()
        if k.startswith("ONEDOOR_") and k not in ("ONEDOOR_DATA_DIR", "ONEDOOR_SECRET_KEY")
    )
    key = hashlib.sha256(repr((_code_version(), settings)).encode()).hexdigest()[:16]
    template = Path(tempfile.gettempdir()) / f"onedoor-prepared-{key}"
    if not (template / "secret").is_file():
        building = Path(tempfile.mkdtemp(prefix="onedoor-preparing-"))
        secret = secrets.token_urlsafe(32)
        _prepare({**env, "ONEDOOR_DATA_DIR": str(building / "data"), "ONEDOOR_SECRET_KEY": secret})
        (building / "secret").write_text(secret)
        try:
            building.rename(template)  # atomic: a process that lost the race uses the winner's
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    return template, (template / "secret").read_text()


def _serve(
    env: dict[str, str], port: int, log_path: Path, host: str = "127.0.0.1"
) -> subprocess.Popen[bytes]:
    """Start `onedoor serve` and wait until it accepts connections (the log is appended to)."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--host", host, "--port",
             str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log_path.read_text())
        try:
            with socket.create_connection((host, port), 0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"onedoor serve did not start within {START_TIMEOUT_S} s")


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


def bench_databases() -> list[tuple[str, str]]:
    """(label, database) pairs a benchmark runs on: SQLite always, and PostgreSQL when
    ONEDOOR_BENCH_PG names a server (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432)."""
    out = [("sqlite", "sqlite")]
    if os.environ.get("ONEDOOR_BENCH_PG"):
        out.append(("postgresql", os.environ["ONEDOOR_BENCH_PG"]))
    return out


@contextlib.contextmanager
def database_env(database: str, *, label: str) -> Iterator[dict[str, str]]:
    """`ONEDOOR_*` settings for a benchmark's server on `database`: "sqlite" (the data
    directory's, nothing to set) or a PostgreSQL server URL (e.g. ONEDOOR_BENCH_PG), on which a
    fresh database is created for the run and dropped after it."""
    if database == "sqlite":
        yield {}
        return
    name = f"onedoor_bench_{label}_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        yield {"ONEDOOR_DATABASE_URL": f"{database.rstrip('/')}/{name}"}
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

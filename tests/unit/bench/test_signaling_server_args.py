"""`bench.signaling.ours_args`: the arguments that start our service for the signaling benchmark
reach it intact, whatever random secret the run drew."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.signaling import ours_args, parser


@pytest.mark.parametrize("secret", ["-Xy_9", "--looks-like-an-option", "plain"])
def test_every_value_reaches_the_server_even_a_secret_that_begins_with_a_dash(secret: str) -> None:
    argv = ours_args(
        db_url="sqlite+aiosqlite:///b.db",
        node="node-a",
        prefix="bench:",
        secret=secret,
        data=Path("/tmp/x"),
        redis_url="redis://127.0.0.1:6379/0",
    )
    args = parser().parse_args(["--serve", *argv, "--port", "1"])
    assert (args.serve, args.secret, args.db, args.node) == (
        "ours",
        secret,
        "sqlite+aiosqlite:///b.db",
        "node-a",
    )
    assert (args.prefix, args.data, args.redis) == ("bench:", "/tmp/x", "redis://127.0.0.1:6379/0")


def test_without_redis_the_server_runs_on_its_in_process_bus() -> None:
    argv = ours_args(db_url="d", node="n", prefix="p", secret="s", data=Path("."))
    assert parser().parse_args(["--serve", *argv]).redis is None

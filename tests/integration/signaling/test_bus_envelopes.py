"""Envelopes through real Redis: what one node's bus sends arrives typed at the other, and an
envelope no node can read (garbage, an unknown kind, a missing field) is logged once and
skipped: the reading loop goes on with the next one."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis

from signaling.bus import RedisSignalBus
from signaling.envelopes import Detach, NodeBound, Out, RoomBound

pytestmark = pytest.mark.integration

BAD = [b"{", b'{"k": "fly"}', b'{"k": "out", "c": "n-b/1"}']


async def test_bad_envelopes_are_logged_once_and_skipped(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    r1, r2 = Redis.from_url(redis_url), Redis.from_url(redis_url)
    a = RedisSignalBus(r1, "n-a", redis_prefix)
    b = RedisSignalBus(r2, "n-b", redis_prefix)
    at_b: list[NodeBound] = []
    in_room: list[RoomBound] = []
    got_out, got_detach = asyncio.Event(), asyncio.Event()

    def on_node(msg: NodeBound) -> None:
        at_b.append(msg)
        got_out.set()

    def on_room(msg: RoomBound) -> None:
        in_room.append(msg)
        got_detach.set()

    await a.start(lambda msg: None)
    await b.start(on_node)
    await b.host_room("r-1", on_room)
    try:
        caplog.set_level(logging.WARNING, logger="signaling.bus")
        for data in BAD:
            await r1.publish(f"{redis_prefix}node:n-b", data)
            await r1.publish(f"{redis_prefix}room:r-1", data)
        # Sent once Redis took the bad ones (PUBLISH returned): it arrives after them.
        a.send_node("n-b", Out(["n-b/1"], '{"type": "pong", "re": "1"}'))
        a.send_room("r-1", Detach("n-a/1", "p-1"))
        async with asyncio.timeout(5):
            await got_out.wait()
            await got_detach.wait()
        assert at_b == [Out(["n-b/1"], '{"type": "pong", "re": "1"}')]
        assert in_room == [Detach("n-a/1", "p-1")]
        rejected = [r for r in caplog.records if "rejected an envelope" in r.getMessage()]
        assert len(rejected) == 2 * len(BAD)
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in rejected)
        assert {r.getMessage().split(": ")[1] for r in rejected} == {
            "bad_envelope",
            "unknown_envelope",
        }
    finally:
        await a.close()
        await b.close()
        await r1.aclose()
        await r2.aclose()

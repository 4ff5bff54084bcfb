"""A closing node starts nothing new: a task spawned while `close` runs (a re-attach that a
room's stop set off) would outlive the node and keep the shutdown waiting."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from signaling.ws import node_key


async def test_a_closing_node_starts_no_task(server: TestServer) -> None:
    node = server.app[node_key]
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)

    node.spawn(job("before"), name="before")
    await asyncio.sleep(0)
    node._closing = True
    try:
        node.spawn(job("during"), name="during")  # closed at once: no "never awaited" warning
        await asyncio.sleep(0)
        assert ran == ["before"] and not node._spawned
    finally:
        node._closing = False

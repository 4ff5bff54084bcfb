"""The server restarts in the middle of a call (issue #5 §7): both pages say, in Chinese, that
they are reconnecting; once the same deployment is back they resume their places in the room
(same peer ids, nobody re-admitted) and decode each other's camera again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import DEMO_USERS
from tests.e2e.conftest import ARTIFACTS, Server
from tests.e2e.test_web_mediation_media import api, join_by_link
from tests.e2e.webclient import remote_colours, sign_in, wait_each_decoding, watch

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(180)
async def test_a_call_resumes_after_the_server_restarts(server: Server, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    contexts = [
        await browser.new_context(viewport={"width": 1280, "height": 720}, locale="zh-CN")
        for _ in range(2)
    ]
    mediator, resident = pages = [await ctx.new_page() for ctx in contexts]
    for p, name in zip(pages, ("mediator", "张三"), strict=True):
        p.set_default_timeout(15_000)
        await watch(p, name)
    try:
        await sign_in(mediator, server.base_url, DEMO_USERS["mediator"])
        created = await api(
            mediator, server.base_url, "/api/sessions", {"kind": "mediation", "title": "断线重连"}
        )
        await mediator.goto(f"{server.base_url}/rooms/{created['room_id']}")
        await mediator.wait_for_selector("#room[data-status=joined]", timeout=15_000)
        await join_by_link(mediator, resident, server.base_url, created["id"], "张三")
        for p in pages:
            await wait_each_decoding(p, publishers=1)
        peers = [await p.get_attribute("#room", "data-peer") for p in pages]

        server.stop()  # SIGTERM: sockets close with 1001, the process exits
        for p in pages:
            await p.wait_for_selector("#room[data-conn=reconnecting]", timeout=15_000)
            banner = await p.inner_text("#room .room-banner")
            assert "网络中断，正在重新连接" in banner, banner
            assert await p.get_attribute("#room", "data-status") == "joined"  # not ended
        await mediator.screenshot(path=str(ARTIFACTS / "restart-reconnecting.png"))

        server.start_again()
        # Whoever resumes first rebuilds the room; a resident back before the mediator waits,
        # paused, until an official is present again (the room's rule), then rejoins.
        for p in pages:
            await p.wait_for_selector("#room[data-conn=joined][data-status=joined]", timeout=30_000)
            assert await p.get_attribute("#room", "data-final") is None
        assert [await p.get_attribute("#room", "data-peer") for p in pages] == peers
        for p in pages:
            await wait_each_decoding(p, publishers=1, timeout_s=30)
            await remote_colours(p, expect=1)

        # The room is whole again: chat crosses both ways.
        await resident.fill("#chat-text", "重启后还能听到吗？")
        await resident.press("#chat-text", "Enter")
        await mediator.wait_for_selector(".chat-log >> text=重启后还能听到吗？", timeout=10_000)
        await mediator.fill("#chat-text", "能听到，我们继续。")
        await mediator.press("#chat-text", "Enter")
        await resident.wait_for_selector(".chat-log >> text=能听到，我们继续。", timeout=10_000)
        await asyncio.gather(
            mediator.screenshot(path=str(ARTIFACTS / "restart-mediator.png")),
            resident.screenshot(path=str(ARTIFACTS / "restart-resident.png")),
        )
    finally:
        await asyncio.gather(*(ctx.close() for ctx in contexts))

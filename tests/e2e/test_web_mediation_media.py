"""Mediation rooms with real browsers: every Chromium page decodes every other participant's
camera through the SFU (issue #4)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import DEMO_USERS
from tests.e2e.conftest import ARTIFACTS, Server
from tests.e2e.webclient import remote_colours, sign_in, wait_each_decoding, watch

pytestmark = pytest.mark.e2e


async def api(page: Any, base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    resp = await page.request.post(base_url + path, data=body, headers={"X-CSRF-Token": csrf})
    assert resp.ok, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def join_by_link(host: Any, guest: Any, base_url: str, session_id: int, name: str) -> None:
    """The host issues a link; the guest opens it, joins, waits in the lobby, is admitted."""
    issued = await api(host, base_url, f"/api/sessions/{session_id}/tokens", {"display_name": name})
    await guest.goto(base_url + issued["url"])
    await guest.wait_for_selector("#prejoin[data-ready=true]", timeout=10_000)
    await guest.click("#join-btn")
    await guest.wait_for_selector("#room[data-status=lobby]", timeout=10_000)
    admit = host.locator(".lobby-list li", has_text=name).locator("button[data-act=admit]")
    await admit.wait_for(timeout=10_000)
    await admit.click()
    await guest.wait_for_selector("#room[data-status=joined]", timeout=10_000)


async def test_three_browsers_in_a_mediation_room_each_decode_the_other_two(
    server: Server, browser: Any
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    contexts = [
        await browser.new_context(viewport={"width": 1280, "height": 720}, locale="zh-CN")
        for _ in range(3)
    ]
    pages = [await ctx.new_page() for ctx in contexts]
    names = ["mediator", "张三", "李四"]
    for p, name in zip(pages, names, strict=True):
        p.set_default_timeout(15_000)
        await watch(p, name)
    mediator, first, second = pages
    try:
        await sign_in(mediator, server.base_url, DEMO_USERS["mediator"])
        created = await api(
            mediator, server.base_url, "/api/sessions", {"kind": "mediation", "title": "三方调解"}
        )
        await mediator.goto(f"{server.base_url}/rooms/{created['room_id']}")
        await mediator.wait_for_selector("#room[data-status=joined]", timeout=15_000)
        await join_by_link(mediator, first, server.base_url, created["id"], "张三")
        await join_by_link(mediator, second, server.base_url, created["id"], "李四")

        stats = await asyncio.gather(*(wait_each_decoding(p, publishers=2) for p in pages))
        for result in stats:
            assert result["state"] == "connected"
        colours = await asyncio.gather(*(remote_colours(p, expect=2) for p in pages))
        assert all(len(c) >= 2 for c in colours)
        # Someone's fake microphone beeps: the server reads the audio level and marks a speaker.
        await mediator.wait_for_selector("#room .tile.speaking", timeout=10_000)
        for p, name in zip(pages, ("mediator", "guest1", "guest2"), strict=True):
            await p.screenshot(path=str(ARTIFACTS / f"mediation-3-{name}.png"))
    finally:
        await asyncio.gather(*(ctx.close() for ctx in contexts))

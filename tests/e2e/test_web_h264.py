"""H.264 (constrained baseline) as the deployment's video codec: two Chromium pages in one
mediation room send and decode each other's H.264 through the passthrough SFU."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.server_process import start_server
from tests.conftest import DEMO_USERS
from tests.e2e.conftest import ARTIFACTS, Server
from tests.e2e.test_web_mediation_media import api, join_by_link
from tests.e2e.webclient import remote_colours, sign_in, wait_each_decoding, watch

pytestmark = pytest.mark.e2e

CODECS_JS = """async () => {
  const pc = window.onedoorRoom.media.pc;
  const stats = await pc.getStats();
  const byId = new Map(); stats.forEach((s) => byId.set(s.id, s));
  const used = {inbound: [], outbound: []};
  stats.forEach((s) => {
    if ((s.type === 'inbound-rtp' || s.type === 'outbound-rtp') && s.kind === 'video' && s.codecId) {
      const c = byId.get(s.codecId);
      used[s.type === 'inbound-rtp' ? 'inbound' : 'outbound'].push([c.mimeType, c.sdpFmtpLine || '']);
    }
  });
  return used;
}"""


@pytest.fixture
def h264_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path, ONEDOOR_MEDIA_VIDEO_CODEC="h264")
    yield srv
    srv.stop()


async def test_two_browsers_exchange_h264_video(h264_server: Server, browser: Any) -> None:
    server = h264_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    contexts = [
        await browser.new_context(viewport={"width": 1280, "height": 720}, locale="zh-CN")
        for _ in range(2)
    ]
    mediator, guest = [await ctx.new_page() for ctx in contexts]
    for p, name in ((mediator, "mediator"), (guest, "guest")):
        p.set_default_timeout(15_000)
        await watch(p, name)
    try:
        await sign_in(mediator, server.base_url, DEMO_USERS["mediator"])
        created = await api(
            mediator, server.base_url, "/api/sessions", {"kind": "mediation", "title": "H.264"}
        )
        await mediator.goto(f"{server.base_url}/rooms/{created['room_id']}")
        await mediator.wait_for_selector("#room[data-status=joined]", timeout=15_000)
        await join_by_link(mediator, guest, server.base_url, created["id"], "张三")

        for result in await asyncio.gather(
            *(wait_each_decoding(p, publishers=1) for p in (mediator, guest))
        ):
            assert result["state"] == "connected"
        await asyncio.gather(*(remote_colours(p, expect=1) for p in (mediator, guest)))
        for p in (mediator, guest):
            used = await p.evaluate(CODECS_JS)
            assert used["inbound"] and used["outbound"], used
            for mime, fmtp in used["inbound"] + used["outbound"]:
                assert mime == "video/H264", used
                assert "packetization-mode=1" in fmtp and "profile-level-id=42" in fmtp, used
        await mediator.screenshot(path=str(ARTIFACTS / "h264-mediator.png"))
    finally:
        await asyncio.gather(*(ctx.close() for ctx in contexts))

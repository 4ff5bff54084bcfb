"""A Chromium publisher sends VP8 with temporal layers (issue #18 item 3): the page's own
`MediaLink` (web/static/media.js) sets `scalabilityMode` L1T3 once VP8 is negotiated, and the
SFU (an `SfuMediaNode` in this process, signaling replaced by direct calls) reads TIDs 0, 1 and
2 from the RTP payload descriptors of what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from media.interfaces import PeerDescription, PublishGrant, SessionDescription
from media.sfu import SfuMediaNode
from tests.e2e.conftest import Server
from tests.e2e.webclient import watch

pytestmark = pytest.mark.e2e

ROOM = "layers"

START_LINK = """
async () => {
  const { MediaLink } = await import('/static/media.js');
  const stream = await navigator.mediaDevices.getUserMedia(
    { video: { width: 640, height: 360, frameRate: 15 }, audio: false });
  const sig = new EventTarget();
  sig.request = (msg) => window.sfuRequest(msg);
  sig.send = () => {};
  window.sig = sig;
  window.link = new MediaLink(sig, [], stream);
  await window.link.start();
}
"""


async def test_a_chromium_publishers_frames_reach_the_sfu_in_temporal_layers_0_to_2(
    server: Server, browser: Any
) -> None:
    node = SfuMediaNode(host_addresses=["127.0.0.1"])
    contexts = [await browser.new_context() for _ in range(2)]
    pages: dict[str, Any] = {}
    for n, ctx in enumerate(contexts):
        page = await ctx.new_page()
        await watch(page, f"p{n}")
        pages[f"p{n}"] = page

    def handler(peer_id: str) -> Any:
        async def request(msg: dict[str, Any]) -> dict[str, Any]:
            if msg["type"] == "offer":
                answer = await node.accept_offer(
                    room_id=ROOM,
                    peer_id=peer_id,
                    offer=SessionDescription("offer", msg["sdp"]),
                    ice_servers=[],
                    grant=PublishGrant(),
                )
                return {"sdp": answer.sdp}
            await node.accept_answer(
                room_id=ROOM, peer_id=peer_id, answer=SessionDescription("answer", msg["sdp"])
            )
            return {}

        return request

    async def deliver_server_offers() -> None:
        async for event in node.events():
            if isinstance(event, PeerDescription) and event.peer_id in pages:
                await pages[event.peer_id].evaluate(
                    "sdp => window.sig.dispatchEvent(new CustomEvent('offer', {detail: {sdp}}))",
                    event.description.sdp,
                )

    pump = asyncio.create_task(deliver_server_offers())
    try:
        for peer_id, page in pages.items():
            await page.expose_function("sfuRequest", handler(peer_id))
            await page.goto(server.base_url + "/login")
            await page.evaluate(START_LINK)
        deadline = time.monotonic() + 30
        while True:
            video = [s for s in node.subscription_stats(ROOM) if s.kind == "video"]
            by_tid = [s.frames_in_by_tid for s in video]
            if len(video) == 2 and all(all(c[t] > 0 for t in range(3)) for c in by_tid):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"no frames in every temporal layer: {by_tid}")
            await asyncio.sleep(0.5)
        for page in pages.values():
            assert await page.evaluate("window.link._scalability") == "L1T3"
        # L1T3 is 0 2 1 2: half the frames are TL2, a quarter each TL0 and TL1
        for counts in by_tid:
            assert counts[0] > 0 and counts[2] >= counts[0] and counts[3] == 0
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await asyncio.gather(*(ctx.close() for ctx in contexts))
        await node.close()

"""WsTransport against a real aiohttp server and a client that negotiates permessage-deflate.

aiohttp compresses a frame larger than 16 KiB in an executor task: the write suspends on that
task, so the transport has to drive `send_str` to its end by hand. Renegotiation offers to a
browser in a room of six or more are that large (Chrome always offers permessage-deflate).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from signaling.ws import WsTransport

CLOSE_CODE = 4000


def _frames() -> list[str]:
    rng = random.Random(7)

    def text(n: int, tag: str) -> str:
        # SDP-like text that does not compress to nothing: the executor has work to do.
        lines = [f"a=ssrc:{rng.getrandbits(32)} cname:{rng.getrandbits(64):016x}" for _ in range(n)]
        return json.dumps({"type": "offer", "tag": tag, "sdp": "\r\n".join(lines)})

    return [
        json.dumps({"type": "answer", "tag": "small-0"}),
        text(2000, "large-1"),  # ~100 KB: compressed in an executor
        json.dumps({"type": "ack", "tag": "small-2"}),
        text(400, "large-3"),  # ~20 KB: just over aiohttp's 16 KiB synchronous limit
        json.dumps({"type": "ack", "tag": "small-4"}),
    ]


async def _serve(frames: list[str], errors: list[Exception], done: asyncio.Event) -> TestServer:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        transport = WsTransport(ws)
        try:
            for text in frames:
                transport.send_text(text)
                await asyncio.sleep(0)  # later frames arrive while a large one is compressed
            transport.close(CLOSE_CODE, "done")
            async with asyncio.timeout(10):
                await transport.task
        except Exception as e:  # reported by the test, not lost in the handler
            # (not CancelledError: the test server cancels a handler whose client went away)
            errors.append(e)
            raise
        finally:
            await transport.stop()
            done.set()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def _receive_all(server: TestServer, compress: int) -> tuple[list[str], Any, int]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(server.make_url("/ws"), compress=compress) as ws,
    ):
        got: list[str] = []
        async with asyncio.timeout(10):
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                got.append(json.loads(msg.data)["tag"])
        return got, ws.close_code, ws.compress


async def test_large_compressed_frames_arrive_in_order_before_the_close() -> None:
    frames = _frames()
    errors: list[Exception] = []
    done = asyncio.Event()
    server = await _serve(frames, errors, done)
    try:
        got, code, negotiated = await _receive_all(server, compress=15)
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        await server.close()
    assert negotiated == 15, "the client negotiated permessage-deflate"
    assert got == [json.loads(f)["tag"] for f in frames]
    assert code == CLOSE_CODE
    assert errors == []


async def test_every_frame_arrives_without_compression_too() -> None:
    frames = _frames()
    errors: list[Exception] = []
    done = asyncio.Event()
    server = await _serve(frames, errors, done)
    try:
        got, code, negotiated = await _receive_all(server, compress=0)
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        await server.close()
    assert negotiated == 0
    assert got == [json.loads(f)["tag"] for f in frames]
    assert code == CLOSE_CODE
    assert errors == []

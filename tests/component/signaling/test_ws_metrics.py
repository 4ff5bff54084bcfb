"""Open signaling connections show in /metrics (onedoor_websockets)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from tests.polling import eventually


async def _gauge(client: TestClient[Any, Any]) -> float:
    text = await (await client.get("/metrics")).text()
    match = re.search(r"^onedoor_websockets (\S+)$", text, re.M)
    assert match, "gauge exported"
    return float(match.group(1))


async def test_websocket_gauge_follows_connections(app_client: TestClient[Any, Any]) -> None:
    assert await _gauge(app_client) == 0
    ws = await app_client.ws_connect("/ws", protocols=("onedoor.v1",))
    await ws.receive_json()  # hello
    assert await _gauge(app_client) == 1
    await ws.close()

    async def released() -> bool:
        return await _gauge(app_client) == 0

    await eventually(released, what="the gauge to drop after the close")

"""Media tests: real aiortc peers on loopback, host candidates restricted to 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from media.sfu import SfuMediaNode
from tests.media.rtc_clients import EventPump

pytestmark = pytest.mark.media


@pytest.fixture
async def node() -> AsyncIterator[SfuMediaNode]:
    node = SfuMediaNode(host_addresses=["127.0.0.1"], ice_connect_timeout_s=10.0)
    yield node
    await node.close()


@pytest.fixture
async def pump(node: SfuMediaNode) -> AsyncIterator[EventPump]:
    pump = EventPump(node)
    yield pump
    await pump.close()

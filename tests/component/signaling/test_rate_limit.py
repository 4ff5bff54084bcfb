"""Per-connection token bucket: over-limit messages get `rate_limited`, the rest go through."""

from __future__ import annotations

import pytest

from signaling.config import Limits
from tests.component.signaling.conftest import MakeParticipant
from tests.component.signaling.harness import new_session


@pytest.fixture
def limits() -> Limits:
    return Limits(heartbeat_s=5.0, lease_ms=1000, attach_timeout_s=0.5, rate_per_s=1.0, burst=5)


async def test_rate_limit_gives_typed_errors(people: MakeParticipant) -> None:
    host = await people("host", "mediator01")
    sess = await new_session(host)
    await host.connect()
    await host.join(sess["room_id"])
    guest = host
    ids = [await guest.send("presence", quality="good") for _ in range(12)]
    codes = []
    for msg_id in ids:
        m = await guest.expect_where(lambda m, i=msg_id: m.get("re") == i)
        codes.append(m.get("code", m["type"]))
    assert "rate_limited" in codes
    assert codes[0] == "ack"

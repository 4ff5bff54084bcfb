"""No ghosts (issue #16): a participant whose socket went away and who never resumed is removed
when the grace period runs out, and someone who enters later never sees it (连接中断), also
when the room is rebuilt from its saved state long after the drop."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from server.kernel.db import utcnow
from signaling.ws import node_key
from tests.component.signaling.conftest import MakeParticipant
from tests.component.signaling.harness import Participant, new_session, new_token


async def _room_with_dropped_guest(
    people: MakeParticipant,
) -> tuple[dict[str, Any], Participant, str]:
    """A mediation: its host, and an admitted guest whose socket just went away."""
    host = await people("host", "mediator01")
    sess = await new_session(host)
    invite = await new_token(host, sess["id"], name="张三")
    await host.connect()
    await host.join(sess["room_id"])
    guest = await people("guest")
    await guest.connect()
    await guest.join(sess["room_id"], token=invite["token"])
    assert (await host.request("admit", peer_id=guest.peer_id))["type"] == "ack"
    await guest.expect("admitted")
    await guest.drop()
    upd = await host.expect_where(lambda m: m["type"] == "participant_update"
                                  and not m["participant"]["connected"])  # fmt: skip
    assert upd["participant"]["peer_id"] == guest.peer_id
    return sess, host, guest.peer_id


def _ghosts(p: Participant, welcome: dict[str, Any], peer_id: str) -> list[Any]:
    """What `p` was shown of `peer_id`: in its roster, or as an update or departure since."""
    shown = [x for x in welcome["participants"] if x["peer_id"] == peer_id]
    shown += [m for m in p.backlog if m.get("participant", {}).get("peer_id") == peer_id]
    return shown + [m for m in p.backlog if m.get("peer_id") == peer_id]


@pytest.mark.parametrize("grace_s", [0.5])
async def test_an_abandoned_participant_is_gone_after_the_grace_period(
    people: MakeParticipant,
) -> None:
    sess, host, ghost = await _room_with_dropped_guest(people)
    # The grace period runs out (the harness waits with a deadline, no fixed sleep).
    left = await host.expect("participant_left", peer_id=ghost)
    assert left["reason"] == "timeout"
    later = await people("later", "expert01")
    await later.connect()
    welcome = await later.join(sess["room_id"])
    assert (await later.request("ping"))["type"] == "pong"  # everything sent before is in
    assert _ghosts(later, welcome, ghost) == []


async def test_a_room_rebuilt_after_the_grace_period_shows_no_ghost(
    server: TestServer, people: MakeParticipant
) -> None:
    node = server.app[node_key]
    sess, host, ghost = await _room_with_dropped_guest(people)
    room_id = sess["room_id"]
    assert (await host.request("leave"))["type"] == "ack"
    # The node lets the room go with the ghost still in its grace period (as a node that shuts
    # down does): its state, with the drop time, is saved for the next owner.
    await node.retire(node.rooms[room_id])
    assert room_id not in node.rooms
    # Much later (the node's clock, injected, moves past the grace period), someone enters.
    node.now = lambda: utcnow() + timedelta(seconds=node.config.grace_s + 60)
    later = await people("later", "expert01")
    await later.connect()
    welcome = await later.join(room_id)
    assert (await later.request("ping"))["type"] == "pong"
    assert _ghosts(later, welcome, ghost) == []

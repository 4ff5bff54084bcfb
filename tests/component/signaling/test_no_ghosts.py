"""No ghosts (issue #16): a participant whose socket went away and who never resumed is removed
when the grace period runs out, and someone who enters later never sees it (连接中断), also
when the room is rebuilt from its saved state long after the drop."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from server.http import keys
from server.kernel.db import utcnow
from server.org.models import Staff
from signaling.envelopes import Attach, Detach
from signaling.roomstate import ROLE_PERMISSIONS, MemberSpec
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


async def test_a_connection_its_edge_gave_up_on_is_not_kept_as_connected(
    server: TestServer, people: MakeParticipant
) -> None:
    """The owner took an attach its edge had given up on (it answered too late): the edge's
    detach names the peer id it asked for; the owner lets that connection's place go."""
    node = server.app[node_key]
    host = await people("host", "mediator01")
    sess = await new_session(host)
    await host.connect()
    await host.join(sess["room_id"])
    async with server.app[keys.db]() as session:
        staff_id = await session.scalar(select(Staff.id).where(Staff.username == "expert01"))
    conn = f"{node.config.node_id}/gave-up"
    spec = MemberSpec(peer_id="p-asked", identity=f"staff:{staff_id}", display_name="李四",
                      role="official", is_staff=True,
                      permissions=ROLE_PERMISSIONS["official"])  # fmt: skip
    node.to_room(sess["room_id"], Attach(conn, node.config.node_id, spec, "join", None, None))
    joined = await host.expect("participant_joined")
    assert joined["participant"]["peer_id"] == "p-asked"
    # The detach names another peer id (as when the room gave the attach the identity's
    # existing place): the owner finds the place by its connection.
    node.to_room(sess["room_id"], Detach(conn, "p-other"))
    upd = await host.expect_where(lambda m: m["type"] == "participant_update"
                                  and not m["participant"]["connected"])  # fmt: skip
    assert upd["participant"]["peer_id"] == "p-asked"

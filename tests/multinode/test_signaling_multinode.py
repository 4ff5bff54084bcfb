"""Two app instances on one real Redis and one database: participants on different nodes share a
room; when the owner node dies, its room is re-homed and everybody resumes on the survivor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from server.kernel.db import utcnow
from signaling.config import Limits
from signaling.ws import bus_key, node_key
from tests.component.signaling.harness import (
    FakeMediaNode,
    Participant,
    new_session,
    new_token,
)
from tests.multinode.nodes import two_nodes

pytestmark = pytest.mark.multinode


@pytest.fixture
async def nodes(
    tmp_path: Path, demo_sqlite_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    async with two_nodes(tmp_path, demo_sqlite_url, redis_url, prefix=redis_prefix,
                         limits=Limits(heartbeat_s=5.0, lease_ms=1000, attach_timeout_s=0.5),
                         signaling_grace_s=20, login_rate_per_min=10_000,
                         join_rate_per_min=10_000) as servers:  # fmt: skip
        yield servers


@pytest.fixture
async def people() -> AsyncIterator[list[Participant]]:
    made: list[Participant] = []
    yield made
    for p in made:
        await p.close()


async def _person(made: list[Participant], server: TestServer, name: str,
                  username: str | None = None) -> Participant:  # fmt: skip
    p = await Participant.create(server, name)
    if username:
        await p.sign_in(username)
    made.append(p)
    return p


async def _room_across_nodes(
    made: list[Participant], a: TestServer, b: TestServer, guest_name: str
) -> tuple[dict[str, Any], Participant, Participant, Participant]:
    """A mediation owned by A: its host and an admitted guest on A, an official on B.
    Returns the session, the host, the guest and the official."""
    host = await _person(made, a, "host on A", "mediator01")
    sess = await new_session(host)
    invite = await new_token(host, sess["id"], name=guest_name)
    await host.connect()
    await host.join(sess["room_id"])
    guest = await _person(made, a, "guest on A")
    await guest.connect()
    await guest.join(sess["room_id"], token=invite["token"])
    await host.request("admit", peer_id=guest.peer_id)
    await guest.expect("admitted")
    official = await _person(made, b, "official on B", "expert01")
    await official.connect()
    await official.join(sess["room_id"])
    return sess, host, guest, official


def crash(server: TestServer) -> None:
    """Stop a node the way a killed process stops: no cleanup, no lease release, no messages."""
    node = server.app[node_key]
    for task in [*node._tasks, *getattr(node.bus, "_tasks", [])]:
        task.cancel()
    for actor in node.rooms.values():
        actor.stopped = True
        actor.task.cancel()
    node.rooms.clear()
    node.attached.clear()


async def test_participants_on_two_nodes_share_a_room(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    a, b = nodes
    host = await _person(people, a, "host on A", "mediator01")
    sess = await new_session(host)
    invite = await new_token(host, sess["id"], name="李四")
    await host.connect()
    assert (await host.join(sess["room_id"]))["status"] == "joined"

    guest = await _person(people, b, "guest on B")
    hello = await guest.connect()
    assert hello["node_id"] == "node-b"
    assert (await guest.join(sess["room_id"], token=invite["token"]))["status"] == "lobby"
    waiting = await host.expect("lobby_update")
    assert waiting["waiting"][0]["display_name"] == "李四"
    await host.request("admit", peer_id=guest.peer_id)
    await guest.expect("admitted")
    assert (await guest.request("chat", text="从B节点"))["type"] == "ack"
    assert (await host.expect("chat_message"))["text"] == "从B节点"
    assert (await host.request("chat", text="从A节点"))["type"] == "ack"
    assert (await guest.expect("chat_message", text="从A节点"))["from_peer"] == host.peer_id
    assert sess["room_id"] in a.app[node_key].rooms
    assert sess["room_id"] not in b.app[node_key].rooms

    # A third participant, staff, on B: everyone sees everyone.
    official = await _person(people, b, "official on B", "expert01")
    await official.connect()
    w = await official.join(sess["room_id"])
    assert {p["peer_id"] for p in w["participants"]} == {
        host.peer_id,
        guest.peer_id,
        official.peer_id,
    }
    for other in (host, guest):
        await other.expect_where(lambda m: m["type"] == "participant_joined"
                                 and m["participant"]["peer_id"] == official.peer_id)  # fmt: skip


async def test_owner_node_dies_and_everyone_resumes_on_the_other(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    a, b = nodes
    sess, host, guest_a, official_b = await _room_across_nodes(people, a, b, "王五")
    assert sess["room_id"] in a.app[node_key].rooms

    crash(a)
    await host.drop()
    await guest_a.drop()

    # B notices the owner is gone (lease expiry), takes the room, re-attaches its participant.
    w = await official_b.expect("welcome")
    assert w["resumed"] is True and w["media_reset"] is True and w["peer_id"] == official_b.peer_id
    assert sess["room_id"] in b.app[node_key].rooms

    # The others come back through B with their resume tokens.
    host_b = await _person(people, b, "host again", "mediator01")
    await host_b.connect()
    ack = await host_b.request("resume", resume_token=host.resume_token)
    assert ack["type"] == "ack", ack
    hw = await host_b.expect("welcome")
    assert hw["peer_id"] == host.peer_id and hw["status"] == "joined"
    guest_b = await _person(people, b, "guest again")
    await guest_b.connect()
    assert (await guest_b.request("resume", resume_token=guest_a.resume_token))["type"] == "ack"
    gw = await guest_b.expect("welcome")
    assert gw["peer_id"] == guest_a.peer_id and gw["status"] == "joined"
    assert {p["peer_id"] for p in gw["participants"]} == {host.peer_id, guest_a.peer_id,
                                                          official_b.peer_id}  # fmt: skip

    assert (await guest_b.request("chat", text="恢复了"))["type"] == "ack"
    assert (await host_b.expect("chat_message", text="恢复了"))["from_peer"] == guest_a.peer_id
    assert (await official_b.expect("chat_message", text="恢复了"))["from_peer"] == guest_a.peer_id
    await asyncio.sleep(0)


async def test_a_resume_that_takes_the_room_brings_the_nodes_own_participants_back(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    """Found by the kill -9 test with real processes: when a resume from the dead node's
    participant, not B's lease loop, is what takes the room over, B's own participant (attached
    to the dead owner) must be re-attached too, not left to time out."""
    a, b = nodes
    host = await _person(people, a, "host on A", "mediator01")
    sess = await new_session(host)
    await host.connect()
    await host.join(sess["room_id"])
    official_b = await _person(people, b, "official on B", "expert01")
    await official_b.connect()
    await official_b.join(sess["room_id"])

    crash(a)
    await host.drop()
    # B's lease loop would re-attach its participant once A's lease has run out; stop it, so
    # that the host's resume (retried by B until then) is what takes the room.
    b_node = b.app[node_key]
    leases = next(t for t in b_node._tasks if t.get_name() == "signaling-leases")
    leases.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leases

    host_b = await _person(people, b, "host again", "mediator01")
    await host_b.connect()
    assert (await host_b.request("resume", resume_token=host.resume_token))["type"] == "ack"
    assert (await host_b.expect("welcome"))["status"] == "joined"
    assert sess["room_id"] in b_node.rooms
    w = await official_b.expect("welcome")
    assert w["resumed"] is True and w["media_reset"] is True and w["peer_id"] == official_b.peer_id
    await host_b.expect_where(lambda m: m["type"] == "participant_update"
                              and m["participant"]["peer_id"] == official_b.peer_id
                              and m["participant"]["connected"])  # fmt: skip


async def test_room_state_survives_the_owner_node(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    """Lock, forced and self mutes, consents, the lobby and the deny list are saved by the
    owner (Redis) and taken over by the node that re-homes the room; a running recording
    died with the owner and is reported stopped."""
    a, b = nodes
    room_events = b.app[bus_key].subscribe_events()
    sess, host, guest, official = await _room_across_nodes(people, a, b, "王五")
    room_id = sess["room_id"]
    waiting_invite = await new_token(host, sess["id"], name="赵六")
    denied_invite = await new_token(host, sess["id"], name="钱七")
    late_invite = await new_token(host, sess["id"], name="孙八")

    # Someone is denied (on B), someone waits in the lobby (on A).
    denied = await _person(people, b, "denied on B")
    await denied.connect()
    await denied.join(room_id, token=denied_invite["token"])
    await host.request("deny", peer_id=denied.peer_id)
    await denied.expect("denied")
    waiting = await _person(people, a, "waiting on A")
    await waiting.connect()
    assert (await waiting.join(room_id, token=waiting_invite["token"]))["status"] == "lobby"

    # Everyone in the room consents; the recording runs; the guest is force-muted and mutes
    # its own video; the room is locked.
    assert (await host.request("request_consent"))["type"] == "ack"
    for p in (host, guest, official):
        await p.expect("consent_request")
        assert (await p.request("recording_consent", consent=True))["type"] == "ack"
    assert (await host.request("recording_start"))["type"] == "ack"
    await official.expect("recording_state", active=True)
    ack = await host.request("force_mute", peer_id=guest.peer_id, kind="audio", muted=True)
    assert ack["type"] == "ack", ack
    await guest.expect("forced_mute", kind="audio", muted=True)
    assert (await guest.request("presence", muted_video=True))["type"] == "ack"
    assert (await host.request("lock", locked=True))["type"] == "ack"
    await official.expect_where(lambda m: m["type"] == "room_update" and m["room"]["locked"])
    await a.app[node_key].flush_state()
    saved = await b.app[node_key].directory.load_state(room_id)  # from Redis
    assert saved is not None and saved.startswith("v1:")  # encrypted: names are PII
    assert "赵六" not in saved and "locked" not in saved

    crash(a)
    for p in (host, guest, waiting):
        await p.drop()

    # B takes the room over from what A saved: its own participant is re-attached and sees
    # the room as it was, the others still in their places (disconnected, within grace).
    w = await official.expect("welcome")
    assert w["resumed"] is True and w["media_reset"] is True
    assert room_id in b.app[node_key].rooms
    assert w["room"]["locked"] is True and w["room"]["recording"] is False
    roster = {p["peer_id"]: p for p in w["participants"]}
    assert set(roster) == {host.peer_id, guest.peer_id, official.peer_id}
    assert roster[guest.peer_id]["forced_audio"] is True
    assert roster[guest.peer_id]["muted_video"] is True
    assert roster[host.peer_id]["connected"] is False
    assert roster[official.peer_id]["connected"] is True

    # The recording died with A: reported stopped, in the session record and on the bus.
    stopped = await room_events.get()
    while not (
        stopped.type == "recording.stopped" and stopped.payload.get("reason") == "interrupted"
    ):
        stopped = await room_events.get()
    assert stopped.room_id == room_id and stopped.actor == "system"

    # The host resumes on B: locked room, the guest still force-muted, the lobby as it was,
    # and the consents given before.
    host_b = await _person(people, b, "host again", "mediator01")
    await host_b.connect()
    assert (await host_b.request("resume", resume_token=host.resume_token))["type"] == "ack"
    hw = await host_b.expect("welcome")
    assert hw["peer_id"] == host.peer_id and hw["status"] == "joined"
    assert hw["room"]["locked"] is True and hw["room"]["recording"] is False
    assert [(e["peer_id"], e["display_name"]) for e in hw["lobby"]] == [(waiting.peer_id, "赵六")]
    assert {p["peer_id"]: p["forced_audio"] for p in hw["participants"]}[guest.peer_id] is True
    consents = await host_b.expect("consent_state")
    assert set(consents["consented"]) == {host.peer_id, guest.peer_id, official.peer_id}
    assert consents["pending"] == [waiting.peer_id] and consents["refused"] == []
    await official.expect_where(lambda m: m["type"] == "participant_update"
                                and m["participant"]["peer_id"] == host.peer_id
                                and m["participant"]["connected"])  # fmt: skip

    # The force-muted guest resumes and renegotiates: its audio is still not forwarded.
    guest_b = await _person(people, b, "guest again")
    await guest_b.connect()
    assert (await guest_b.request("resume", resume_token=guest.resume_token))["type"] == "ack"
    gw = await guest_b.expect("welcome")
    assert gw["status"] == "joined" and gw["media_reset"] is True
    assert {p["peer_id"]: p["forced_audio"] for p in gw["participants"]}[guest.peer_id] is True
    assert (await guest_b.request("offer", sdp="v=0 guest"))["type"] == "answer"
    media_b = b.app[node_key].media
    assert isinstance(media_b, FakeMediaNode)
    assert media_b.forwarding[(room_id, guest.peer_id, "audio")] is False
    for other in (host_b, official):
        await other.expect_where(lambda m: m["type"] == "participant_update"
                                 and m["participant"]["peer_id"] == guest.peer_id
                                 and m["participant"]["connected"]
                                 and m["participant"]["forced_audio"])  # fmt: skip

    # The waiting resident resumes into the lobby, still waiting.
    waiting_b = await _person(people, b, "waiting again")
    await waiting_b.connect()
    assert (await waiting_b.request("resume", resume_token=waiting.resume_token))["type"] == "ack"
    assert (await waiting_b.expect("welcome"))["status"] == "lobby"

    # The lock and the deny list still hold on B.
    again = await _person(people, b, "denied again")
    await again.connect()
    err = await again.request("join", room_id=room_id, token=denied_invite["token"])
    assert err["type"] == "error" and err["code"] == "forbidden", err
    late = await _person(people, b, "late guest")
    await late.connect()
    err = await late.request("join", room_id=room_id, token=late_invite["token"])
    assert err["type"] == "error" and err["code"] == "room_locked", err

    # Consents still count: recording starts again on B without asking anyone again.
    assert (await host_b.request("recording_start"))["type"] == "ack", "consents were lost"
    for p in (host_b, guest_b, official):
        await p.expect("recording_state", active=True)
    assert room_id in media_b.recording

    # And the host admits the waiting resident from the lobby kept across the crash.
    assert (await host_b.request("admit", peer_id=waiting.peer_id))["type"] == "ack"
    assert (await waiting_b.expect("admitted"))["participants"]
    room_events.close()


async def test_a_grace_period_runs_on_across_the_takeover(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    """The grace period counts from the drop, not from the takeover: a guest who dropped
    before the owner died and whose grace ran out meanwhile is removed when B takes the room;
    the host, connected to A when it died, keeps a whole grace period and resumes."""
    a, b = nodes
    sess, host, guest, official = await _room_across_nodes(people, a, b, "周九")
    room_id = sess["room_id"]

    await guest.drop()
    await official.expect_where(lambda m: m["type"] == "participant_update"
                                and m["participant"]["peer_id"] == guest.peer_id
                                and not m["participant"]["connected"])  # fmt: skip
    await a.app[node_key].flush_state()
    # B's clock runs a whole grace period (20 s) and more ahead: by its reckoning the guest
    # dropped longer ago than that.
    b_node = b.app[node_key]
    b_node.now = lambda: utcnow() + timedelta(seconds=25)
    crash(a)
    await host.drop()

    w = await official.expect("welcome")
    assert w["resumed"] is True and room_id in b_node.rooms
    # Removed as B took the room, before anyone saw it (issue #16, no ghosts): the official's
    # roster (which replaces the one it had) no longer has the guest.
    assert guest.peer_id not in {p["peer_id"] for p in w["participants"]}
    assert [m for m in official.backlog if m.get("participant", {}).get("peer_id")
            == guest.peer_id] == []  # fmt: skip
    host_b = await _person(people, b, "host again", "mediator01")
    await host_b.connect()
    assert (await host_b.request("resume", resume_token=host.resume_token))["type"] == "ack"
    hw = await host_b.expect("welcome")
    assert hw["peer_id"] == host.peer_id and hw["status"] == "joined"
    assert {p["peer_id"] for p in hw["participants"]} == {host.peer_id, official.peer_id}

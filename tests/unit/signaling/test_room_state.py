"""A room's durable state (what the owner node saves for the node that re-homes the room):
any valid state survives JSON and a reload into a fresh room unchanged, everyone comes back
disconnected, and a running recording comes back stopped and reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.protocol import RecordingState, Role
from signaling.room import Room
from signaling.roomstate import ROLE_PERMISSIONS, MemberSpec, MemberState, RoomState

NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)
CAPACITY = 4


#: A saved host, joined.
HOST = MemberState(
    peer_id="p-h",
    identity="staff:1",
    display_name="h",
    role="host",
    is_staff=True,
    permissions=sorted(ROLE_PERMISSIONS["host"]),
    status="joined",
    since=NOW,
)


def _fresh() -> Room:
    return Room(room_id="r-s", kind="mediation", capacity=CAPACITY)


def spec(
    peer_id: str,
    identity: str,
    name: str,
    role: Role,
    site_id: int | None = None,
    site_name: str = "",
) -> MemberSpec:
    """A participant as the edge establishes it: staff identities are `staff:…`."""
    return MemberSpec(
        peer_id=peer_id,
        identity=identity,
        display_name=name,
        role=role,
        is_staff=identity.startswith("staff:"),
        permissions=ROLE_PERMISSIONS[role],
        site_id=site_id,
        site_name=site_name,
    )


def taken_over(state: RoomState, now: datetime) -> RoomState:
    """`state` as the node that takes the room over at `now` has it: those connected to the
    dead owner count as dropped then (their grace starts at the takeover)."""
    return state.model_copy(
        update={
            "members": [
                m.model_copy(update={"disconnected_at": m.disconnected_at or now})
                for m in state.members
            ]
        }
    )


@st.composite
def members(draw: st.DrawFn) -> MemberState:
    is_staff = draw(st.booleans())
    roles: list[Role] = (
        ["host", "mediator", "official", "observer"] if is_staff else ["party", "agent", "observer"]
    )
    role = draw(st.sampled_from(roles))
    status: Literal["lobby", "joined"] = draw(st.sampled_from(["lobby", "joined"]))
    return MemberState(
        peer_id="p-" + draw(st.text("abcdef0123", min_size=1, max_size=8)),
        identity=draw(st.sampled_from(["staff:", "guest:"])) + draw(st.text(min_size=1)),
        display_name=draw(st.text(max_size=64)),
        role=role,
        is_staff=is_staff,
        permissions=sorted(ROLE_PERMISSIONS[role]),
        site_id=draw(st.none() | st.integers(1, 10_000)),
        site_name=draw(st.text(max_size=20)),
        status=status,
        since=NOW - timedelta(seconds=draw(st.integers(0, 86_400))),
        paused=status == "lobby" and draw(st.booleans()),
        muted_audio=draw(st.booleans()),
        muted_video=draw(st.booleans()),
        forced_audio=draw(st.booleans()),
        forced_video=draw(st.booleans()),
        consent=draw(st.none() | st.booleans()),
        disconnected_at=draw(
            st.none() | st.integers(0, 600).map(lambda s: NOW - timedelta(seconds=s))
        ),
    )


@st.composite
def states(draw: st.DrawFn) -> RoomState:
    ms = draw(
        st.lists(members(), max_size=8, unique_by=(lambda m: m.peer_id, lambda m: m.identity))
    )
    joined = [m for m in ms if m.status == "joined"][:CAPACITY]
    ms = [m for m in ms if m.status == "lobby" or m in joined]
    left = draw(
        st.dictionaries(
            st.text("ghij", min_size=1, max_size=6).map("q-".__add__),
            st.text(min_size=1),
            max_size=5,
        )
    )
    return RoomState(
        locked=draw(st.booleans()),
        recording=False,
        recording_refused=draw(st.booleans()),
        banned=sorted(draw(st.sets(st.text(min_size=1), max_size=4))),
        identities={**left, **{m.peer_id: m.identity for m in ms}},
        members=ms,
    )


@given(states())
def test_any_state_survives_json_and_a_reload(state: RoomState) -> None:
    wire = RoomState.model_validate_json(state.model_dump_json())
    assert wire == state
    room = _fresh()
    fx = room.load_state(wire, NOW)
    assert room.durable_state() == taken_over(state, NOW)
    assert not fx.events and not fx.out
    assert all(not m.connected for m in room.members.values())
    assert room.info().locked == state.locked


def test_a_moderated_room_comes_back_as_it_was() -> None:
    room = _fresh()
    host = spec("p-h", "staff:1", "调解员", "host")
    party = spec("p-a", "guest:a", "张三", "party")
    waiting = spec("p-w", "guest:w", "李四", "party", site_id=57, site_name="某社区")
    denied = spec("p-d", "guest:d", "王五", "party")
    room.enter(host, NOW)
    room.enter(party, NOW)
    room.admit("p-h", "p-a", NOW)
    room.enter(denied, NOW)
    room.deny("p-h", "p-d", "", NOW)
    room.enter(waiting, NOW + timedelta(seconds=5))
    room.consent("p-h", True, NOW)
    room.consent("p-a", True, NOW)
    room.consent("p-w", False, NOW)  # refused: minutes required, no recording
    room.force_mute("p-h", "p-a", "audio", True, NOW)
    room.presence("p-h", muted_audio=None, muted_video=True, quality="good")
    room.lock("p-h", True, NOW)

    new = _fresh()
    new.load_state(RoomState.model_validate_json(room.durable_state().model_dump_json()), NOW)
    assert new.durable_state() == taken_over(room.durable_state(), NOW)
    assert new.info() == room.info()
    assert new.info().locked and not new.info().recording_allowed
    # Presence comes back but for the connection (resume) and link quality (re-measured).
    transient = {"connected": True, "quality": "unknown"}
    assert [p.model_copy(update=transient) for p in new.participants()] == [
        p.model_copy(update=transient) for p in room.participants()
    ]
    assert not any(p.connected for p in new.participants())
    assert [m.lobby_entry() for m in new.lobby()] == [m.lobby_entry() for m in room.lobby()]
    assert new.consent_state() == room.consent_state()
    assert new.member("p-a").forced_audio and new.member("p-h").muted_video
    # What the old owner decided still holds on the new one.
    with pytest.raises(Exception, match="removed"):
        new.enter(denied, NOW)
    with pytest.raises(Exception, match="locked"):
        new.enter(spec("p-x", "guest:x", "x", "party"), NOW)


def test_a_running_recording_comes_back_stopped_and_reported() -> None:
    state = RoomState(
        recording=True,
        identities={"p-h": "staff:1"},
        members=[HOST.model_copy(update={"consent": True})],
    )
    room = _fresh()
    fx = room.load_state(state, NOW)
    assert not room.recording
    assert [(e.type, e.payload) for e in fx.events] == [
        ("recording.stopped", {"reason": "interrupted"})
    ]
    assert [msg for _, msg in fx.out] == [RecordingState(active=False, reason="interrupted")]


def test_the_grace_period_runs_on_from_the_drop_across_a_takeover() -> None:
    """Who dropped before the owner died keeps only the rest of their grace on the new owner;
    who was connected to the dead owner gets a whole one; a reconnect forgets the drop."""
    room = _fresh()
    for peer, identity in (("p-h", "staff:1"), ("p-a", "staff:2")):
        room.enter(spec(peer, identity, peer, "host"), NOW)
    room.disconnected("p-a", NOW)
    room.disconnected("p-a", NOW + timedelta(seconds=9))  # a second report keeps the first time
    saved = RoomState.model_validate_json(room.durable_state().model_dump_json())

    new = _fresh()
    takeover = NOW + timedelta(seconds=12)
    new.load_state(saved, takeover)
    assert new.member("p-a").grace_left(30, takeover) == 18
    assert new.member("p-a").grace_left(30, NOW + timedelta(minutes=5)) == 0
    assert new.member("p-h").grace_left(30, takeover) == 30
    new.reconnected("p-a")
    assert new.member("p-a").disconnected_at is None
    assert new.member("p-a").grace_left(30, takeover) == 30


def test_an_inconsistent_state_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        _fresh().load_state(RoomState(members=[HOST, HOST]), NOW)
    too_many = [
        HOST.model_copy(update={"peer_id": f"p-{i}", "identity": f"staff:{i}"})
        for i in range(CAPACITY + 1)
    ]
    with pytest.raises(ValueError, match="capacity"):
        _fresh().load_state(RoomState(members=too_many), NOW)

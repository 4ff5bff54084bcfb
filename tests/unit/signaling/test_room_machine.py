"""Random sequences of join/leave/admit/deny/kick/lock/reconnect/consent/mute and re-homing
(the room saved as JSON and loaded into a fresh one, as another node does when the owner dies)
against the pure room state machine, with every participant's client-side view rebuilt from the
messages it got.

Invariants: capacity never exceeded; no resident joined without an official; every participant
in exactly one state; every joined participant's roster equals the joined set (and residents in
the lobby see nobody); the durable state survives a JSON round trip and a reload unchanged
(a running recording comes back stopped); only typed errors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from server.kernel.errors import SignalingError
from signaling.protocol import (
    Admitted,
    Denied,
    ParticipantJoined,
    ParticipantLeft,
    Paused,
    Removed,
    Role,
    SessionEnded,
    TrackKind,
)
from signaling.room import Room
from signaling.roomstate import ROLE_PERMISSIONS, Effects, LeaveReason, MemberSpec, RoomState
from tests.unit.signaling.test_room_state import taken_over

PEOPLE: dict[str, tuple[Role, bool]] = {
    "host": ("host", True),
    "mediator": ("mediator", True),
    "official": ("official", True),
    "staff_observer": ("observer", True),
    "g1": ("party", False),
    "g2": ("party", False),
    "g3": ("agent", False),
    "g4": ("observer", False),
    "g5": ("party", False),
}
names = st.sampled_from(sorted(PEOPLE))


class RoomMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.room = self._fresh_room()
        self.now = datetime(2026, 11, 24, tzinfo=UTC)
        self.views: dict[str, set[str]] = {}
        self.peer_of: dict[str, str] = {}
        self.counter = 0

    @staticmethod
    def _fresh_room() -> Room:
        return Room(room_id="r-h", kind="mediation", capacity=4, lobby_limit=3)

    def _reload(self, room: Room) -> tuple[Room, Effects]:
        """What a new owner does with what the old one saved."""
        state = RoomState.model_validate_json(room.durable_state().model_dump_json())
        fresh = self._fresh_room()
        fresh.started = room.started
        return fresh, fresh.load_state(state, self.now)

    def _tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def _peer(self, name: str) -> str | None:
        peer = self.peer_of.get(name)
        return peer if peer in self.room.members else None

    def _apply(self, fx: Effects) -> None:
        for to, msg in fx.out:
            for peer in to:
                view = self.views.setdefault(peer, set())
                if isinstance(msg, Admitted):
                    view.clear()
                    view.update(p.peer_id for p in msg.participants)
                elif isinstance(msg, ParticipantJoined):
                    view.add(msg.participant.peer_id)
                elif isinstance(msg, ParticipantLeft):
                    view.discard(msg.peer_id)
                elif isinstance(msg, Paused):
                    view.clear()
                elif isinstance(msg, Removed | Denied | SessionEnded):
                    self.views.pop(peer, None)
        for peer in fx.gone:
            self.views.pop(peer, None)

    def _try(self, op: object) -> None:
        try:
            fx = op()  # type: ignore[operator]
        except SignalingError:
            return
        self._apply(fx)

    @rule(name=names)
    def enter(self, name: str) -> None:
        role, staff = PEOPLE[name]
        self.counter += 1
        peer = f"p{self.counter}"
        spec = MemberSpec(
            peer_id=peer,
            identity=name,
            display_name=name,
            role=role,
            is_staff=staff,
            permissions=ROLE_PERMISSIONS[role],
        )
        try:
            member, fx, existing = self.room.enter(spec, self._tick())
        except SignalingError:
            return
        if not existing:
            self.peer_of[name] = member.peer_id
            # The welcome the actor builds right after enter().
            self.views[member.peer_id] = (
                {p.peer_id for p in self.room.participants()}
                if member.status == "joined"
                else set()
            )
        self._apply(fx)

    @rule(actor=names, who=names)
    def admit(self, actor: str, who: str) -> None:
        a, t = self._peer(actor), self._peer(who)
        if a and t:
            self._try(lambda: self.room.admit(a, t, self._tick()))

    @rule(actor=names, who=names)
    def deny(self, actor: str, who: str) -> None:
        a, t = self._peer(actor), self._peer(who)
        if a and t:
            self._try(lambda: self.room.deny(a, t, "", self._tick()))

    @rule(actor=names, who=names)
    def remove(self, actor: str, who: str) -> None:
        a, t = self._peer(actor), self._peer(who)
        if a and t:
            self._try(lambda: self.room.remove(a, t, "", self._tick()))

    @rule(actor=names, locked=st.booleans())
    def lock(self, actor: str, locked: bool) -> None:
        a = self._peer(actor)
        if a:
            self._try(lambda: self.room.lock(a, locked, self._tick()))

    @rule(name=names, timeout=st.booleans())
    def leave(self, name: str, timeout: bool) -> None:
        p = self._peer(name)
        if p:
            reason: LeaveReason = "timeout" if timeout else "left"
            self._try(lambda: self.room.leave(p, self._tick(), reason=reason))

    @rule(name=names)
    def drop_and_reconnect(self, name: str) -> None:
        p = self._peer(name)
        if p:
            self._apply(self.room.disconnected(p, self._tick()))
            self._try(lambda: self.room.reconnected(p))

    @rule(name=names)
    def drop(self, name: str) -> None:
        p = self._peer(name)
        if p:
            self._apply(self.room.disconnected(p, self._tick()))

    @rule(name=names, consent=st.booleans())
    def consent(self, name: str, consent: bool) -> None:
        p = self._peer(name)
        if p:
            self._try(lambda: self.room.consent(p, consent, self._tick()))

    @rule(actor=names)
    def record(self, actor: str) -> None:
        a = self._peer(actor)
        if a:
            self._try(lambda: self.room.start_recording(a, self._tick()))

    @rule(actor=st.sampled_from(["host", "mediator"]), who=names, video=st.booleans(),
          muted=st.booleans())  # fmt: skip
    def force_mute(self, actor: str, who: str, video: bool, muted: bool) -> None:
        a, t = self._peer(actor), self._peer(who)
        if a and t:
            kind: TrackKind = "video" if video else "audio"
            self._try(lambda: self.room.force_mute(a, t, kind, muted, self._tick()))

    @rule(name=names, muted=st.booleans())
    def mute_self(self, name: str, muted: bool) -> None:
        p = self._peer(name)
        if p:
            self._apply(self.room.presence(p, muted_audio=muted, muted_video=None, quality=None))

    @rule()
    def rehome(self) -> None:
        """The owner node dies; another loads the saved state. Everyone is disconnected until
        they resume; clients keep their views (their roster did not change)."""
        was_recording = self.room.recording
        self.room, fx = self._reload(self.room)
        assert all(not m.connected for m in self.room.members.values())
        assert not self.room.recording
        assert [e.type for e in fx.events] == (["recording.stopped"] if was_recording else [])
        self._apply(fx)

    @rule(name=names)
    def resume(self, name: str) -> None:
        p = self._peer(name)
        if p:
            self._apply(self.room.reconnected(p))

    @invariant()
    def durable_state_survives_a_reload(self) -> None:
        before = self.room.durable_state()
        after = self._reload(self.room)[0].durable_state()
        assert after == taken_over(before, self.now).model_copy(update={"recording": False})

    @invariant()
    def a_drop_is_dated_until_the_return(self) -> None:
        for m in self.room.members.values():
            assert m.connected == (m.disconnected_at is None), m

    @invariant()
    def capacity_never_exceeded(self) -> None:
        assert len(self.room.joined()) <= self.room.capacity

    @invariant()
    def no_resident_without_official(self) -> None:
        if any(not m.spec.is_staff for m in self.room.joined()):
            assert self.room.official_present()

    @invariant()
    def exactly_one_state(self) -> None:
        joined = {m.peer_id for m in self.room.joined()}
        lobby = {m.peer_id for m in self.room.lobby()}
        assert not joined & lobby
        assert joined | lobby == set(self.room.members)
        identities = [m.spec.identity for m in self.room.members.values()]
        assert len(identities) == len(set(identities))

    @invariant()
    def every_joined_participant_sees_all_others(self) -> None:
        joined = {m.peer_id for m in self.room.joined()}
        for peer in joined:
            assert self.views.get(peer) == joined, (peer, self.views.get(peer), joined)
        for m in self.room.lobby():
            assert self.views.get(m.peer_id, set()) == set()

    @invariant()
    def recording_only_with_consent(self) -> None:
        if self.room.recording:
            assert all(m.consent is True for m in self.room.joined())


RoomMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestRoomMachine = RoomMachine.TestCase

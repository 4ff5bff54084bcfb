"""The pure room state machine: roles, lobby, moderation, presence, recording consent.

No I/O and no aiohttp: every operation mutates the room and returns `Effects` (messages to
send, sockets to close, media commands, events to persist). The room manager executes them.

Participant states::

    connecting ──join──► lobby ──admit──► joined ──leave/remove/timeout/end──► left
                          │  ▲               │
                          │  └──paused───────┘   (the last official left)
                          └──deny/leave/timeout──► left
    staff: connecting ──join──► joined

Invariants (checked by hypothesis in tests/unit/signaling/test_room_machine.py):
- at most `capacity` participants are joined;
- no resident (non-staff) is joined while no official (staff host/mediator/official) is;
- every participant is in exactly one state;
- every joined participant's view of the roster equals the joined set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from signaling import errors
from signaling.protocol import (
    Admitted,
    ChatOut,
    ConsentRequest,
    ConsentState,
    Denied,
    ForcedMute,
    LobbyUpdate,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdate,
    Paused,
    Permission,
    Quality,
    RecordingState,
    Removed,
    RoomInfo,
    RoomUpdate,
    SessionEnded,
    TrackKind,
    UnmuteRequest,
)
from signaling.roomstate import (
    Effects,
    EventRecord,
    LeaveReason,
    MediaCommand,
    Member,
    MemberSpec,
    MemberState,
    RoomState,
    Status,
)


class Room:
    def __init__(
        self,
        *,
        room_id: str,
        kind: Literal["reception", "mediation"],
        capacity: int,
        title: str = "",
        recording_allowed: bool = True,
        lobby_limit: int | None = None,
    ) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.room_id = room_id
        self.kind = kind
        self.title = title
        self.capacity = capacity
        self.lobby_limit = lobby_limit if lobby_limit is not None else capacity * 4
        self.recording_allowed = recording_allowed
        self.locked = False
        self.recording = False
        self.recording_refused = False
        self.ended = False
        #: An official has been here (the session is live); set from the record on rebuild.
        self.started = False
        #: A booked session's window (server.sessions.service.opens_at): before it, officials
        #: may enter but the session does not start. None: open at once.
        self.opens_at: datetime | None = None
        self.members: dict[str, Member] = {}
        #: peer id → identity of everyone who was ever in the room (recordings outlive members).
        self.identities: dict[str, str] = {}
        self._by_identity: dict[str, str] = {}
        #: Denied or removed identities may not come back with the same grant.
        self.banned: set[str] = set()

    # ------------------------------------------------------------------ queries

    def member(self, peer_id: str) -> Member:
        m = self.members.get(peer_id)
        if m is None:
            raise errors.PeerNotFound(f"no participant {peer_id} in this room")
        return m

    def by_identity(self, identity: str) -> Member | None:
        peer_id = self._by_identity.get(identity)
        return self.members.get(peer_id) if peer_id else None

    def joined(self) -> list[Member]:
        return [m for m in self.members.values() if m.status == "joined"]

    def lobby(self) -> list[Member]:
        return sorted(
            (m for m in self.members.values() if m.status == "lobby"), key=lambda m: m.since
        )

    def official_present(self) -> bool:
        return self._first_official() is not None

    def _first_official(self) -> Member | None:
        return next((m for m in self.joined() if m.spec.is_official), None)

    @property
    def paused(self) -> bool:
        return any(m.paused for m in self.lobby())

    @property
    def empty(self) -> bool:
        return not self.members

    def info(self) -> RoomInfo:
        return RoomInfo(
            room_id=self.room_id,
            kind=self.kind,
            title=self.title,
            capacity=self.capacity,
            locked=self.locked,
            recording=self.recording,
            recording_allowed=self.recording_allowed and not self.recording_refused,
            paused=self.paused,
        )

    def participants(self) -> list[ParticipantInfo]:
        return [m.info() for m in self.joined()]

    def _ids(self, members: list[Member], *, but: str = "") -> list[str]:
        return [m.peer_id for m in members if m.peer_id != but]

    def _admins(self) -> list[str]:
        return [m.peer_id for m in self.joined() if m.can("admit")]

    def _require(self, actor: str, permission: Permission) -> Member:
        m = self.member(actor)
        if m.status != "joined":
            raise errors.NotJoined("only participants in the room may do this")
        if not m.can(permission):
            raise errors.Forbidden(f"your role may not {permission}")
        return m

    def _check_open(self) -> None:
        if self.ended:
            raise errors.SessionClosed("the session has ended")

    # ------------------------------------------------------------------ durable state

    def durable_state(self) -> RoomState:
        return RoomState(
            locked=self.locked,
            recording=self.recording,
            recording_refused=self.recording_refused,
            banned=sorted(self.banned),
            identities=dict(self.identities),
            members=[
                MemberState(
                    peer_id=m.spec.peer_id,
                    identity=m.spec.identity,
                    display_name=m.spec.display_name,
                    role=m.spec.role,
                    is_staff=m.spec.is_staff,
                    permissions=sorted(m.spec.permissions),
                    site_id=m.spec.site_id,
                    site_name=m.spec.site_name,
                    status="joined" if m.status == "joined" else "lobby",
                    since=m.since,
                    paused=m.paused,
                    muted_audio=m.muted_audio,
                    muted_video=m.muted_video,
                    forced_audio=m.forced_audio,
                    forced_video=m.forced_video,
                    consent=m.consent,
                    disconnected_at=m.disconnected_at,
                )
                for m in self.members.values()
            ],
        )

    def load_state(self, state: RoomState, now: datetime) -> Effects:
        """Take over a room another node owned: everyone comes back in their place but
        disconnected (the grace period of those who dropped before runs on from their drop;
        for the others it starts now). A recording that was running died
        with the old owner's media: it is reported stopped (`interrupted`).

        Raises:
            ValueError: the room is not fresh, or the state is inconsistent.
        """
        if self.members or self.identities:
            raise ValueError("load_state needs a fresh room")
        fx = Effects()
        self.locked = state.locked
        self.recording_refused = state.recording_refused
        self.banned = set(state.banned)
        self.identities = dict(state.identities)
        for s in state.members:
            spec = MemberSpec(
                peer_id=s.peer_id,
                identity=s.identity,
                display_name=s.display_name,
                role=s.role,
                is_staff=s.is_staff,
                permissions=frozenset(s.permissions),
                site_id=s.site_id,
                site_name=s.site_name,
            )
            if spec.peer_id in self.members or spec.identity in self._by_identity:
                raise ValueError(f"duplicate participant {spec.peer_id}")
            self.members[spec.peer_id] = Member(
                spec=spec,
                status=s.status,
                since=s.since,
                paused=s.paused,
                connected=False,
                muted_audio=s.muted_audio,
                muted_video=s.muted_video,
                forced_audio=s.forced_audio,
                forced_video=s.forced_video,
                consent=s.consent,
                # who was connected to the dead owner dropped, as far as we know, now
                disconnected_at=s.disconnected_at or now,
            )
            self.identities[spec.peer_id] = spec.identity
            self._by_identity[spec.identity] = spec.peer_id
        if len(self.joined()) > self.capacity:
            raise ValueError("more participants than the capacity")
        if state.recording:
            self.recording = True
            fx = self.recording_failed("interrupted", now)
        return fx

    def consent_state(self) -> ConsentState:
        present = list(self.members.values())
        return ConsentState(
            consented=[m.peer_id for m in present if m.consent is True],
            refused=[m.peer_id for m in present if m.consent is False],
            pending=[m.peer_id for m in present if m.consent is None],
            minutes_required=self.recording_refused,
        )

    # ------------------------------------------------------------------ entering

    def enter(self, spec: MemberSpec, now: datetime) -> tuple[Member, Effects, bool]:
        """A new connection: staff go straight in, guests wait in the lobby.

        If the identity is already here, its place is returned (`True`): the new connection
        replaces the old one (documented choice; the old socket gets `connection_replaced`).
        """
        self._check_open()
        fx = Effects()
        existing = self.by_identity(spec.identity)
        if existing is not None:
            self._set_connected(existing, True, fx)
            return existing, fx, True
        if spec.identity in self.banned:
            raise errors.Forbidden("you were removed from this session")
        if self.locked and not (spec.is_staff and "admit" in spec.permissions):
            raise errors.RoomLocked("the room is locked")
        if spec.is_staff:
            if len(self.joined()) >= self.capacity:
                raise errors.RoomFull(f"the room is full ({self.capacity})")
            m = self._add(spec, "joined", now)
            self._announce_joined(m, fx, now, "participant.joined")
        else:
            if len(self.lobby()) >= self.lobby_limit:
                raise errors.LobbyFull("too many people are waiting")
            m = self._add(spec, "lobby", now)
            self._event(fx, now, "participant.waiting", spec.identity, m)
            self._lobby_changed(fx)
            if self.recording:
                fx.send([m.peer_id], ConsentRequest(by="system"))
        self._rebalance(fx, now)
        return m, fx, False

    def restore(self, spec: MemberSpec, status: Status, now: datetime) -> tuple[Member, Effects]:
        """Rebuild after re-homing: the resuming participant's signed token says where it was.

        A guest who was joined comes back joined only if an official is present (else paused).
        """
        self._check_open()
        fx = Effects()
        existing = self.by_identity(spec.identity)
        if existing is not None:
            self._set_connected(existing, True, fx)
            return existing, fx
        if spec.identity in self.banned:
            raise errors.Forbidden("you were removed from this session")
        if (
            status == "joined"
            and len(self.joined()) < self.capacity
            and (spec.is_staff or self.official_present())
        ):
            m = self._add(spec, "joined", now)
            self._announce_joined(m, fx, now, "participant.resumed")
        elif spec.is_staff:
            raise errors.RoomFull(f"the room is full ({self.capacity})")
        else:
            m = self._add(spec, "lobby", now)
            m.paused = status == "joined"
            self._event(fx, now, "participant.resumed", spec.identity, m)
            self._lobby_changed(fx)
        self._rebalance(fx, now)
        return m, fx

    def _add(self, spec: MemberSpec, status: Status, now: datetime) -> Member:
        if spec.peer_id in self.members:
            raise ValueError(f"duplicate peer id {spec.peer_id}")
        m = Member(spec=spec, status=status, since=now)
        self.members[spec.peer_id] = m
        self.identities[spec.peer_id] = spec.identity
        self._by_identity[spec.identity] = spec.peer_id
        return m

    def _announce_joined(self, m: Member, fx: Effects, now: datetime, event: str) -> None:
        """`m` just became joined: it gets the roster, the others get it."""
        fx.send(self._ids(self.joined(), but=m.peer_id), ParticipantJoined(participant=m.info()))
        self._event(fx, now, event, m.spec.identity, m)
        if not self.started and (self.opens_at is None or now >= self.opens_at):
            official = m if m.spec.is_official else self._first_official()
            if official is not None:  # an official waited in the room for the window
                self.started = True
                fx.events.append(EventRecord("session.started", official.spec.identity, {}, now))
        if self.recording and m.consent is not True:
            self._stop_recording(fx, now, by=None, reason="consent_missing")

    # ------------------------------------------------------------------ moderation

    def admit(self, actor: str, peer_id: str, now: datetime) -> Effects:
        self._check_open()
        admitter = self._require(actor, "admit")
        m = self.member(peer_id)
        if m.status != "lobby":
            raise errors.InvalidState(f"{peer_id} is not waiting in the lobby")
        if not self.official_present():
            raise errors.NoOfficial("no official is present")
        if len(self.joined()) >= self.capacity:
            raise errors.RoomFull(f"the room is full ({self.capacity})")
        fx = Effects()
        self._to_joined(m, fx, now)
        self._event(fx, now, "participant.admitted", admitter.spec.identity, m)
        self._lobby_changed(fx)
        return fx

    def _to_joined(self, m: Member, fx: Effects, now: datetime) -> None:
        m.status, m.paused, m.since = "joined", False, now
        fx.send([m.peer_id], Admitted(participants=self.participants()))
        self._announce_joined(m, fx, now, "participant.joined")

    def deny(self, actor: str, peer_id: str, reason: str, now: datetime) -> Effects:
        self._check_open()
        admitter = self._require(actor, "admit")
        m = self.member(peer_id)
        if m.status != "lobby":
            raise errors.InvalidState(f"{peer_id} is not waiting in the lobby")
        fx = Effects()
        self.banned.add(m.spec.identity)
        fx.send([m.peer_id], Denied(reason=reason))
        fx.closes.append((m.peer_id, errors.CLOSE_CODES["denied"], "denied"))
        self._drop(m, fx)
        self._event(fx, now, "participant.denied", admitter.spec.identity, m, reason=reason)
        self._lobby_changed(fx)
        return fx

    def remove(self, actor: str, peer_id: str, reason: str, now: datetime) -> Effects:
        self._check_open()
        mod = self._require(actor, "moderate")
        m = self.member(peer_id)
        if peer_id == actor:
            raise errors.InvalidState("use leave to leave the room")
        fx = Effects()
        self.banned.add(m.spec.identity)
        fx.send([m.peer_id], Removed(reason=reason))
        fx.closes.append((m.peer_id, errors.CLOSE_CODES["removed"], "removed"))
        self._depart(m, fx, now, "removed", actor=mod.spec.identity, note=reason)
        return fx

    def lock(self, actor: str, locked: bool, now: datetime) -> Effects:
        self._check_open()
        mod = self._require(actor, "moderate")
        fx = Effects()
        if self.locked != locked:
            self.locked = locked
            fx.send(self._ids(self.joined()), RoomUpdate(room=self.info()))
            fx.events.append(
                EventRecord(
                    "room.locked" if locked else "room.unlocked", mod.spec.identity, {}, now
                )
            )
        return fx

    def ask_unmute(self, actor: str, peer_id: str, kind: TrackKind) -> Effects:
        self._check_open()
        self._require(actor, "moderate")
        m = self.member(peer_id)
        if m.status != "joined":
            raise errors.InvalidState(f"{peer_id} is not in the room")
        fx = Effects()
        fx.send([peer_id], UnmuteRequest(kind=kind, by=actor))
        return fx

    def force_mute(
        self, actor: str, peer_id: str, kind: TrackKind, muted: bool, now: datetime
    ) -> Effects:
        self._check_open()
        mod = self._require(actor, "moderate")
        m = self.member(peer_id)
        if m.status != "joined":
            raise errors.InvalidState(f"{peer_id} is not in the room")
        fx = Effects()
        if kind == "audio":
            m.forced_audio = muted
        else:
            m.forced_video = muted
        fx.media.append(MediaCommand("set_forwarding", peer_id, kind, enabled=not muted))
        fx.send([peer_id], ForcedMute(kind=kind, muted=muted, by=actor))
        fx.send(self._ids(self.joined()), ParticipantUpdate(participant=m.info()))
        self._event(
            fx, now, "participant.force_muted", mod.spec.identity, m, kind=kind, muted=muted
        )
        return fx

    def end(self, actor: str, now: datetime) -> Effects:
        self._check_open()
        mod = self._require(actor, "moderate")
        fx = Effects()
        if self.recording:
            self._stop_recording(fx, now, by=actor, reason="ended")
        everyone = list(self.members.values())
        fx.send(self._ids(everyone), SessionEnded(by=actor))
        for m in everyone:
            fx.closes.append((m.peer_id, errors.CLOSE_CODES["session_ended"], "session ended"))
            if m.status == "joined":
                self._event(fx, now, "participant.left", m.spec.identity, m, reason="ended")
            self._drop(m, fx)
        self.ended = True
        fx.media.append(MediaCommand("close_room"))
        fx.events.append(EventRecord("session.ended", mod.spec.identity, {}, now))
        return fx

    # ------------------------------------------------------------------ leaving

    def leave(self, peer_id: str, now: datetime, reason: LeaveReason = "left") -> Effects:
        m = self.member(peer_id)
        fx = Effects()
        self._depart(m, fx, now, reason, actor=m.spec.identity)
        return fx

    def _depart(
        self,
        m: Member,
        fx: Effects,
        now: datetime,
        reason: LeaveReason,
        *,
        actor: str,
        **payload: Any,
    ) -> None:
        was = m.status
        self._drop(m, fx)
        event = "participant.removed" if reason == "removed" else "participant.left"
        self._event(fx, now, event, actor, m, reason=reason, **payload)
        if was == "joined":
            fx.send(self._ids(self.joined()), ParticipantLeft(peer_id=m.peer_id, reason=reason))
            fx.media.append(MediaCommand("close_peer", m.peer_id))
        else:
            self._lobby_changed(fx)
        self._rebalance(fx, now)

    def _drop(self, m: Member, fx: Effects) -> None:
        m.status = "left"
        del self.members[m.peer_id]
        if self._by_identity.get(m.spec.identity) == m.peer_id:
            del self._by_identity[m.spec.identity]
        fx.gone[m.peer_id] = m.spec.identity

    def disconnected(self, peer_id: str, now: datetime) -> Effects:
        """The socket dropped: the participant keeps its place for the grace period."""
        fx = Effects()
        m = self.members.get(peer_id)
        if m is not None and m.connected:
            m.disconnected_at = now
            self._set_connected(m, False, fx)
        return fx

    def reconnected(self, peer_id: str) -> Effects:
        fx = Effects()
        self._set_connected(self.member(peer_id), True, fx)
        return fx

    def _set_connected(self, m: Member, connected: bool, fx: Effects) -> None:
        if connected:
            m.disconnected_at = None
        if m.connected != connected:
            m.connected = connected
            if m.status == "joined":
                fx.send(self._ids(self.joined()), ParticipantUpdate(participant=m.info()))

    # ------------------------------------------------------------------ the official rule

    def _rebalance(self, fx: Effects, now: datetime) -> None:
        """No resident stays in the room without an official; paused ones return with one."""
        if not self.official_present():
            residents = [m for m in self.joined() if not m.spec.is_staff]
            for m in residents:
                m.status, m.paused, m.since = "lobby", True, now
                fx.send([m.peer_id], Paused())
                fx.media.append(MediaCommand("close_peer", m.peer_id))
                self._event(fx, now, "participant.paused", "system", m)
            for m in residents:
                fx.send(
                    self._ids(self.joined()), ParticipantLeft(peer_id=m.peer_id, reason="paused")
                )
            if residents:
                self._lobby_changed(fx)
            return
        readmitted = False
        for m in self.lobby():
            if m.paused and len(self.joined()) < self.capacity:
                self._to_joined(m, fx, now)
                readmitted = True
        if readmitted:
            self._lobby_changed(fx)

    def _lobby_changed(self, fx: Effects) -> None:
        waiting = [m.lobby_entry() for m in self.lobby()]
        fx.send(self._admins(), LobbyUpdate(waiting=waiting))

    def _event(
        self, fx: Effects, now: datetime, type_: str, actor: str, m: Member, **extra: Any
    ) -> None:
        payload: dict[str, Any] = {
            "peer_id": m.peer_id,
            "identity": m.spec.identity,
            "role": m.spec.role,
            "site_id": m.spec.site_id,
            "display_name": m.spec.display_name,
            "is_staff": m.spec.is_staff,
        }
        payload.update(extra)
        fx.events.append(EventRecord(type_, actor, payload, now))

    # ------------------------------------------------------------------ chat and presence

    def chat(self, peer_id: str, text: str, now: datetime) -> Effects:
        self._check_open()
        m = self._require(peer_id, "chat")
        fx = Effects()
        msg = ChatOut(from_peer=peer_id, display_name=m.spec.display_name, text=text, at=now)
        fx.chats.append(msg)
        fx.send(self._ids(self.joined()), msg)
        return fx

    def presence(
        self,
        peer_id: str,
        *,
        muted_audio: bool | None,
        muted_video: bool | None,
        quality: Quality | None,
        sending: bool | None = None,
    ) -> Effects:
        m = self.member(peer_id)
        before = m.info()
        if muted_audio is not None:
            m.muted_audio = muted_audio
        if muted_video is not None:
            m.muted_video = muted_video
        if quality is not None:
            m.quality = quality
        if sending is not None:
            m.sending = sending
            m.upstream = _shown_upstream(m)
        fx = Effects()
        if m.status == "joined" and m.info() != before:
            fx.send(self._ids(self.joined()), ParticipantUpdate(participant=m.info()))
        return fx

    def upstream_quality(self, peer_id: str, grade: Quality) -> Effects:
        """The media server's grade of what it receives from `peer_id` (issue #18 item 8):
        the others' tiles show it, so loss upstream of the server is seen as the sender's."""
        fx = Effects()
        m = self.members.get(peer_id)
        if m is None:
            return fx
        m.upstream_measured = grade
        if m.upstream == _shown_upstream(m):
            return fx
        m.upstream = _shown_upstream(m)
        if m.status == "joined":
            fx.send(self._ids(self.joined()), ParticipantUpdate(participant=m.info()))
        return fx

    def active_speaker(self, peer_id: str | None) -> Effects:
        fx = Effects()
        for m in self.joined():
            speaking = m.peer_id == peer_id
            if m.speaking != speaking:
                m.speaking = speaking
                fx.send(self._ids(self.joined()), ParticipantUpdate(participant=m.info()))
        return fx

    # ------------------------------------------------------------------ recording

    def request_consent(self, actor: str) -> Effects:
        self._check_open()
        self._require(actor, "record")
        if not self.recording_allowed or self.recording_refused:
            raise errors.ConsentRefused("recording is not allowed in this session")
        fx = Effects()
        ask = [m.peer_id for m in self.members.values() if m.consent is None]
        fx.send(ask, ConsentRequest(by=actor))
        self._consent_changed(fx)
        return fx

    def consent(self, peer_id: str, consent: bool, now: datetime) -> Effects:
        self._check_open()
        m = self.member(peer_id)
        fx = Effects()
        m.consent = consent
        self._event(
            fx, now, "recording.consent" if consent else "recording.refused", m.spec.identity, m
        )
        if not consent:
            self.recording_refused = True
            if self.recording:
                self._stop_recording(fx, now, by=None, reason="refused")
            fx.send(self._ids(self.joined()), RoomUpdate(room=self.info()))
        self._consent_changed(fx)
        return fx

    def _consent_changed(self, fx: Effects) -> None:
        fx.send([m.peer_id for m in self.joined() if m.can("record")], self.consent_state())

    def start_recording(self, actor: str, now: datetime) -> Effects:
        self._check_open()
        host = self._require(actor, "record")
        if self.recording:
            raise errors.InvalidState("already recording")
        if not self.recording_allowed or self.recording_refused:
            raise errors.ConsentRefused("recording is not allowed: take written minutes")
        pending = [m.peer_id for m in self.joined() if m.consent is not True]
        if pending:
            raise errors.ConsentMissing("not everybody present has consented", pending=pending)
        fx = Effects()
        self.recording = True
        fx.media.append(MediaCommand("start_recording"))
        fx.send(self._ids(self.joined()), RecordingState(active=True, by=actor))
        fx.events.append(EventRecord("recording.started", host.spec.identity, {}, now))
        return fx

    def stop_recording(self, actor: str, now: datetime) -> Effects:
        self._check_open()
        self._require(actor, "record")
        if not self.recording:
            raise errors.InvalidState("not recording")
        fx = Effects()
        self._stop_recording(fx, now, by=actor, reason="stopped")
        return fx

    def recording_failed(self, reason: str, now: datetime) -> Effects:
        fx = Effects()
        if self.recording:
            self.recording = False
            fx.send(self._ids(self.joined()), RecordingState(active=False, reason=reason))
            fx.events.append(EventRecord("recording.stopped", "system", {"reason": reason}, now))
        return fx

    def _stop_recording(self, fx: Effects, now: datetime, *, by: str | None, reason: str) -> None:
        self.recording = False
        fx.media.append(MediaCommand("stop_recording"))
        fx.send(self._ids(self.joined()), RecordingState(active=False, by=by, reason=reason))
        actor = self.members[by].spec.identity if by and by in self.members else "system"
        fx.events.append(EventRecord("recording.stopped", actor, {"reason": reason}, now))


def _shown_upstream(m: Member) -> Quality:
    """A sender that sends nothing on purpose is silent, not lost (issue #18 item 8)."""
    if m.upstream_measured == "lost" and not m.sending:
        return "unknown"
    return m.upstream_measured

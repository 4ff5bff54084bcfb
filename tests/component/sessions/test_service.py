"""The sessions service on a real database (SQLite here, PostgreSQL under `integration`):
lifecycle, join tokens, join links and the records signaling writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases.deadline_clock import DeadlineClock
from server.kernel.db import make_engine, make_sessionmaker
from server.kernel.errors import InvalidInput
from server.sessions import service as sessions
from server.sessions.errors import (
    IllegalSessionTransition,
    JoinTokenNotFound,
    SessionClosed,
    SessionNotFound,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
)
from server.sessions.models import (
    ChatMessage,
    ParticipantRole,
    SessionEvent,
    SessionKind,
    SessionOutcome,
    SessionParticipant,
    SessionState,
)
from server.sessions.schemas import ChatRecord, EventRecord, ParticipantView, Role, SessionView
from server.sessions.tokens import JoinGrant, issue_join_token

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
SECRET = b"t" * 32


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _new(
    db: async_sessionmaker[AsyncSession], *, planned: bool = True, title: str = "调解"
) -> SessionView:
    async with db.begin() as s:
        return await sessions.create_session(
            s,
            kind=SessionKind.mediation,
            title=title,
            case_id=None,
            host_site_id=None,
            created_by_id=None,
            now=NOW,
            planned_start=NOW + timedelta(hours=1) if planned else None,
            planned_end=NOW + timedelta(hours=2) if planned else None,
            ical_uid=f"{title}@test" if planned else None,
        )


async def _state(db: async_sessionmaker[AsyncSession], session_id: int) -> SessionView:
    async with db.begin() as s:
        return await sessions.get_session_by_id(s, session_id=session_id)


async def test_a_session_goes_from_scheduled_to_ended(
    db: async_sessionmaker[AsyncSession],
) -> None:
    view = await _new(db)
    assert view.state == SessionState.scheduled and view.room_id.startswith("r-")
    async with db.begin() as s:
        assert (await sessions.open_lobby(s, session_id=view.id)).state == SessionState.lobby
        live = await sessions.go_live(
            s, session_id=view.id, now=NOW + timedelta(minutes=61), deadlines=DeadlineClock()
        )
    assert live.actual_start == NOW + timedelta(minutes=61)
    async with db.begin() as s:
        await sessions.record_outcome(s, session_id=view.id, outcome=SessionOutcome.agreement)
        await sessions.end(s, session_id=view.id, now=NOW + timedelta(minutes=90))
    after = await _state(db, view.id)
    assert after.state == SessionState.ended and not after.open
    assert after.outcome == SessionOutcome.agreement
    assert after.actual_end == NOW + timedelta(minutes=90)


async def test_an_illegal_change_raises_and_changes_nothing(
    db: async_sessionmaker[AsyncSession],
) -> None:
    view = await _new(db)
    async with db.begin() as s:
        await sessions.go_live(s, session_id=view.id, now=NOW, deadlines=DeadlineClock())
    async with db.begin() as s:  # a party came: a live session is no no-show
        await sessions.write_records(
            s, [EventRecord(view.id, "participant.joined", "system",
                            {"identity": "guest:p", "role": "party"}, NOW)], deadlines=DeadlineClock()
        )  # fmt: skip
    for change in ("open_lobby", "cancel", "mark_no_show"):
        with pytest.raises(IllegalSessionTransition) as info:
            async with db.begin() as s:
                await getattr(sessions, change)(s, session_id=view.id)
        assert info.value.code == "illegal_transition"
        assert info.value.details["state"] == "live"
    with pytest.raises(IllegalSessionTransition):
        async with db.begin() as s:
            await sessions.reschedule(
                s, session_id=view.id, start=NOW + timedelta(days=1), end=NOW + timedelta(days=2)
            )
    assert (await _state(db, view.id)).state == SessionState.live


async def test_cancel_and_reschedule_bump_the_invite_sequence(
    db: async_sessionmaker[AsyncSession],
) -> None:
    view = await _new(db)
    start, end = NOW + timedelta(days=1), NOW + timedelta(days=1, hours=1)
    async with db.begin() as s:
        moved = await sessions.reschedule(s, session_id=view.id, start=start, end=end)
    assert (moved.planned_start, moved.planned_end, moved.ical_sequence) == (start, end, 1)
    async with db.begin() as s:
        cancelled = await sessions.cancel(s, session_id=view.id)
    assert cancelled.state == SessionState.cancelled and cancelled.ical_sequence == 2
    with pytest.raises(IllegalSessionTransition):
        async with db.begin() as s:
            await sessions.end(s, session_id=view.id, now=NOW)


async def test_no_show_only_while_waiting_and_no_outcome_before_the_start(
    db: async_sessionmaker[AsyncSession],
) -> None:
    view = await _new(db)
    with pytest.raises(IllegalSessionTransition):
        async with db.begin() as s:
            await sessions.record_outcome(
                s, session_id=view.id, outcome=SessionOutcome.no_agreement
            )
    async with db.begin() as s:
        await sessions.open_lobby(s, session_id=view.id)
        assert (await sessions.mark_no_show(s, session_id=view.id)).state == SessionState.no_show
    with pytest.raises(IllegalSessionTransition):
        async with db.begin() as s:
            await sessions.go_live(s, session_id=view.id, now=NOW, deadlines=DeadlineClock())


async def test_unknown_sessions(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        with pytest.raises(SessionNotFound) as info:
            await sessions.get_session(s, room_id="r-nope")
        assert info.value.code == "room_not_found"
        with pytest.raises(SessionNotFound):
            await sessions.end(s, session_id=999_999, now=NOW)
        with pytest.raises(SessionNotFound):
            await sessions.attach_case(s, session_id=999_999, case_id=1, deadlines=DeadlineClock())


async def test_created_by_lists_a_staff_members_sessions_since_a_time(
    db: async_sessionmaker[AsyncSession],
) -> None:
    await _new(db, planned=False, title="a")
    async with db.begin() as s:
        assert await sessions.sessions_created_by(s, staff_id=1, since=NOW) == []
        with pytest.raises(InvalidInput):
            await sessions.create_session(
                s,
                kind=SessionKind.reception,
                title="x",
                case_id=None,
                host_site_id=None,
                created_by_id=None,
                now=NOW,
                planned_start=NOW,
            )


# --- join tokens -----------------------------------------------------------------------------


async def _issue(
    db: async_sessionmaker[AsyncSession], view: SessionView, role: Role = "party"
) -> str:
    async with db.begin() as s:
        issued = await sessions.issue_join_token(
            s,
            secret=SECRET,
            session_id=view.id,
            role=role,
            display_name="王五",
            not_before=NOW,
            expires_at=NOW + timedelta(hours=3),
            issued_by_id=None,
        )
    assert issued.room_id == view.room_id and issued.session_id == view.id
    return issued.token


async def _admit(db: async_sessionmaker[AsyncSession], token: str, now: datetime = NOW) -> None:
    async with db.begin() as s:
        await sessions.admit_join_token(s, secret=SECRET, token=token, now=now)


async def test_an_issued_token_is_admitted_until_revoked(
    db: async_sessionmaker[AsyncSession],
) -> None:
    view = await _new(db)
    token = await _issue(db, view)
    async with db.begin() as s:
        admission = await sessions.admit_join_token(s, secret=SECRET, token=token, now=NOW)
    assert admission.session.id == view.id
    assert admission.grant.role == "party" and admission.grant.identity.startswith("guest:")
    async with db.begin() as s:
        assert await sessions.revoke_join_token(s, jti=admission.grant.jti, now=NOW) == view.id
    with pytest.raises(TokenRevoked):
        await _admit(db, token)
    async with db.begin() as s:
        with pytest.raises(JoinTokenNotFound):
            await sessions.revoke_join_token(s, jti="never-issued", now=NOW)


async def test_expired_tampered_and_closed(db: async_sessionmaker[AsyncSession]) -> None:
    view = await _new(db)
    token = await _issue(db, view)
    with pytest.raises(TokenExpired):
        await _admit(db, token, now=NOW + timedelta(hours=4))
    head, body, sig = token.split(".")
    with pytest.raises(TokenInvalid):
        await _admit(db, f"{head}.{body}x.{sig}")
    async with db.begin() as s:
        await sessions.end(s, session_id=view.id, now=NOW)
    with pytest.raises(SessionClosed) as info:
        await _admit(db, token)
    assert info.value.code == "session_closed"


async def test_a_token_recorded_for_one_room_does_not_open_another(
    db: async_sessionmaker[AsyncSession],
) -> None:
    a, b = await _new(db, title="a"), await _new(db, title="b")
    token_a = await _issue(db, a)
    async with db.begin() as s:
        jti = (await sessions.admit_join_token(s, secret=SECRET, token=token_a, now=NOW)).grant.jti
        with pytest.raises(TokenInvalid):
            await sessions.check_join_token(s, jti=jti, session_id=b.id)
    # A correctly signed token naming room b but carrying a's jti was never issued for b.
    forged = issue_join_token(
        SECRET,
        JoinGrant(
            jti=jti,
            room_id=b.room_id,
            identity=f"guest:{jti}",
            display_name="王五",
            role="party",
            permissions=frozenset({"audio", "video", "chat"}),
            not_before=NOW,
            expires_at=NOW + timedelta(hours=1),
        ),
    )
    with pytest.raises(TokenInvalid):
        await _admit(db, forged)


async def test_staff_roles_cannot_be_handed_out_by_link(
    db: async_sessionmaker[AsyncSession],
) -> None:
    view = await _new(db)
    with pytest.raises(InvalidInput):
        await _issue(db, view, role="host")


async def test_join_links_for_staff_and_guests(db: async_sessionmaker[AsyncSession]) -> None:
    view = await _new(db)
    links = sessions.JoinLinks(SECRET, "https://od.test")

    def person(staff_id: int | None, role: ParticipantRole) -> ParticipantView:
        return ParticipantView(
            id=1, session_id=view.id, identity="guest:abc", role=role, staff_id=staff_id,
            display_name="赵六", site_id=None,
        )  # fmt: skip

    async with db.begin() as s:
        staff_link = await links(
            s,
            call=view,
            participant=person(7, ParticipantRole.mediator),
            not_before=NOW,
            expires_at=NOW + timedelta(hours=1),
        )
        guest_link = await links(
            s,
            call=view,
            participant=person(None, ParticipantRole.agent),
            not_before=NOW,
            expires_at=NOW + timedelta(hours=1),
        )
    assert staff_link == f"https://od.test/rooms/{view.room_id}"
    assert guest_link.startswith("https://od.test/join/")
    async with db.begin() as s:
        admission = await sessions.admit_join_token(
            s, secret=SECRET, token=guest_link.rsplit("/", 1)[1], now=NOW
        )
    assert admission.grant.role == "agent" and admission.grant.identity == "guest:abc"


# --- the session file --------------------------------------------------------------------------


async def test_room_events_drive_attendance_and_state(
    db: async_sessionmaker[AsyncSession],
) -> None:
    view = await _new(db)
    t = NOW + timedelta(minutes=60)
    joined: dict[str, object] = {"identity": "guest:g1", "role": "party", "display_name": "钱七"}

    def ev(kind: str, at: datetime, payload: dict[str, object] | None = None) -> EventRecord:
        return EventRecord(session_id=view.id, type=kind, actor="system", payload=payload or {},
                           at=at)  # fmt: skip

    async with db.begin() as s:
        await sessions.write_records(
            s,
            [
                ev("participant.joined", t, joined),
                ev("session.started", t + timedelta(minutes=1)),
                ChatRecord(view.id, "guest:g1", "钱七", "你好", t + timedelta(minutes=2)),
                ev("session.started", t + timedelta(minutes=3)),  # a rebuilt room: no change
                ev("participant.left", t + timedelta(minutes=4), joined),
                ev("session.ended", t + timedelta(minutes=5)),
                ev("session.ended", t + timedelta(minutes=9)),  # already ended: no change
            ],
            deadlines=DeadlineClock(),
        )
    after = await _state(db, view.id)
    assert after.state == SessionState.ended
    assert after.actual_start == t + timedelta(minutes=1)
    assert after.actual_end == t + timedelta(minutes=5)
    async with db.begin() as s:
        part = (await s.scalars(select(SessionParticipant))).one()
        assert (part.joined_at, part.left_at) == (t, t + timedelta(minutes=4))
        events = list(await s.scalars(select(SessionEvent).order_by(SessionEvent.id)))
        assert len(events) == 6
        assert all("display_name" not in e.payload for e in events)  # no PII in the event log
        assert (await s.scalars(select(ChatMessage.text))).all() == ["你好"]

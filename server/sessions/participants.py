"""The participants of a session (SessionParticipant): the sessions service's only writer of
them. Scheduling adds the booked people and follows their invites through these functions,
signaling's journal records who joined and left (`follow_event`), the no-show sweep marks the
absent; every reader gets `ParticipantView`s, never rows.

Where a participant's attendance changes (for integrators adding session events):
`follow_event` (participant joined / resumed / left / removed, consent answers) and
`set_no_show` (marked absent or present)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.kernel.errors import InvalidInput, NotFound
from server.sessions.models import ParticipantRole, SessionParticipant
from server.sessions.schemas import SIDES, EventRecord, ParticipantView, Side

#: The invite states a participant can be in (web/labels.py INVITE_STATUS_LABELS).
INVITE_STATUSES = frozenset(
    {"none", "queued", "sent", "failed", "retrying", "cancelled", "lobby", "joined"}
)


class ParticipantNotFound(NotFound):
    code = "participant_not_found"
    message_zh = "该参会人员不存在。"


async def _get(session: AsyncSession, participant_id: int) -> SessionParticipant:
    row = await session.get(SessionParticipant, participant_id)
    if row is None:
        raise ParticipantNotFound(f"no participant {participant_id}")
    return row


async def add_participant(
    session: AsyncSession,
    *,
    session_id: int,
    identity: str,
    role: ParticipantRole,
    display_name: str,
    staff_id: int | None = None,
    site_id: int | None = None,
    side: Side | None = None,
    invite_status: str = "none",
) -> ParticipantView:
    """A booked (or otherwise expected) participant of the session."""
    if side is not None and side not in SIDES:
        raise InvalidInput(f"unknown side {side}", field="side")
    row = SessionParticipant(
        session_id=session_id,
        identity=identity,
        role=role,
        staff_id=staff_id,
        display_name=display_name[:64],
        site_id=site_id,
        side=side,
        invite_status=invite_status,
    )
    session.add(row)
    await session.flush()
    return ParticipantView.from_row(row)


async def get_participant(session: AsyncSession, *, participant_id: int) -> ParticipantView:
    return ParticipantView.from_row(await _get(session, participant_id))


async def participants_of(
    session: AsyncSession, *, session_id: int, staff_only: bool = False
) -> list[ParticipantView]:
    """Every participant row of the session, in the order they were added (a reconnect adds a
    row: server.sessions.record groups them per identity)."""
    query = select(SessionParticipant).where(SessionParticipant.session_id == session_id)
    if staff_only:
        query = query.where(SessionParticipant.staff_id.is_not(None))
    rows = await session.scalars(query.order_by(SessionParticipant.id))
    return [ParticipantView.from_row(r) for r in rows]


async def set_invite_status(
    session: AsyncSession, *, participant_ids: Iterable[int], status: str
) -> None:
    if status not in INVITE_STATUSES:
        raise InvalidInput(f"unknown invite status {status}", field="invite_status")
    for pid in participant_ids:
        row = await session.get(SessionParticipant, pid)
        if row is not None:
            row.invite_status = status
    await session.flush()


async def set_no_show(
    session: AsyncSession, *, participant_id: int, no_show: bool
) -> ParticipantView:
    row = await _get(session, participant_id)
    row.no_show = no_show
    await session.flush()
    return ParticipantView.from_row(row)


async def update_participant(
    session: AsyncSession,
    *,
    participant_id: int,
    display_name: str | None = None,
    side: Side | None = None,
) -> ParticipantView:
    row = await _get(session, participant_id)
    if display_name is not None:
        row.display_name = display_name[:64]
    if side is not None:
        if side not in SIDES:
            raise InvalidInput(f"unknown side {side}", field="side")
        row.side = side
    await session.flush()
    return ParticipantView.from_row(row)


async def remove_participant(session: AsyncSession, *, participant_id: int) -> None:
    """Take a booked participant off a session (one who came stays in the record)."""
    row = await _get(session, participant_id)
    if row.joined_at is not None:
        raise InvalidInput("a participant who took part stays on the record", field="participant")
    await session.delete(row)
    await session.flush()


# --- attendance, from signaling's journal -------------------------------------------------


def _staff_id(identity: str) -> int | None:
    if identity.startswith("staff:"):
        with contextlib.suppress(ValueError):
            return int(identity[6:])
    return None


async def _latest(
    session: AsyncSession, session_id: int, identity: str
) -> SessionParticipant | None:
    row: SessionParticipant | None = await session.scalar(
        select(SessionParticipant)
        .where(
            SessionParticipant.session_id == session_id,
            SessionParticipant.identity == identity,
        )
        .order_by(SessionParticipant.id.desc())
        .limit(1)
    )
    return row


def _new_row(ev: EventRecord, identity: str, invite_status: str) -> SessionParticipant:
    return SessionParticipant(
        session_id=ev.session_id,
        identity=identity,
        role=ParticipantRole(ev.payload["role"]),
        staff_id=_staff_id(identity),
        display_name=str(ev.payload.get("display_name", ""))[:64],
        site_id=ev.payload.get("site_id"),
        invite_status=invite_status,
    )


async def follow_event(session: AsyncSession, ev: EventRecord) -> None:
    """A room event about a participant: joined/resumed (a new row unless the latest is still
    open; a booked participant's first arrival fills its row), left/removed, consent answers.
    A participant who arrives is no longer absent."""
    identity = str(ev.payload.get("identity", ""))
    if not identity:
        return
    if ev.type in ("participant.joined", "participant.resumed"):
        row = await _latest(session, ev.session_id, identity)
        if row is None or row.left_at is not None:
            row = _new_row(ev, identity, "joined")
            row.joined_at = ev.at
            session.add(row)
        elif row.joined_at is None:
            row.joined_at = ev.at
        row.no_show = False
    elif ev.type in ("participant.left", "participant.removed"):
        row = await _latest(session, ev.session_id, identity)
        if row is not None and row.left_at is None and row.joined_at is not None:
            row.left_at = ev.at
    elif ev.type == "participant.quality":
        row = await _latest(session, ev.session_id, identity)
        quality = ev.payload.get("quality")
        if row is not None and isinstance(quality, dict):
            row.quality = merge_quality(row.quality, quality)
    elif ev.type in ("recording.consent", "recording.refused"):
        row = await _latest(session, ev.session_id, identity)
        if row is None or row.left_at is not None:
            row = _new_row(ev, identity, "lobby")
            session.add(row)
        if ev.type == "recording.consent":
            row.recording_consent_at = ev.at
        else:
            row.recording_refused_at = ev.at


_GRADES = ("good", "fair", "poor")


def merge_quality(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """One participant's quality over several media connections (a reconnect starts a new
    one): durations add up, loss is weighted by time, extremes and the grade take the worst,
    the median estimate is the longer connection's."""
    if not old:
        return dict(new)
    a, b = float(old.get("seconds") or 0), float(new.get("seconds") or 0)
    longer = old if a >= b else new

    def worst(key: str, pick: Any) -> Any:
        values = [v for v in (old.get(key), new.get(key)) if v is not None]
        return pick(values) if values else None

    losses = [
        (float(q["loss_pct"]), s) for q, s in ((old, a), (new, b)) if q.get("loss_pct") is not None
    ]
    weight = sum(s for _, s in losses)
    return {
        "seconds": round(a + b, 1),
        "median_kbps": longer.get("median_kbps"),
        "min_kbps": worst("min_kbps", min),
        "loss_pct": round(sum(v * s for v, s in losses) / weight, 1) if weight else None,
        "max_loss_pct": worst("max_loss_pct", max),
        "video_paused_s": round(
            float(old.get("video_paused_s") or 0) + float(new.get("video_paused_s") or 0), 1
        ),
        "grade": max(
            (str(q.get("grade")) for q in (old, new) if q.get("grade") in _GRADES),
            key=_GRADES.index,
            default="good",
        ),
    }

"""What the booking form offers: the mediators (staff holding the mediator role, as people),
the rooms and terminals that can be booked, and the guests of an earlier booking (to book
again after a no-show or adjournment)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.claims import Cipher
from scheduling.records import booking_for_session, booking_out
from scheduling.schemas import BookingOut
from server.org.models import Resource, ResourceType, Role, Site, Staff, StaffRole

#: Resources a mediation can take place in (a window or kiosk is not booked for one).
BOOKABLE_TYPES = (ResourceType.mediation_room, ResourceType.legal_room, ResourceType.video_terminal)


@dataclass(frozen=True, slots=True)
class Choice:
    id: int
    name: str
    #: Where: the site (and for a resource its kind, as the form groups them).
    site: str = ""
    kind: str = ""


@dataclass(frozen=True, slots=True)
class BookedGuest:
    display_name: str
    role: str
    side: str | None
    phone: str


async def mediators(session: AsyncSession) -> list[Choice]:
    """Active staff holding the mediator role, by site and name."""
    rows = await session.execute(
        select(Staff.id, Staff.display_name, Site.name)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .outerjoin(Site, Site.id == Staff.site_id)
        .where(StaffRole.role == Role.mediator, Staff.active.is_(True))
        .order_by(Site.id, Staff.display_name)
    )
    return [Choice(int(i), str(n), str(s or "")) for i, n, s in rows.all()]


async def rooms(session: AsyncSession) -> list[Choice]:
    """Active bookable resources (mediation and legal-service rooms, video terminals)."""
    rows = await session.execute(
        select(Resource.id, Resource.name, Site.name, Resource.type)
        .join(Site, Site.id == Resource.site_id)
        .where(Resource.active.is_(True), Resource.type.in_(BOOKABLE_TYPES))
        .order_by(Resource.type, Site.id, Resource.name)
    )
    return [Choice(int(i), str(n), str(s), t.value) for i, n, s, t in rows.all()]


async def current_booking(session: AsyncSession, *, session_id: int) -> BookingOut | None:
    """The session's current booking (None: a session that was never booked)."""
    row = await booking_for_session(session, session_id=session_id)
    return await booking_out(session, row) if row is not None else None


async def booked_guests(
    session: AsyncSession, *, session_id: int, cipher: Cipher
) -> list[BookedGuest]:
    """The guests of the session's booking with their phones (for booking them again)."""
    row = await booking_for_session(session, session_id=session_id)
    if row is None:
        return []
    return [
        BookedGuest(
            display_name=str(g["display_name"]),
            role=str(g.get("as_role", "party")),
            side=g.get("side"),
            phone=cipher.decrypt(g["phone_enc"]) if g.get("phone_enc") else "",
        )
        for g in row.request.get("guests", [])
    ]

"""Case intake and queries. Services take the session first, never commit, and return views."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.cases.models import CaseCounter, CaseEvent, CaseState, Channel, Petitioner, PetitionCase
from server.cases.schemas import CaseSummary, PetitionerInput
from server.crypto import PiiCipher
from server.errors import NotFound
from server.org.models import Site


async def next_case_number(
    session: AsyncSession, *, site_id: int, year: int
) -> int:
    """Atomically take the next number for (site, year).

    The upsert holds the counter row's lock until the intake transaction ends; a rolled-back
    intake therefore gives its number back, so numbers are unique and gap-free.
    """
    dialect = session.bind.dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(CaseCounter)
        .values(site_id=site_id, year=year, last_seq=1)
        .on_conflict_do_update(
            index_elements=[CaseCounter.site_id, CaseCounter.year],
            set_={"last_seq": CaseCounter.last_seq + 1},
        )
        .returning(CaseCounter.last_seq)
    )
    seq = (await session.execute(stmt)).scalar_one()
    return int(seq)


def summary_of(row: PetitionCase) -> CaseSummary:
    return CaseSummary(
        id=row.id, case_no=row.case_no, site_id=row.site_id, channel=row.channel,
        state=row.state, summary=row.summary, matter_type=row.matter_type,
        first_receiver_id=row.first_receiver_id, petitioner_id=row.petitioner_id,
        confidential=row.confidential, registered_at=row.registered_at,
    )


async def add_petitioner(
    session: AsyncSession, *, pii: PiiCipher, petitioner: PetitionerInput, now: datetime
) -> Petitioner:
    row = Petitioner(
        name_enc=pii.encrypt(petitioner.name),
        phone_enc=pii.encrypt(petitioner.phone) if petitioner.phone else None,
        phone_hash=pii.lookup_hash(petitioner.phone) if petitioner.phone else None,
        id_number_enc=pii.encrypt(petitioner.id_number) if petitioner.id_number else None,
        id_number_hash=pii.lookup_hash(petitioner.id_number) if petitioner.id_number else None,
        address_enc=pii.encrypt(petitioner.address) if petitioner.address else None,
        key_id=pii.key_id, created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def create_case(
    session: AsyncSession,
    *,
    pii: PiiCipher,
    site_id: int,
    channel: Channel,
    summary: str,
    petitioner: PetitionerInput | None,
    first_receiver_id: int | None,
    now: datetime,
    matter_type: str | None = None,
    case_no_format: str = "{admin_code}-{year}-{seq:06d}",
    timezone: str = "Asia/Shanghai",
    actor: str = "system",
) -> CaseSummary:
    """Register a case (state `registered`) with its gap-free number, in the caller's transaction."""
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id} does not exist")
    year = now.astimezone(ZoneInfo(timezone)).year
    seq = await next_case_number(session, site_id=site_id, year=year)
    petitioner_row = (
        await add_petitioner(session, pii=pii, petitioner=petitioner, now=now)
        if petitioner else None
    )
    row = PetitionCase(
        case_no=case_no_format.format(admin_code=site.admin_code, year=year, seq=seq),
        site_id=site_id, year=year, seq=seq, channel=channel,
        petitioner_id=petitioner_row.id if petitioner_row else None, summary=summary,
        matter_type=matter_type, first_receiver_id=first_receiver_id,
        state=CaseState.registered, created_at=now, updated_at=now, registered_at=now,
    )
    session.add(row)
    await session.flush()
    session.add(CaseEvent(case_id=row.id, actor_id=first_receiver_id, type="registered",
                          payload={"channel": channel.value}, at=now))
    await record(session, actor=actor, action="case.create", object_type="case",
                 object_id=str(row.id), detail={"case_no": row.case_no, "channel": channel.value})
    return summary_of(row)


async def get_case(session: AsyncSession, *, case_id: int) -> CaseSummary:
    row = await session.get(PetitionCase, case_id)
    if row is None:
        raise NotFound(f"case {case_id} does not exist")
    return summary_of(row)


async def cases_for_receiver(session: AsyncSession, *, staff_id: int, limit: int = 50) -> list[CaseSummary]:
    rows = await session.scalars(
        select(PetitionCase)
        .where(PetitionCase.first_receiver_id == staff_id)
        .order_by(PetitionCase.id.desc())
        .limit(limit)
    )
    return [summary_of(r) for r in rows]

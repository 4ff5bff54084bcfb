"""Which columns hold encrypted personal data, and which keys their rows are still under."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.cases.models import CaseRepresentative, Petitioner

#: model → [(ciphertext attribute, lookup-hash attribute or None)]. Every encrypted column.
ENCRYPTED: list[tuple[type[Any], list[tuple[str, str | None]]]] = [
    (
        Petitioner,
        [
            ("name_enc", None),
            ("phone_enc", "phone_hash"),
            ("id_number_enc", "id_number_hash"),
            ("address_enc", None),
        ],
    ),
    (
        CaseRepresentative,
        [
            ("name_enc", None),
            ("phone_enc", "phone_hash"),
            ("id_number_enc", "id_number_hash"),
        ],
    ),
]


@dataclass(frozen=True, slots=True)
class KeyUsage:
    table: str
    column: str
    #: key id → how many values are encrypted under it
    by_key: dict[str, int]


async def key_usage(session: AsyncSession) -> list[KeyUsage]:
    """For each encrypted column, how many values each key id wrote (`v1:<key_id>:…`)."""
    out = []
    for model, columns in ENCRYPTED:
        for enc_attr, _hash in columns:
            col = getattr(model, enc_attr)
            kid = func.substr(col, 4, 8)
            rows = await session.execute(
                select(kid, func.count()).where(col.is_not(None)).group_by(kid)
            )
            out.append(
                KeyUsage(model.__tablename__, enc_attr, {str(k): int(n) for k, n in rows.all()})
            )
    return out

"""Re-encrypt personal data under the current secret (after ONEDOOR_SECRET_KEY changed and the
old one moved to ONEDOOR_PREVIOUS_SECRET_KEYS), recomputing the keyed lookup hashes; residents'
numbers in the SMS outbox are re-encrypted too, and sealed if an earlier version queued them in
the clear."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.cases.outbox import seal_resident_numbers
from server.cases.pii_keys import ENCRYPTED
from server.kernel.crypto import PiiCipher


async def rotate(session: AsyncSession, *, pii: PiiCipher, batch: int = 500) -> int:
    """Rewrite every row that still uses an old key. Returns the number of rows rewritten."""
    rewritten = 0
    for model, columns in ENCRYPTED:
        last_id = 0
        while True:
            rows = (
                await session.scalars(
                    select(model).where(model.id > last_id).order_by(model.id).limit(batch)
                )
            ).all()
            if not rows:
                break
            for row in rows:
                last_id = row.id
                changed = False
                for enc_attr, hash_attr in columns:
                    token = getattr(row, enc_attr)
                    if token is None or not pii.needs_rotation(token):
                        continue
                    plain = pii.decrypt(token)
                    setattr(row, enc_attr, pii.encrypt(plain))
                    if hash_attr:
                        setattr(row, hash_attr, pii.lookup_hash(plain))
                    changed = True
                if changed:
                    if hasattr(row, "key_id"):
                        row.key_id = pii.key_id
                    rewritten += 1
            await session.flush()
    rewritten += await seal_resident_numbers(session, pii=pii)
    await record(session, actor="cli", action="pii.rotate", detail={"rows": rewritten})
    return rewritten

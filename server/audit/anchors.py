"""The audit chain's head, time-stamped by an RFC 3161 authority (issue #21 item 3).

Where ONEDOOR_TSA_URL is set (the same TSA as the evidence record), the job runner asks it
every `ONEDOOR_AUDIT_ANCHOR_EVERY_MIN` minutes (default 60) for a TimeStampResp over the
newest audit entry's id and hash (`anchor_message`), verified on receipt, and appends it to
`audit-anchors.jsonl` in the data directory: one JSON line per anchor, `{"entry_id", "hash",
"gen_time", "token"}` (the token base64 DER). An anchor proves, with the TSA's signature and
clock, that the chain had that head at that time, so a chain re-computed afterwards — even by
someone holding the MAC key and rewriting the other witnesses — no longer matches it.

`TsaWitness` reads the anchors back for `audit.service.verify` (`onedoor audit verify`): every
token must verify against ONEDOOR_TSA_CERT over the head it names (an edited or forged line
is reported as such), and each anchored head is then checked against the database like any
witnessed head. Anchoring adds nothing when the head has not moved since the last anchor.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rfc3161_client import VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.chain import Head
from server.audit.models import AuditEntry
from server.kernel.tsa import TsaConfig, request_timestamp, verify_token

logger = logging.getLogger(__name__)

ANCHOR_FILE = "audit-anchors.jsonl"


class AnchorInvalid(Exception):
    """An anchor line that is not a valid time stamp over the head it names."""

    def __init__(self, entry_id: int | None, reason: str) -> None:
        super().__init__(reason)
        self.entry_id = entry_id


def anchor_message(head: Head) -> bytes:
    """What is time-stamped for a head (the TSA signs its SHA-256)."""
    return f"onedoor-audit-head:{head.entry_id}:{head.hash}".encode()


@dataclass(frozen=True, slots=True)
class Anchor:
    head: Head
    gen_time: str


class TsaWitness:
    """The anchors as a witness of `verify`: `heads()` are the time-stamped heads, each token
    checked first. Anchors are written by `anchor_newest`, not on every commit."""

    name = "tsa"

    def __init__(self, path: Path, certs_pem: bytes) -> None:
        self.path = path
        self.certs_pem = certs_pem

    def witness(self, head: Head) -> None:
        """Nothing per commit: the head is anchored periodically."""

    def anchors(self) -> list[Anchor]:
        """Every anchor, its token verified. Raises AnchorInvalid naming the first bad line."""
        if not self.path.exists():
            return []
        out: list[Anchor] = []
        for number, raw in enumerate(self.path.read_text("utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                head = Head(int(line["entry_id"]), str(line["hash"]))
                token = base64.b64decode(line["token"], validate=True)
            except (ValueError, KeyError, TypeError):
                raise AnchorInvalid(None, f"anchor line {number} is not a valid anchor") from None
            try:
                info = verify_token(token, anchor_message(head), self.certs_pem)
            except (VerificationError, ValueError) as e:
                raise AnchorInvalid(
                    head.entry_id,
                    f"forged anchor: line {number}'s time stamp does not cover entry "
                    f"{head.entry_id} with that hash ({e})",
                ) from None
            out.append(Anchor(head, info.gen_time.isoformat()))
        return out

    async def heads(self) -> list[Head]:
        return [a.head for a in self.anchors()]

    def last(self) -> Head | None:
        """The newest anchored head as written (not verified: for skipping a repeat)."""
        if not self.path.exists():
            return None
        lines = [x for x in self.path.read_text("utf-8").splitlines() if x.strip()]
        if not lines:
            return None
        try:
            line = json.loads(lines[-1])
            return Head(int(line["entry_id"]), str(line["hash"]))
        except (ValueError, KeyError, TypeError):
            return None


async def newest_head(session: AsyncSession) -> Head | None:
    row = (
        await session.execute(
            select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
        )
    ).first()
    return Head(row[0], row[1]) if row is not None else None


async def anchor_newest(
    db: async_sessionmaker[AsyncSession], *, path: Path, config: TsaConfig
) -> Head | None:
    """Time-stamp the newest head unless it is the last one anchored; the head anchored, or
    None. Raises server.kernel.tsa.TimestampFailed (the runner retries next round)."""
    async with db() as session:
        head = await newest_head(session)
    witness = TsaWitness(path, config.certs_pem)
    if head is None or head == witness.last():
        return None
    token = await request_timestamp(config, anchor_message(head))
    info = verify_token(token, anchor_message(head), config.certs_pem)
    line = json.dumps(
        {
            "entry_id": head.entry_id,
            "hash": head.hash,
            "gen_time": info.gen_time.isoformat(),
            "token": base64.b64encode(token).decode("ascii"),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    logger.info("audit head %s anchored by the TSA at %s", head.entry_id, info.gen_time)
    return head

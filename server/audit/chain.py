"""What makes the audit chain tamper-evident beyond the database (issue #21, item 3).

A plain SHA-256 chain only proves the rows agree with each other: whoever can write the table
can edit a row and recompute every hash after it, or delete the newest rows. So

- each row's hash is an HMAC-SHA256 under a key derived from the deployment's secret: without
  the secret, a re-chained row does not verify;
- every committed entry's (id, hash) is appended to a witness outside the database (a file in
  the data dir, opened append-only): entries deleted from the tail, or a chain rebuilt from
  the genesis, no longer match what the witness saw.

The configuration travels in the session's `info` (`session_options`), so `record` and
`verify` keep their signatures. A session without it (tests, tools) writes and checks the
unkeyed chain of earlier versions; `verify` accepts such legacy rows only before the first
keyed one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

INFO_KEY = "onedoor.audit_chain"
PENDING_KEY = "onedoor.audit_pending"
WITNESS_FILE = "audit_witness.log"


def derive_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"onedoor-audit-chain-v1", hashlib.sha256).digest()


@dataclass
class FileWitness:
    """Appends `id hash` lines to a file nobody rewrites (O_APPEND; ship it off the machine or
    make it append-only with `chattr +a` in production)."""

    path: Path
    _fd: int | None = field(default=None, repr=False)

    def note(self, entries: list[tuple[int, str]]) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # One small write to the page cache per commit: no fsync, so a crash may lose the last
        # few lines (the witness lags; it never claims what was not committed).
        os.write(self._fd, "".join(f"{i} {h}\n" for i, h in entries).encode())

    def read(self) -> dict[int, str]:
        if not self.path.exists():
            return {}
        out: dict[int, str] = {}
        for line in self.path.read_text().splitlines():
            ident, _, digest = line.partition(" ")
            if ident.isdigit() and len(digest) == 64:
                out[int(ident)] = digest
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class ChainConfig:
    key: bytes
    witness: FileWitness | None = None


def _after_commit(session: Session) -> None:
    pending: list[tuple[int, str]] = session.info.pop(PENDING_KEY, [])
    config = session.info.get(INFO_KEY)
    if pending and isinstance(config, ChainConfig) and config.witness is not None:
        config.witness.note(pending)


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


def session_options(config: ChainConfig) -> dict[str, Any]:
    """Keyword arguments for `make_sessionmaker`: the config in every session's `info`, and a
    Session class of its own whose commits feed the witness."""
    cls = type("AuditedSession", (Session,), {})
    event.listen(cls, "after_commit", _after_commit)
    event.listen(cls, "after_rollback", _after_rollback)
    return {"info": {INFO_KEY: config}, "sync_session_class": cls}


def config_of(session_info: dict[Any, Any]) -> ChainConfig | None:
    config = session_info.get(INFO_KEY)
    return config if isinstance(config, ChainConfig) else None


def for_deployment(secret: bytes, data_dir: Path) -> ChainConfig:
    return ChainConfig(key=derive_key(secret), witness=FileWitness(data_dir / WITNESS_FILE))

"""One writer at a time on SQLite, queued on the event loop instead of in SQLite's busy handler.

Every SQLite transaction starts with BEGIN IMMEDIATE (server/kernel/db.py), so transactions are
serialised by SQLite's write lock. Left to SQLite, a waiting connection sits in the busy
handler on its aiosqlite thread *holding that connection's mutex*. Anything on the event loop
that then touches the connection (the garbage collector finalising a cursor left behind by a
failed statement is enough: SQLAlchemy's aiosqlite adapter does not close the cursor when
`execute` raises, e.g. OverflowError binding 2**63) blocks the loop on that mutex, while the
holder of the write lock waits for the loop to send its ROLLBACK: every request, /healthz
included, stalled until the busy timeout (30 s) broke the knot with "database is locked".

The gate takes an asyncio lock before BEGIN IMMEDIATE, so within the process no connection
ever waits in the busy handler: waiters queue in FIFO order on the loop, a waiter gives up
after `wait_s` with `DatabaseBusy` (503 `database_busy`), and the short busy timeout only
covers other processes (the CLI) and the moment between our release and SQLite's COMMIT.
The lock is released when the transaction ends and, whatever happened to the request, when
the connection goes back to the pool, is invalidated or closed.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

from server.kernel.errors import DatabaseBusy


class SqliteWriteGate:
    """The engine's one writer lock; `holder` is the DBAPI connection inside it."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.holder: Any = None
        self._lock: asyncio.Lock | None = None

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.locked()

    async def _acquire(self, dbapi_conn: Any) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        try:
            async with asyncio.timeout(self.wait_s):
                await self._lock.acquire()
        except TimeoutError:
            raise DatabaseBusy(f"the database stayed busy for {self.wait_s:g} s") from None
        self.holder = dbapi_conn

    def acquire(self, dbapi_conn: Any) -> None:
        if self.holder is dbapi_conn or not in_greenlet():
            return  # already inside (a nested begin), or sync use outside the event loop
        await_only(self._acquire(dbapi_conn))

    def release(self, dbapi_conn: Any) -> None:
        if self.holder is not None and self.holder is dbapi_conn:
            self.holder = None
            assert self._lock is not None
            self._lock.release()


def install(engine: AsyncEngine, *, wait_s: float) -> SqliteWriteGate:
    """Put the gate on `engine` (SQLite only); returns it for tests and benchmarks."""
    gate = SqliteWriteGate(wait_s)
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "begin")
    def _take(conn: Connection) -> None:
        gate.acquire(conn.connection.dbapi_connection)

    def _end(conn: Connection) -> None:
        gate.release(conn.connection.dbapi_connection)

    event.listen(sync_engine, "commit", _end)
    event.listen(sync_engine, "rollback", _end)

    def _pool_end(dbapi_conn: Any, *_args: Any) -> None:
        gate.release(dbapi_conn)

    for name in ("checkin", "reset", "invalidate", "soft_invalidate", "close"):
        event.listen(sync_engine.pool, name, _pool_end)
    _GATES[sync_engine] = gate
    return gate


#: Each engine's gate, for tests and benchmarks that check it is free (dies with the engine).
_GATES: weakref.WeakKeyDictionary[Engine, SqliteWriteGate] = weakref.WeakKeyDictionary()


def gate_of(engine: AsyncEngine) -> SqliteWriteGate | None:
    return _GATES.get(engine.sync_engine)

"""Stopping asyncio tasks for good: the shutdown paths of signaling and of the background jobs
cancel their tasks through `cancel_and_wait` (media imports nothing from onedoor, and touches
no Redis).

A cancellation can be lost. On Python 3.11, `asyncio.wait_for` returns the inner result
instead of raising `CancelledError` when the inner operation completed in the same loop
iteration as the cancel (fixed in 3.12, where `wait_for` is built on `asyncio.timeout`).
redis-py wraps every socket write in `wait_for` when a socket timeout is set, so a task
cancelled during a Redis command goes on about half the time: a loop (lease renewal, state
writer, bus publisher, deadline sweeper) then waits for its next round, and a shutdown
awaiting it hangs for good. `cancel_and_wait` cancels again until the task has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

#: How long a cancelled task may take to end (its `finally` clean-up) before it is cancelled
#: again: long enough not to interrupt a clean-up, short enough not to hold a shutdown.
RECANCEL_S = 0.5


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *, recancel_s: float = RECANCEL_S
) -> None:
    """Cancel `tasks` and return once every one has ended. A task that ignored its
    cancellation is cancelled again; one that failed is logged, not raised, so one broken
    task never stops the others' shutdown."""
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=recancel_s)
        for task in pending:
            logger.info("task %s ignored its cancellation; cancelling it again", task.get_name())
            task.cancel()
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

"""Waiting for something real (a socket closing, a row written by another task) to happen:
poll with a deadline, never a bare sleep. Where the code under test takes a clock, move the
clock instead (tests/fakes.py)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

POLL_S = 0.02


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, what: str, timeout_s: float = 10.0
) -> None:
    """Return as soon as `check()` (sync or async) is true; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(POLL_S)

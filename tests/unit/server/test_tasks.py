"""`cancel_and_wait` stops a task that ignored its cancellation (as Python 3.11's
`asyncio.wait_for` makes redis-py's commands do), lets a task finish its clean-up, and logs a
task that failed instead of raising it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.kernel.tasks import cancel_and_wait


async def test_a_loop_that_swallows_one_cancellation_is_cancelled_again() -> None:
    rounds = 0
    swallowed = asyncio.Event()

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()  # what wait_for does when the inner call just completed

    task = asyncio.create_task(loop(), name="swallower")
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait([task], recancel_s=0.05)
    assert task.cancelled() and swallowed.is_set() and rounds == 2


async def test_a_cleanup_is_not_interrupted() -> None:
    cleaned = False

    async def worker() -> None:
        nonlocal cleaned
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # shorter than the re-cancel delay
            cleaned = True

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    await cancel_and_wait([task], recancel_s=0.5)
    assert cleaned and task.cancelled()


async def test_a_failed_task_is_logged_and_the_others_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(broken(), name="broken")
    idle = asyncio.create_task(asyncio.sleep(3600), name="idle")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="server.kernel.tasks"):
        await cancel_and_wait([failed, idle])
    assert idle.cancelled()
    assert [r.getMessage() for r in caplog.records] == ["task broken failed"]

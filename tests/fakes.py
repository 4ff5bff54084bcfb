"""Hand-written fakes shared by the tests (one of each): they implement our Protocols and
mypy checks them. Add a behaviour here as an option rather than writing another copy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from server.kernel.notify import Attachment, NotificationFailed, NotifyChannel


class FakeClock:
    """Implements `scheduling.clock.Clock` (`now()`) and the queue's `Clock` (a callable); tests
    move it: `clock.current += timedelta(days=2)`."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def __call__(self) -> datetime:
        return self.current


@dataclass(frozen=True, slots=True)
class SentMessage:
    to: str
    channel: NotifyChannel
    subject: str
    body: str
    attachments: tuple[Attachment, ...] = ()


class RecordingNotifier:
    """Implements `server.kernel.notify.Notifier`: keeps every message sent, in order, in `sent`.

    - `down=True`: the gateway refuses everything (`NotificationFailed`), until set back.
    - `held=True`: each send waits until `release` is set; `entered` is set as soon as one
      waits, so a test can prove that a second runner overlaps the first.
    - `delay_s`: a gateway that takes that long to answer (other tasks run meanwhile).

    Every send suspends at least once, as a real gateway call does."""

    def __init__(self, *, down: bool = False, held: bool = False, delay_s: float = 0.0) -> None:
        self.sent: list[SentMessage] = []
        self.down = down
        self.delay_s = delay_s
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        if not held:
            self.release.set()

    async def send(
        self,
        *,
        to: str,
        channel: NotifyChannel,
        subject: str,
        body: str,
        attachments: list[Attachment] | None = None,
    ) -> None:
        if self.down:
            raise NotificationFailed("gateway unreachable: test")
        self.entered.set()
        await self.release.wait()
        await asyncio.sleep(self.delay_s)
        self.sent.append(SentMessage(to, channel, subject, body, tuple(attachments or ())))

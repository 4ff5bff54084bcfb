"""Outbound notifications (SMS, e-mail). A Protocol with a logging backend for development and
an HTTP gateway backend for production; callers treat `NotificationFailed` as retryable."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Protocol

import aiohttp

logger = logging.getLogger(__name__)

NotifyChannel = Literal["sms", "email"]
Attachment = tuple[str, bytes, str]  # filename, content, mimetype
GATEWAY_TIMEOUT_S = 10


class NotificationFailed(Exception):
    """The gateway could not take the message; the caller keeps it queued and retries."""


class Notifier(Protocol):
    async def send(
        self,
        *,
        to: str,
        channel: NotifyChannel,
        subject: str,
        body: str,
        attachments: list[Attachment] | None = None,
    ) -> None: ...


@dataclass
class LogNotifier:
    """Development backend (no SMS gateway configured, as with `make run`): logs each message
    with its text — so a demo runs end to end: the join, follow and evaluation links a resident
    would get by SMS appear in the log — and keeps the last messages in memory for the tests.
    The phone number stays masked. Production sets ONEDOOR_NOTIFY_BACKEND=http, which logs no
    message text."""

    outbox: list[dict[str, object]] = field(default_factory=list)
    keep: int = 200

    async def send(
        self,
        *,
        to: str,
        channel: NotifyChannel,
        subject: str,
        body: str,
        attachments: list[Attachment] | None = None,
    ) -> None:
        logger.info("notification via %s to %s: %s\n%s", channel, _mask(to), subject, body.strip())
        self.outbox.append(
            {
                "to": to,
                "channel": channel,
                "subject": subject,
                "body": body,
                "attachments": [name for name, _, _ in attachments or []],
            }
        )
        del self.outbox[: -self.keep]


class HttpNotifier:
    """Posts JSON to an SMS/e-mail gateway. Non-2xx and network errors raise NotificationFailed."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self._url = url
        self._session = session

    async def send(
        self,
        *,
        to: str,
        channel: NotifyChannel,
        subject: str,
        body: str,
        attachments: list[Attachment] | None = None,
    ) -> None:
        import base64

        payload = {
            "to": to,
            "channel": channel,
            "subject": subject,
            "body": body,
            "attachments": [
                {"filename": n, "mimetype": m, "content_b64": base64.b64encode(c).decode()}
                for n, c, m in attachments or []
            ],
        }
        try:
            async with self._session.post(
                self._url, json=payload, timeout=aiohttp.ClientTimeout(total=GATEWAY_TIMEOUT_S)
            ) as resp:
                if resp.status >= 300:
                    raise NotificationFailed(f"gateway answered {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise NotificationFailed(f"gateway unreachable: {type(e).__name__}") from e


def _mask(to: str) -> str:
    return to[:3] + "****" + to[-2:] if len(to) > 6 else "****"

"""Webhooks: enqueue an event for every endpoint that subscribed to it, in the caller's
transaction (so an event exists exactly when what it reports was committed), and deliver it
signed, retried by the job runner with its backoff, until the endpoint answers 2xx or the
attempts are used up.

Signature (like Stripe's): `X-Onedoor-Signature: t=<unix seconds>,v1=<hex>` where `v1` is
HMAC-SHA256 under the endpoint's secret of `"<t>." + body`. A receiver recomputes it, compares
in constant time and refuses a `t` too far from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.kernel.db import utcnow
from server.kernel.jobs import GiveUp, RetryLater
from server.kernel.settings import WEBHOOK_EVENTS, WebhookEndpoint
from server.webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

#: Where the deployment's endpoints travel with every database session (make_sessionmaker's
#: `info`), so that a domain service can enqueue without knowing the settings.
INFO_KEY = "onedoor.webhooks"
SIGNATURE_HEADER = "X-Onedoor-Signature"
TIMEOUT_S = 10.0
#: A receiver should refuse a signature older (or newer) than this.
TOLERANCE_S = 300


def session_info(endpoints: Sequence[WebhookEndpoint]) -> dict[str, object]:
    return {INFO_KEY: tuple(endpoints)}


def _endpoints(session: AsyncSession) -> tuple[WebhookEndpoint, ...]:
    value = session.info.get(INFO_KEY, ())
    return value if isinstance(value, tuple) else ()


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, body: bytes, header: str, *, now: int, tolerance_s: int = TOLERANCE_S
) -> bool:
    """A receiver's check (docs/api.md shows the same in a few lines)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp=timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


async def enqueue(
    session: AsyncSession, *, event: str, data: Mapping[str, Any], now: datetime | None = None
) -> int:
    """Queue `event` for every endpoint subscribed to it; returns how many deliveries."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    targets = [e for e in _endpoints(session) if "*" in e.events or event in e.events]
    if not targets:
        return 0
    at = now or utcnow()
    event_id = str(uuid.uuid4())
    body = json.dumps(
        {"id": event_id, "type": event, "created_at": at.isoformat(), "data": dict(data)},
        ensure_ascii=False,
        default=str,
        separators=(",", ":"),
    )
    for endpoint in targets:
        session.add(
            WebhookDelivery(
                event_id=event_id,
                event=event,
                url=endpoint.url,
                body=body,
                created_at=at,
                status="pending",
                due_at=at,
                attempts=0,
                last_error="",
            )
        )
    return len(targets)


class WebhookJobs:
    """The job handler of the `webhook_delivery` table (server.kernel.jobs.JobHandler)."""

    name = "webhooks"
    model = WebhookDelivery

    def __init__(self, endpoints: Sequence[WebhookEndpoint], *, timeout_s: float = TIMEOUT_S):
        self._secrets = {e.url: e.secret.get_secret_value() for e in endpoints}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def perform(
        self, sessionmaker: async_sessionmaker[AsyncSession], job_id: int, *, now: datetime
    ) -> None:
        async with sessionmaker() as session:
            row = await session.get(WebhookDelivery, job_id)
            if row is None:
                raise GiveUp("the delivery is gone")
            url, body, event, event_id = row.url, row.body.encode(), row.event, row.event_id
        secret = self._secrets.get(url)
        if secret is None:
            raise GiveUp("the endpoint is no longer configured")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "onedoor-webhooks/1",
            "X-Onedoor-Event": event,
            "X-Onedoor-Delivery": event_id,
            SIGNATURE_HEADER: sign(secret, body, timestamp=int(now.timestamp())),
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as client,
                client.post(url, data=body, headers=headers, allow_redirects=False) as resp,
            ):
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RetryLater(f"{type(e).__name__}: {e}"[:500]) from None
        if not 200 <= status < 300:
            raise RetryLater(f"the endpoint answered {status}")

    async def finished(
        self, session: AsyncSession, job_id: int, status: str, *, now: datetime
    ) -> None:
        if status == "failed":
            logger.warning("webhook delivery %s failed for good", job_id)

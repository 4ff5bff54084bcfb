"""Every typed application key, in one place (aiohttp `web.AppKey`)."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from server.cases.deadline_clock import DeadlineClock
    from server.kernel.crypto import PiiCipher
    from server.kernel.jobs import JobRunner
    from server.kernel.metrics import Metrics
    from server.kernel.notify import Notifier
    from server.kernel.ratelimit import RateLimiter
    from server.kernel.settings import Settings
    from server.kernel.throttle import SignInThrottle
    from server.queue.service import QueueService

settings: web.AppKey[Settings] = web.AppKey("settings")
engine: web.AppKey[AsyncEngine] = web.AppKey("engine")
db: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("db")
redis: web.AppKey[Redis | None] = web.AppKey("redis")
pii: web.AppKey[PiiCipher] = web.AppKey("pii")
#: How the deployment counts deadlines (zone, holiday roll-over, office hours), read from the
#: settings once by create_app; every case service that opens or moves a deadline is given it.
deadline_clock: web.AppKey[DeadlineClock] = web.AppKey("deadline_clock")
metrics: web.AppKey[Metrics] = web.AppKey("metrics")
notifier: web.AppKey[Notifier] = web.AppKey("notifier")
websockets: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("websockets")
#: The reception queue; its `CallQueue` is in Redis when `redis_url` is set (app.queue_context).
call_queue: web.AppKey[QueueService] = web.AppKey("call_queue")
ratelimiter: web.AppKey[RateLimiter] = web.AppKey("ratelimiter")
signin_throttle: web.AppKey[SignInThrottle] = web.AppKey("signin_throttle")
background: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("background")
#: The job runner (reminders, deadline sweep and notifications); absent without background jobs.
jobs: web.AppKey[JobRunner] = web.AppKey("jobs")

# --- per-request storage (web.RequestKey) ---
if TYPE_CHECKING:
    from server.auth.permissions import StaffIdentity

request_id: web.RequestKey[str] = web.RequestKey("request_id", str)
staff: web.RequestKey[StaffIdentity | None] = web.RequestKey("staff")
csrf_token: web.RequestKey[str] = web.RequestKey("csrf_token", str)

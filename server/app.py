"""The composition root: `create_app(settings)` wires every package. Nothing imports this module
except the CLI and tests; it reads no environment and opens nothing until the app starts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

import server.models  # noqa: F401  (every mapper, so foreign keys resolve in any process)
import signaling.ws as signaling_ws
from scheduling.clock import SystemClock
from scheduling.reminders import ReminderJobs
from server.api import case_sessions as case_sessions_api
from server.api import cases as cases_api
from server.api import ops
from server.api import org as org_api
from server.api import scheduling as scheduling_api
from server.api import security as security_api
from server.audit.anchors import ANCHOR_FILE, anchor_newest
from server.audit.chain import chain_for
from server.audit.chain import flush as flush_audit_witnesses
from server.cases.agreements import send_judicial_reminders
from server.cases.deadline_clock import DeadlineClock
from server.cases.deadline_service import SWEEP_INTERVAL, NotificationJobs, run_deadline_sweep
from server.http import keys, openapi
from server.http.auth import auth_middleware, csrf_middleware
from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from server.kernel.jobs import JobRunner, Periodic
from server.kernel.metrics import Metrics
from server.kernel.notify import HttpNotifier, LogNotifier
from server.kernel.ratelimit import InProcessRateLimiter, RedisRateLimiter
from server.kernel.settings import Settings
from server.kernel.tasks import cancel_and_wait
from server.kernel.throttle import InProcessSignInThrottle, RedisSignInThrottle, ThrottlePolicy
from server.kernel.tsa import TsaConfig
from server.middlewares import app_errors, error_budget, request_ids, security_headers
from server.queue import (
    CallQueue,
    InProcessCallQueue,
    QueuePolicy,
    QueueService,
    RedisCallQueue,
)
from server.queue.service import Clock, SessionReceptionRooms
from server.sessions import composite_jobs, no_show
from server.sessions.evidence.retention import EVERY as RETENTION_EVERY
from server.sessions.evidence.retention import days_from as retention_days
from server.sessions.evidence.retention import run_retention
from server.sessions.evidence.service import EvidenceContext
from server.sessions.service import JoinLinks
from server.webhooks import service as webhooks
from web import setup as web_setup

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 5.0


async def db_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings]
    engine = make_engine(settings.effective_database_url)
    chain = chain_for(settings, app[keys.redis])
    app[keys.engine] = engine
    app[keys.db] = make_sessionmaker(
        engine, info={**chain.info(), **webhooks.session_info(settings.webhooks)}
    )
    yield
    await flush_audit_witnesses(chain)
    await engine.dispose()


def signin_policy(settings: Settings) -> ThrottlePolicy:
    lockout_s = float(settings.login_lockout_s)
    return ThrottlePolicy(
        free_failures=settings.login_max_failures,
        first_delay_s=min(15.0, lockout_s),
        max_delay_s=lockout_s,
    )


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    url = app[keys.settings].redis_url
    client: Redis | None = None
    if url:
        client = Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            health_check_interval=15,
        )
    app[keys.redis] = client
    if keys.ratelimiter not in app:  # tests may provide one with a controlled clock
        app[keys.ratelimiter] = (
            RedisRateLimiter(client) if client is not None else InProcessRateLimiter()
        )
    if keys.signin_throttle not in app:
        policy = signin_policy(app[keys.settings])
        app[keys.signin_throttle] = (
            RedisSignInThrottle(client, policy=policy)
            if client is not None
            else InProcessSignInThrottle(policy=policy)
        )
    yield
    if client is not None:
        await client.aclose()


def queue_policy(settings: Settings) -> QueuePolicy:
    return QueuePolicy(
        flag_after_s=settings.queue_flag_after_s,
        callback_after_s=settings.queue_callback_after_s,
    )


def make_queue_service(
    app: web.Application, redis: Redis | None, *, clock: Clock | None = None
) -> QueueService:
    """The app's reception queue: in Redis (under the deployment's key prefix) if there is one."""
    queue: CallQueue = (
        RedisCallQueue(
            redis, prefix=app.get(signaling_ws.prefix_key, "onedoor:"), pii=app[keys.pii]
        )
        if redis is not None
        else InProcessCallQueue()
    )
    service = QueueService(
        queue=queue,
        policy=queue_policy(app[keys.settings]),
        rooms=SessionReceptionRooms(),
        pii=app[keys.pii],
        deadlines=app[keys.deadline_clock],
        case_no_format=app[keys.settings].case_no_format,
    )
    return service if clock is None else dataclasses.replace(service, clock=clock)


async def queue_context(app: web.Application) -> AsyncIterator[None]:
    if keys.call_queue not in app:  # tests may provide one with a controlled clock
        app[keys.call_queue] = make_queue_service(app, app[keys.redis])
    yield


async def notifier_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings]
    if settings.notify_backend == "http":
        if not settings.notify_http_url:
            raise RuntimeError("ONEDOOR_NOTIFY_HTTP_URL must be set with notify_backend=http")
        async with aiohttp.ClientSession() as http:
            app[keys.notifier] = HttpNotifier(settings.notify_http_url, http)
            yield
    else:
        app[keys.notifier] = LogNotifier()
        yield


async def background_context(app: web.Application) -> AsyncIterator[None]:
    """Background tasks registered with `spawn` are cancelled and awaited at shutdown."""
    yield
    tasks: set[asyncio.Task[Any]] = app[keys.background]
    await cancel_and_wait(list(tasks))


async def jobs_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the one job runner of this node (server.kernel.jobs) with the deadline
    sweep, the recording retention, the deadline notifications and the scheduling jobs
    (invites, reminders, room opening); a second runner makes the session composites. Several nodes may all run it: claims are leased (SKIP LOCKED) and the sweep takes
    its own lock. Needs db, redis, notifier and metrics; stopped with cancel_and_wait."""
    settings = app[keys.settings]
    metrics = app[keys.metrics]
    db = app[keys.db]

    def on_backlog(queue: str, count: int) -> None:
        metrics.jobs_backlog.labels(queue=queue).set(count)
        if count:
            metrics.jobs_backlog_alerts.labels(queue=queue).inc()
            logger.warning("job backlog in %s: %d jobs overdue", queue, count)

    def on_failure(name: str) -> None:
        metrics.background_failures.labels(job=name).inc()

    async def sweep(now: datetime) -> None:
        await run_deadline_sweep(
            db, now=now, notifier=None, redis=app[keys.redis], tz=settings.timezone
        )

    async def retention(now: datetime) -> None:
        await run_retention(
            db,
            ctx=EvidenceContext.from_settings(settings),
            days=retention_days(
                settings.retention_days_reception, settings.retention_days_mediation
            ),
            now=now,
        )

    async def judicial_reminders(now: datetime) -> None:
        async with db.begin() as session:
            await send_judicial_reminders(
                session,
                pii=app[keys.pii],
                now=now,
                days=settings.judicial_reminder_days,
                tz=settings.timezone,
            )

    runner = JobRunner(db, clock=SystemClock(), on_backlog=on_backlog, on_failure=on_failure)
    runner.add_periodic(Periodic("deadline_sweep", every=SWEEP_INTERVAL, run=sweep))
    runner.add_periodic(no_show.periodic(db, after=timedelta(minutes=settings.session_no_show_min)))
    runner.add_periodic(Periodic("recording_retention", every=RETENTION_EVERY, run=retention))
    runner.add_periodic(
        Periodic("judicial_reminders", every=timedelta(hours=1), run=judicial_reminders)
    )
    if settings.tsa_url and settings.tsa_cert is not None:
        tsa = TsaConfig(url=settings.tsa_url, certs_pem=settings.tsa_cert.read_bytes())
        anchors = settings.data_dir / ANCHOR_FILE

        async def anchor(now: datetime) -> None:
            await anchor_newest(db, path=anchors, config=tsa)

        every = timedelta(minutes=settings.audit_anchor_every_min)
        runner.add_periodic(Periodic("audit_anchor", every=every, run=anchor))
    runner.add_handler(NotificationJobs(app[keys.notifier], app[keys.pii]))
    runner.add_handler(
        ReminderJobs(
            notifier=app[keys.notifier],
            issuer=JoinLinks(settings.secret_bytes(), settings.effective_public_url),
            cipher=app[keys.pii],
            tz=settings.timezone,
        )
    )
    runner.add_handler(webhooks.WebhookJobs(settings.webhooks))
    app[keys.jobs] = runner
    # Composites take minutes of CPU: their own runner, so they never hold up notifications.
    composites = JobRunner(db, clock=SystemClock(), on_backlog=on_backlog, on_failure=on_failure)
    composites.add_periodic(composite_jobs.periodic(db))
    composites.add_handler(
        composite_jobs.CompositeJobs(
            recordings_dir=settings.effective_recordings_dir, tz=settings.timezone
        )
    )
    runner.start()
    composites.start(name="composite-runner")
    yield
    await composites.stop()
    await runner.stop()


def spawn(app: web.Application, coro: Any, *, name: str) -> asyncio.Task[Any]:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    app[keys.background].add(task)
    task.add_done_callback(app[keys.background].discard)
    return task


async def close_websockets(app: web.Application) -> None:
    sockets = app[keys.websockets]
    for ws in list(sockets):
        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(settings: Settings) -> web.Application:
    if settings.secret_key is None:
        raise ValueError("settings need a secret key (server.kernel.settings.ensure_secret_key)")
    app = web.Application(
        middlewares=[
            request_ids,
            security_headers,
            app_errors,
            auth_middleware,
            error_budget,
            csrf_middleware,
        ],
        client_max_size=settings.max_request_bytes,
    )
    app[keys.settings] = settings
    app[keys.deadline_clock] = DeadlineClock.from_settings(settings)
    app[keys.metrics] = Metrics()
    app[keys.pii] = PiiCipher(settings.secret_bytes(), old_secrets=settings.previous_secret_bytes())
    app[keys.websockets] = weakref.WeakSet()
    app[keys.background] = set()
    app.cleanup_ctx.extend([redis_context, db_context, notifier_context, background_context])
    app.on_shutdown.append(close_websockets)

    if settings.background_jobs:
        app.cleanup_ctx.append(jobs_context)
    app.cleanup_ctx.append(queue_context)  # after redis_context
    ops.setup(app)
    org_api.setup(app)
    cases_api.setup(app)
    case_sessions_api.setup(app)
    scheduling_api.setup(app)
    security_api.setup(app)
    signaling_ws.setup(app)
    web_setup(app)
    openapi.setup(app)  # last: documents every route registered above
    return app

"""The composition root: `create_app(settings)` wires every package. Nothing imports this module
except the CLI and tests; it reads no environment and opens nothing until the app starts."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

import signaling.ws as signaling_ws
from server import keys
from server.api import cases as cases_api
from server.api import openapi, ops
from server.api import org as org_api
from server.api import scheduling as scheduling_api
from server.audit import chain as audit_chain
from server.auth.web import auth_middleware, csrf_middleware
from server.crypto import PiiCipher
from server.db import make_engine, make_sessionmaker
from server.kernel.throttle import InProcessSignInThrottle, RedisSignInThrottle, ThrottlePolicy
from server.metrics import Metrics
from server.middlewares import app_errors, request_ids, security_headers
from server.notify import HttpNotifier, LogNotifier
from server.ratelimit import InProcessRateLimiter, RedisRateLimiter
from server.settings import Settings
from server.tasks import cancel_and_wait
from web import setup as web_setup

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 5.0


async def db_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings]
    engine = make_engine(settings.effective_database_url)
    chain = audit_chain.for_deployment(
        settings.secret_bytes(), settings.data_dir, settings.redis_url
    )
    app[keys.engine] = engine
    app[keys.db] = make_sessionmaker(engine, **audit_chain.session_options(chain))
    yield
    await engine.dispose()
    await chain.aclose()


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
        raise ValueError("settings need a secret key (server.settings.ensure_secret_key)")
    app = web.Application(
        middlewares=[request_ids, security_headers, app_errors, auth_middleware, csrf_middleware],
        client_max_size=settings.max_request_bytes,
    )
    app[keys.settings] = settings
    app[keys.metrics] = Metrics()
    app[keys.pii] = PiiCipher(settings.secret_bytes(), old_secrets=settings.previous_secret_bytes())
    app[keys.websockets] = weakref.WeakSet()
    app[keys.background] = set()
    app.cleanup_ctx.extend([db_context, redis_context, notifier_context, background_context])
    app.on_shutdown.append(close_websockets)

    if settings.background_jobs:
        from server.api.scheduling import reminder_runner
        from server.cases.deadline_service import deadline_sweeper

        app.cleanup_ctx.extend([deadline_sweeper, reminder_runner])
    ops.setup(app)
    org_api.setup(app)
    cases_api.setup(app)
    scheduling_api.setup(app)
    signaling_ws.setup(app)
    web_setup(app)
    openapi.setup(app)  # last: documents every route registered above
    return app

"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from server.http import keys
from server.http.auth import public

READY_TIMEOUT_S = 2.0


@public("liveness probe")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@public("readiness probe")
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), request.app[keys.engine].connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:
        checks["database"] = f"error: {type(e).__name__}"
    redis = request.app[keys.redis]
    if redis is not None:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await redis.ping()
            checks["redis"] = "ok"
        except Exception as e:
            checks["redis"] = f"error: {type(e).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


@public("Prometheus scrape (bind to an internal interface in production)")
async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    body = request.app[keys.metrics].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)

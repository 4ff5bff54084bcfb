"""Edge middlewares: request ids, the one place errors become responses, security headers,
and the error budget."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from server.http import keys
from server.kernel.errors import (
    OUTAGE_ERRORS,
    AppError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyErrors,
)
from server.kernel.logging import request_id_var
from web.render import render_error

logger = logging.getLogger(__name__)


def wants_json(request: web.Request) -> bool:
    return (
        request.path.startswith("/api/")
        or request.path in ("/healthz", "/readyz")
        or "application/json" in request.headers.get("Accept", "")
        or request.content_type == "application/json"
    )


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
    if not rid.replace("-", "").isalnum():
        rid = secrets.token_hex(8)
    request[keys.request_id] = rid
    token = request_id_var.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        metrics = request.app[keys.metrics]
        metrics.http_requests.labels(request.method, name, str(status)).inc()
        metrics.http_latency.labels(name).observe(time.perf_counter() - started)
        request_id_var.reset(token)


def _error_response(request: web.Request, error: AppError) -> web.StreamResponse:
    request.app[keys.metrics].app_errors.labels(error.code).inc()
    if wants_json(request):
        body = error.to_json()
        if "details" in body:
            body["details"] = _one_field_shape(body["details"], str(error))
        body["request_id"] = request.get(keys.request_id, "")
        return web.json_response(
            body, status=error.http_status, dumps=lambda o: json.dumps(o, ensure_ascii=False)
        )
    if isinstance(error, NotAuthenticated):
        raise web.HTTPSeeOther(f"/login?next={request.rel_url.path}")

    return render_error(request, error)


def _one_field_shape(details: dict[str, Any], message: str) -> dict[str, Any]:
    """`details.fields` is always a list of {field, message} (docs/api.md): a single `field`
    (kept as it was, for clients of the former shape) and a list of names become it too."""
    fields = details.get("fields")
    if isinstance(fields, list) and all(isinstance(f, str) for f in fields):
        return {**details, "fields": [{"field": f, "message": message} for f in fields]}
    if fields is None and isinstance(details.get("field"), str):
        return {**details, "fields": [{"field": details["field"], "message": message}]}
    return details


def _reject_nul(request: web.Request) -> None:
    """No text column takes a NUL (PostgreSQL refuses it with an error); no id or token holds
    one. Path values with one name nothing (404), query values are malformed."""
    if any("\x00" in value for value in request.match_info.values()):
        raise NotFound("no such resource")
    if any("\x00" in key or "\x00" in value for key, value in request.query.items()):
        raise InvalidInput("a query parameter holds a NUL character")


def _is_data_exception(error: DBAPIError) -> bool:
    """PostgreSQL's class 22 (data exception: a value out of its column's range, a NUL in
    text): input the edge did not catch, answered 422 without a traceback."""
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")


def _internal_error(request: web.Request) -> web.StreamResponse:
    err = AppError(f"internal error; request id {request.get(keys.request_id, '')}")
    return _error_response(request, err)


@web.middleware
async def app_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _reject_nul(request)
        return await handler(request)
    except AppError as e:
        logger.info("request failed: %s (%s)", e.code, e)
        return _error_response(request, e)
    except ValidationError as e:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in e.errors()
        ]
        return _error_response(request, InvalidInput("invalid input", fields=fields))
    except web.HTTPRequestEntityTooLarge:
        return _error_response(request, PayloadTooLarge("request body too large"))
    except OUTAGE_ERRORS as e:
        # The database (or Redis) is down or restarting: a clean, retryable answer. The
        # transaction was rolled back with the connection, so nothing is half-written.
        logger.warning("backing service unavailable: %s", type(e).__name__)
        return _error_response(request, ServiceUnavailable("a backing service is unavailable"))
    except DBAPIError as e:
        if not _is_data_exception(e):
            logger.exception("unhandled error in %s %s", request.method, request.path)
            return _internal_error(request)
        logger.info("database rejected a value: %s", type(e.orig).__name__)
        return _error_response(request, InvalidInput("a value is out of range or malformed"))
    except web.HTTPException as e:
        if e.status >= 400 and wants_json(request):
            # aiohttp's own refusals (no route, wrong method, bad body) in the one error model.
            response = _error_response(request, _http_error(request, e))
            if "Allow" in e.headers:
                response.headers["Allow"] = e.headers["Allow"]
            return response
        raise
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return _internal_error(request)


#: The error budget's window (Settings.error_budget_per_10s).
ERROR_WINDOW_S = 10
#: Paths that never count or wait: liveness and metrics scrapes.
ERROR_BUDGET_EXEMPT = frozenset({"/healthz", "/metrics"})


def _failure_status(error: BaseException) -> int | None:
    if isinstance(error, AppError):
        return error.http_status
    if isinstance(error, ValidationError):
        return 422
    if isinstance(error, web.HTTPException):
        return error.status
    return None


@web.middleware
async def error_budget(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each client's failed requests (4xx but 429); over budget, a request waits
    `error_tarpit_s` and is refused. Runs after sign-in, so the client is the staff member when
    there is one (officers behind one address do not share a budget), else the address. The
    wait is the point: a looping prober gets one answer per wait, so its load stays small."""
    settings = request.app[keys.settings]
    budget = settings.error_budget_per_10s
    if not budget or request.path in ERROR_BUDGET_EXEMPT:
        return await handler(request)
    staff = request.get(keys.staff)
    key = f"errors:staff:{staff.staff_id}" if staff is not None else f"errors:ip:{request.remote}"
    limiter = request.app[keys.ratelimiter]
    if await limiter.count(key, window_s=ERROR_WINDOW_S) >= budget:
        await asyncio.sleep(settings.error_tarpit_s)
        raise TooManyErrors(f"more than {budget} failed requests in {ERROR_WINDOW_S} s")
    try:
        response = await handler(request)
    except BaseException as e:
        status = _failure_status(e)
        if status is not None and 400 <= status < 500 and status != 429:
            await limiter.hit(key, limit=budget, window_s=ERROR_WINDOW_S)
        raise
    if 400 <= response.status < 500 and response.status != 429:
        await limiter.hit(key, limit=budget, window_s=ERROR_WINDOW_S)
    return response


class _NotFoundRoute(AppError):
    code, http_status, message_zh = "route_not_found", 404, "页面不存在"


class MethodNotAllowed(AppError):
    """The route exists, but not with this method (`details.allowed` lists those it takes)."""

    code, http_status, message_zh = "method_not_allowed", 405, "不支持该请求方法"


class UnsupportedMediaType(AppError):
    code, http_status, message_zh = "unsupported_media_type", 415, "不支持的内容类型"


class BadRequest(AppError):
    """A request aiohttp refused before any handler (malformed, or an unusual 4xx)."""

    code, http_status, message_zh = "bad_request", 400, "请求有误"


def _http_error(request: web.Request, e: web.HTTPException) -> AppError:
    if e.status == 404:
        return _NotFoundRoute(f"no route {request.path}")
    if isinstance(e, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(
            f"{request.method} is not allowed here", allowed=sorted(e.allowed_methods)
        )
    if e.status == 413:
        return PayloadTooLarge("request body too large")
    if e.status == 415:
        return UnsupportedMediaType(e.reason)
    if e.status >= 500:
        return AppError(f"internal error; request id {request.get(keys.request_id, '')}")
    return BadRequest(e.reason)


CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:  # redirects and plain HTTP errors get the headers too
        _add_security_headers(request, e.headers)
        raise
    if not response.prepared:
        _add_security_headers(request, response.headers)
    return response


def _add_security_headers(request: web.Request, headers: Any) -> None:
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault(
        "Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)"
    )
    if request.app[keys.settings].cookie_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")

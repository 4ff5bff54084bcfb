"""Page rendering helpers shared by the views and the error middleware."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from server.kernel.errors import AppError
from web import i18n


def page(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """Render a page with the common context (language, signed-in staff, CSRF token).

    Done here rather than with aiohttp_jinja2 context processors, whose middleware would not
    run for the error pages rendered by the outer error middleware."""
    full = {**i18n.common_context(request), "request": request, **context}
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    if "lang" in request.query and request.query["lang"] in i18n.LANGUAGES:
        response.set_cookie(
            i18n.COOKIE,
            request.query["lang"],
            max_age=365 * 86400,
            samesite="Lax",
            httponly=True,
            path="/",
        )
    return response


def render_error(request: web.Request, error: AppError) -> web.Response:
    lang = i18n.language_of(request)
    message = error.message_zh if lang == "zh-CN" else str(error)
    return page(
        request, "error.html", {"code": error.code, "message": message}, status=error.http_status
    )

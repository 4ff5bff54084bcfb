"""What a request contributes to case services, the same for the REST API and the pages."""

from __future__ import annotations

from aiohttp import web

from server.cases.deadline_clock import DeadlineClock
from server.cases.evaluation import ReplyNotice
from server.http import keys


def reply_notice(request: web.Request) -> ReplyNotice:
    """How a reply's evaluation link is sent: the deployment's key and window, this origin."""
    settings = request.app[keys.settings]
    return ReplyNotice(
        pii=request.app[keys.pii],
        secret=settings.secret_bytes(),
        base_url=str(request.url.origin()),
        evaluation_days=settings.evaluation_window_days,
    )


def deadline_clock(request: web.Request) -> DeadlineClock:
    """How the deployment counts deadlines (built from the settings once, by create_app)."""
    return request.app[keys.deadline_clock]

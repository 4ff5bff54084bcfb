"""Links a page shows only to staff who may open them (issue #15): the answer comes from the
route's own permission declaration (`@protected(Action.X)`, server.auth.permissions), so a link
and the page it opens can never disagree.

    {% if can_open("/cases/dashboard") %}<a href="/cases/dashboard">…</a>{% endif %}
"""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web
from jinja2.runtime import Context

from server.auth.permissions import Action, StaffIdentity
from server.http.auth import ACTION_ATTR


def required_action(app: web.Application, path: str) -> Action | None:
    """The action the GET route at `path` (a fixed path) declares; None for a public page.
    LookupError for a path no GET route serves (a template linking to nothing is a bug)."""
    for route in app.router.routes():
        resource = route.resource
        if route.method == "GET" and resource is not None and resource.canonical == path:
            action = getattr(route.handler, ACTION_ATTR, None)
            return action if isinstance(action, Action) else None
    raise LookupError(f"no GET route for {path}")


def may_open(app: web.Application, staff: StaffIdentity | None, path: str) -> bool:
    action = required_action(app, path)
    return action is None or (staff is not None and staff.can(action))


@jinja2.pass_context
def can_open(context: Context, path: str) -> bool:
    """Template global: may the signed-in staff member open the page at `path`?"""
    request: Any = context.get("request")
    staff: StaffIdentity | None = context.get("staff")
    return may_open(request.app, staff, path)

"""The organisation browser: site tree → resources and staff."""

from __future__ import annotations

from aiohttp import web

from server.auth.permissions import Action
from server.http import keys
from server.http.auth import protected
from server.http.common import path_int
from server.org.service import site_detail, site_tree
from web.labels import RESOURCE_TYPE_LABELS, ROLE_LABELS, SITE_LEVEL_LABELS
from web.render import page

RESOURCE_LABELS = RESOURCE_TYPE_LABELS
LEVEL_LABELS = SITE_LEVEL_LABELS


@protected(Action.org_view)
async def org_tree(request: web.Request) -> web.Response:
    async with request.app[keys.db].begin() as session:
        tree = await site_tree(session)
    return page(request, "org.html", {"tree": tree, "level_labels": LEVEL_LABELS})


@protected(Action.org_view)
async def org_site(request: web.Request) -> web.Response:
    site_id = path_int(request, "site_id")
    async with request.app[keys.db].begin() as session:
        detail = await site_detail(session, site_id=site_id)
    return page(
        request,
        "site.html",
        {
            "site": detail,
            "resource_labels": RESOURCE_LABELS,
            "level_labels": LEVEL_LABELS,
            "role_labels": ROLE_LABELS,
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/org", org_tree, name="org")
    app.router.add_get(r"/org/sites/{site_id}", org_site, name="org_site")

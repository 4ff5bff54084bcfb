"""Organisation API: the site tree and a site's resources and staff."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from server import keys
from server.api.common import path_int
from server.api.openapi import documented
from server.auth.permissions import Action
from server.auth.web import current_staff, protected, public
from server.org.schemas import SiteDetail, SiteNode
from server.org.service import site_detail, site_tree


class Me(BaseModel):
    signed_in: bool
    staff_id: int | None = None
    username: str | None = None
    display_name: str | None = None
    site_id: int | None = None
    roles: list[str] = []


@documented(
    "The site tree: district centre, streets, communities",
    tags=("org",),
    response=SiteNode,
    response_list=True,
)
@protected(Action.org_view)
async def get_sites(request: web.Request) -> web.Response:
    async with request.app[keys.db].begin() as session:
        tree = await site_tree(session)
    return web.json_response([node.model_dump(mode="json") for node in tree])


@documented("One site with its resources and staff", tags=("org",), response=SiteDetail)
@protected(Action.org_view)
async def get_site(request: web.Request) -> web.Response:
    site_id = path_int(request, "site_id")
    async with request.app[keys.db].begin() as session:
        detail = await site_detail(session, site_id=site_id)
    return web.json_response(detail.model_dump(mode="json"))


@documented("Who is signed in", tags=("auth",), response=Me)
@public("tells the page whether someone is signed in")
async def whoami(request: web.Request) -> web.Response:
    staff = current_staff(request)
    if staff is None:
        return web.json_response({"signed_in": False})
    return web.json_response(
        {
            "signed_in": True,
            "staff_id": staff.staff_id,
            "username": staff.username,
            "display_name": staff.display_name,
            "site_id": staff.site_id,
            "roles": sorted(staff.roles),
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/org/sites", get_sites)
    app.router.add_get(r"/api/org/sites/{site_id}", get_site)
    app.router.add_get("/api/me", whoami)

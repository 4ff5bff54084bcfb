"""Organisation API: the site tree and a site's resources and staff."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from server.audit.service import record
from server.auth.permissions import Action
from server.http import keys
from server.http.auth import client_ip, current_staff, protected, public, signed_in_staff
from server.http.common import path_int, read_body
from server.http.openapi import documented
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


class UnlockSignIn(BaseModel, frozen=True, extra="forbid"):
    username: str = Field(min_length=1, max_length=64)


class SignInUnlocked(BaseModel):
    username: str
    #: (name, address) pairs whose failures were forgotten; 0 when the name was not throttled
    #: (or does not exist: the throttle does not know which names exist).
    cleared_pairs: int


@documented(
    "Clear a name's sign-in throttle at every address (sec_admin)",
    tags=("auth",),
    body=UnlockSignIn,
    response=SignInUnlocked,
)
@protected(Action.roles_manage)
async def unlock_sign_in(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await read_body(request, UnlockSignIn)
    cleared = await request.app[keys.signin_throttle].unlock(body.username)
    async with request.app[keys.db].begin() as session:
        await record(
            session,
            actor=f"staff:{staff.staff_id}",
            action="auth.unlocked",
            ip=client_ip(request),
            detail={"username": body.username, "cleared_pairs": cleared},
        )
    out = SignInUnlocked(username=body.username, cleared_pairs=cleared)
    return web.json_response(out.model_dump(mode="json"))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/org/sites", get_sites)
    app.router.add_get(r"/api/org/sites/{site_id}", get_site)
    app.router.add_get("/api/me", whoami)
    app.router.add_post("/api/auth/unlock", unlock_sign_in)

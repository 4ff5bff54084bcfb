"""Security administration API (sec_admin, roles.manage): a staff member's business roles and
second factor. Same services and audit entries as the /security pages."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from server.auth.permissions import Action
from server.auth.service import StaffAccount, grant_role, reset_totp, revoke_role
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int, read_body
from server.http.openapi import documented
from server.org.schemas import Role


class RoleChange(BaseModel, frozen=True, extra="forbid"):
    role: Role
    op: Literal["grant", "revoke"]


class AccountRoles(BaseModel):
    staff_id: int
    username: str
    roles: list[Role]
    totp_enrolled: bool


def _out(acc: StaffAccount) -> dict[str, object]:
    return AccountRoles(
        staff_id=acc.staff_id,
        username=acc.username,
        roles=sorted(acc.roles),
        totp_enrolled=acc.totp_enrolled,
    ).model_dump(mode="json")


@documented(
    "Grant or revoke a staff member's business role (sec_admin)",
    tags=("auth",),
    body=RoleChange,
    response=AccountRoles,
)
@protected(Action.roles_manage)
async def change_role(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    staff_id = path_int(request, "staff_id")
    body = await read_body(request, RoleChange)
    change = grant_role if body.op == "grant" else revoke_role
    async with request.app[keys.db].begin() as session:
        acc = await change(
            session, staff_id=staff_id, role=body.role, actor=staff.actor, ip=client_ip(request)
        )
    return web.json_response(_out(acc))


@documented(
    "Reset a staff member's second factor: the next sign-in enrols anew (sec_admin)",
    tags=("auth",),
    status=204,
)
@protected(Action.roles_manage)
async def totp_reset(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    staff_id = path_int(request, "staff_id")
    async with request.app[keys.db].begin() as session:
        await reset_totp(session, staff_id=staff_id, actor=staff.actor, ip=client_ip(request))
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_post(r"/api/security/staff/{staff_id}/roles", change_role)
    app.router.add_post(r"/api/security/staff/{staff_id}/totp-reset", totp_reset)

"""View objects the organisation service returns (ORM rows never leave the service)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# The enums are part of this domain's vocabulary: edges import them from here.
from server.org.models import ResourceType as ResourceType
from server.org.models import Role as Role
from server.org.models import SiteLevel as SiteLevel


class NamedRef(BaseModel):
    """A department or site in a choice list."""

    model_config = ConfigDict(frozen=True)
    id: int
    name: str


class SiteNode(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    name: str
    level: SiteLevel
    admin_code: str
    children: list[SiteNode] = []


class ResourceView(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    type: ResourceType
    name: str
    department: str | None
    capacity: int


class StaffView(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    username: str
    display_name: str
    department: str | None
    roles: list[Role]


class SiteDetail(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    name: str
    level: SiteLevel
    admin_code: str
    address: str
    parent_id: int | None
    resources: list[ResourceView]
    staff: list[StaffView]


class NewStaff(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    username: str
    display_name: str
    site_admin_code: str
    department_code: str | None = None
    roles: list[Role]


class StaffAccountView(BaseModel):
    """One row of the account list (/admin/staff)."""

    model_config = ConfigDict(frozen=True)
    id: int
    username: str
    display_name: str
    site_id: int
    site: str
    department_id: int | None
    department: str | None
    roles: list[Role]
    active: bool


class StaffPage(BaseModel):
    model_config = ConfigDict(frozen=True)
    items: list[StaffAccountView]
    total: int
    offset: int
    limit: int

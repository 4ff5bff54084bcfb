"""Organisation reference data: sites, departments, bookable resources and staff."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.kernel.db import Base, UTCDateTime


class SiteLevel(enum.StrEnum):
    district = "district"
    street = "street"
    community = "community"


class LegalRoute(enum.StrEnum):
    arbitration = "arbitration"
    review = "review"
    litigation = "litigation"
    mediation = "mediation"
    legal_aid = "legal_aid"


class ResourceType(enum.StrEnum):
    window = "window"
    legal_room = "legal_room"
    mediation_room = "mediation_room"
    video_terminal = "video_terminal"
    kiosk = "kiosk"


class Role(enum.StrEnum):
    community_agent = "community_agent"
    street_coordinator = "street_coordinator"
    centre_supervisor = "centre_supervisor"
    window_officer = "window_officer"
    dept_handler = "dept_handler"
    dept_leader = "dept_leader"
    supervising_leader = "supervising_leader"
    mediator = "mediator"
    expert = "expert"
    #: 法院联络员: records the parties' 司法确认 requests and the court's result
    court_liaison = "court_liaison"
    sys_admin = "sys_admin"
    sec_admin = "sec_admin"
    audit_admin = "audit_admin"


ADMIN_ROLES = frozenset({Role.sys_admin, Role.sec_admin, Role.audit_admin})


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


class Site(Base):
    __tablename__ = "site"
    id: Mapped[int] = mapped_column(primary_key=True)
    level: Mapped[SiteLevel] = mapped_column(_enum(SiteLevel, "site_level"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"), index=True)
    admin_code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(200), default="")
    parent: Mapped[Site | None] = relationship(remote_side=[id], lazy="raise")


class Department(Base):
    __tablename__ = "department"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    resident: Mapped[bool] = mapped_column(Boolean, default=True)
    legal_route: Mapped[LegalRoute | None] = mapped_column(_enum(LegalRoute, "legal_route"))


class Resource(Base):
    __tablename__ = "resource"
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[ResourceType] = mapped_column(_enum(ResourceType, "resource_type"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    site: Mapped[Site] = relationship(lazy="raise")


class Staff(Base):
    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"), index=True)
    phone: Mapped[str] = mapped_column(String(32), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The password was set by an administrator (a one-time password): the staff member must
    #: choose their own before anything else (server/http/auth.py, /account/password).
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sa_false()
    )
    #: TOTP secret (encrypted with the PII cipher); None until the staff member enrols.
    totp_secret_enc: Mapped[str | None] = mapped_column(String(255))
    #: Last accepted TOTP time step: a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    roles: Mapped[list[StaffRole]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", back_populates="staff"
    )

    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(r.role for r in self.roles)


class StaffRole(Base):
    __tablename__ = "staff_role"
    __table_args__ = (UniqueConstraint("staff_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    staff: Mapped[Staff] = relationship(back_populates="roles", lazy="raise")

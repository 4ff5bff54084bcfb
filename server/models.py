"""Imports every model module so that `Base.metadata` is complete (alembic, tests)."""

from server.audit.models import AuditEntry
from server.auth.models import WebSession
from server.cases.models import CaseCounter, CaseEvent, Petitioner, PetitionCase
from server.db import Base
from server.org.models import Department, Resource, Site, Staff, StaffRole
from server.sessions.models import (
    CallSession,
    ChatMessage,
    JoinToken,
    Recording,
    SessionEvent,
    SessionParticipant,
)

__all__ = [
    "AuditEntry",
    "Base",
    "CallSession",
    "CaseCounter",
    "CaseEvent",
    "ChatMessage",
    "Department",
    "JoinToken",
    "PetitionCase",
    "Petitioner",
    "Recording",
    "Resource",
    "SessionEvent",
    "SessionParticipant",
    "Site",
    "Staff",
    "StaffRole",
    "WebSession",
]

"""The sessions domain's vocabulary for edges: its enums, imported from here rather than from
the ORM models."""

from __future__ import annotations

from server.sessions.models import ParticipantRole as ParticipantRole
from server.sessions.models import SessionKind as SessionKind
from server.sessions.models import SessionMode as SessionMode
from server.sessions.models import SessionState as SessionState

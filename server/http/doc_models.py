"""Response models of API routes whose services answer plain dicts: they describe
those answers in /api/openapi.json (tests/component/server/test_openapi_conformance.py checks
the answers against them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KnowledgeHit(_Out):
    id: int
    title: str
    body: str
    matter_type: str | None
    score: int


class DepartmentScore(_Out):
    department_id: int
    probability: float
    #: the character n-grams that pushed the score up most (the "why")
    reasons: list[str]


class SimilarCase(_Out):
    case_id: int
    similarity: float


class DispatchSuggestion(_Out):
    """A dispatch suggestion for a person to confirm (智能分派: advice, never a decision)."""

    suggestion_id: int
    model_version: str
    departments: list[DepartmentScore]
    similar: list[SimilarCase]
    note_zh: str


class PublishedReport(_Out):
    id: int
    period_start: str
    period_end: str
    items: list[dict[str, Any]]
    approved_at: str | None


class QueueEntry(_Out):
    """A call in the reception queue as the desk sees it (the resident's phone masked)."""

    id: int
    site_id: int
    site_name: str
    matter_code: str
    matter_name: str
    resident_name: str
    resident_phone: str
    agent_name: str
    agent_present: bool
    waiting_since: str
    waited_s: int | float
    flagged: bool
    callback_offered: bool
    state: str
    state_label: str
    room_id: str | None
    accepted_by_name: str | None
    case_no: str | None
    callback_at: str | None


class QueueView(_Out):
    waiting: list[QueueEntry]
    flag_after_s: int | float
    callback_after_s: int | float


class CallStatus(QueueEntry):
    """The community point's own call, polled by its page (state_label in the page's
    language)."""

    callback_after_s: int | float

"""Case views and inputs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.cases.models import CaseState, Channel


class PetitionerInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(default=None, pattern=r"^1[3-9]\d{9}$")
    id_number: str | None = None
    address: str | None = Field(default=None, max_length=200)


class CaseSummary(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    case_no: str
    site_id: int
    channel: Channel
    state: CaseState
    summary: str
    matter_type: str | None
    first_receiver_id: int | None
    petitioner_id: int | None
    confidential: bool
    registered_at: datetime

"""Form validation failures as the admin pages show them: one Chinese message per field, from
the page's own table (pydantic's English messages never reach a clerk)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError


def messages_by_field(
    e: ValidationError, messages: Mapping[str, str], *, default_field: str
) -> dict[str, str]:
    """{field: message} for each field at fault (the first failure of each), a whole-form
    failure filed under `default_field`; a field without a message gets 输入有误."""
    out: dict[str, str] = {}
    for err in e.errors():
        field = str(err["loc"][0]) if err["loc"] else default_field
        out.setdefault(field, messages.get(field, "输入有误"))
    return out

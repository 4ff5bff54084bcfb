"""What every JSON view does the same way: parse a body with pydantic, read an integer path
parameter, and answer with JSON that keeps Chinese text readable."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from server.kernel.errors import InvalidInput, NotFound
from server.kernel.ids import parse_id

M = TypeVar("M", bound=BaseModel)
_ANY = TypeAdapter(Any)


def json_response(data: Any, status: int = 200) -> web.Response:
    body = data.model_dump_json() if isinstance(data, BaseModel) else _ANY.dump_json(data).decode()
    return web.Response(text=body, status=status, content_type="application/json")


async def read_body(
    request: web.Request, model: type[M], *, context: dict[str, Any] | None = None
) -> M:
    """The body as `model`; malformed JSON is InvalidInput, a mismatch a ValidationError
    (both become 422 with the offending fields named). `context` reaches the model's
    validators (deployment settings a rule depends on)."""
    try:
        raw = await request.json()
    except ValueError:
        raise InvalidInput("the body is not JSON") from None
    return model.model_validate(raw, context=context)


def path_int(request: web.Request, name: str) -> int:
    """The row id in path parameter `name`, for every route (REST and pages). One that cannot
    name a row (not digits, zero, beyond the 32-bit column) is 404 here, before the database:
    see server/kernel/ids.py."""
    value = parse_id(request.match_info[name])
    if value is None:
        raise NotFound(f"no such {name.removesuffix('_id')}")
    return value


def query_id(request: web.Request, name: str) -> int | None:
    """The optional row id in query parameter `name` (absent or empty: None); malformed or out
    of range is InvalidInput naming the field."""
    raw = request.query.get(name, "")
    if not raw:
        return None
    value = parse_id(raw)
    if value is None:
        raise InvalidInput(f"{name} must be an id", field=name)
    return value

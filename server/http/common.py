"""What every JSON view does the same way: parse a body with pydantic, read an integer path
parameter, and answer with JSON that keeps Chinese text readable."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from server.kernel.errors import InvalidInput, NotFound

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
    try:
        return int(request.match_info[name])
    except ValueError:
        raise NotFound(f"no such {name}") from None

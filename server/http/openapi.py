"""`GET /api/openapi.json`, generated from the routes themselves.

A JSON view declares its models with `@documented(...)`; the document takes their JSON Schema
from pydantic, and the permission from `@protected`. Nothing is written twice by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from server.http.auth import ACTION_ATTR, PUBLIC_ATTR, View, public

DOC_ATTR = "__onedoor_doc__"
REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Doc:
    summary: str
    tags: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_list: bool = False
    content_type: str = "application/json"
    #: The success status the handler answers with (201 for a creation, 204 for no body).
    status: int = 200


def documented(
    summary: str,
    *,
    tags: tuple[str, ...] = (),
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    response_list: bool = False,
    content_type: str = "application/json",
    status: int = 200,
) -> Callable[[View[Any]], View[Any]]:
    def wrap(handler: View[Any]) -> View[Any]:
        setattr(
            handler,
            DOC_ATTR,
            Doc(summary, tags, body, query, response, response_list, content_type, status),
        )
        return handler

    return wrap


class FieldError(BaseModel, extra="forbid"):
    field: str = Field(description="the offending field (dotted path into the body)")
    message: str


class ErrorDetails(BaseModel, extra="allow"):
    """Named values of the failure; `fields` whenever fields are at fault."""

    fields: list[FieldError] | None = None


class ErrorBody(BaseModel, extra="forbid"):
    """Every REST error (server/middlewares.py answers each failure so; docs/api.md)."""

    error: str = Field(description="stable error code (docs/api.md lists them)")
    message: str = Field(description="English detail")
    message_zh: str = Field(description="Simplified Chinese message for people")
    details: ErrorDetails | None = Field(
        default=None, description="`fields`: [{field, message}] when fields are at fault"
    )
    request_id: str = Field(description="the X-Request-Id of the request (quote it)")


ERROR_SCHEMA: dict[str, Any] = ErrorBody.model_json_schema(ref_template=REF)


def build_document(app: web.Application) -> dict[str, Any]:
    operations: list[tuple[str, str, Any, Doc]] = []
    for route in app.router.routes():
        if route.resource is None or route.method == "HEAD":
            continue
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter", "")
        doc = getattr(route.handler, DOC_ATTR, None)
        if doc is None and path.startswith("/api/") and path != "/api/openapi.json":
            # Every API route is described, with its permission, even before it has models.
            summary = (route.handler.__doc__ or route.handler.__name__).strip().splitlines()[0]
            doc = Doc(summary=summary, tags=(path.split("/")[2],))
        if doc is None:
            continue
        operations.append((route.method.lower(), path, route.handler, doc))
    models = {m for _, _, _, d in operations for m in (d.body, d.query, d.response) if m}
    keyed: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (m, "validation") for m in sorted(models, key=lambda m: m.__name__)
    ]
    refs, defs = models_json_schema(keyed, ref_template=REF)

    def ref_of(model: type[BaseModel]) -> dict[str, Any]:
        """The model's `$ref` as pydantic keyed it (module-qualified when two share a name)."""
        return dict(refs[(model, "validation")])

    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    error_body = dict(ERROR_SCHEMA)
    schemas.update(error_body.pop("$defs", {}))  # FieldError, ErrorDetails: in components
    schemas["ErrorBody"] = error_body
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler, doc in sorted(operations, key=lambda o: (o[1], o[0])):
        op: dict[str, Any] = {
            "summary": doc.summary,
            "tags": list(doc.tags),
            "operationId": f"{method}_{handler.__name__}",
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(path)
        ]
        if doc.query is not None:
            qschema = doc.query.model_json_schema(ref_template=REF)
            schemas.update(qschema.pop("$defs", {}))
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append(
                    {"name": name, "in": "query", "required": name in required, "schema": prop}
                )
        if params:
            op["parameters"] = params
        if doc.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref_of(doc.body)}},
            }
        ok: dict[str, Any] = {"description": "Created" if doc.status == 201 else "OK"}
        if doc.response is not None:
            ref = ref_of(doc.response)
            schema = {"type": "array", "items": ref} if doc.response_list else ref
            ok["content"] = {doc.content_type: {"schema": schema}}
        elif doc.content_type != "application/json":
            ok["content"] = {doc.content_type: {"schema": {"type": "string", "format": "binary"}}}
        error = {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        if doc.status == 204:
            ok = {"description": "No Content"}
        op["responses"] = {str(doc.status): ok, "4XX": error, "5XX": error}
        action = getattr(handler, ACTION_ATTR, None)
        if action is not None:
            op["x-onedoor-permission"] = str(action)
            op["security"] = [{"session": []}, {"bearer": []}]
        elif hasattr(handler, PUBLIC_ATTR):
            op["security"] = []
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "onedoor API",
            "version": "1",
            "description": "REST API of onedoor (信访超市 video reception and mediation). "
            "Authenticate with an API token (Authorization: Bearer) or the browser "
            "session cookie (then state-changing calls need the X-CSRF-Token header). "
            "Every error is an ErrorBody. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "od_session",
                    "description": "browser sign-in; state-changing calls also need the "
                    "X-CSRF-Token header carrying the od_csrf cookie's value",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "personal API token (odt_…) from /account/tokens or "
                    "`onedoor token create`; no CSRF header (docs/api.md)",
                },
            },
        },
    }


Key = tuple[str, str]


def document_table(
    routes: web.RouteTableDef,
    models: dict[Key, tuple[type[BaseModel] | None, type[BaseModel] | None]],
    *,
    tag: str,
    lists: frozenset[Key] = frozenset(),
    statuses: dict[Key, int] | None = None,
    content_types: dict[Key, str] | None = None,
    queries: dict[Key, type[BaseModel]] | None = None,
) -> None:
    """Attach request/response models given as {(path, method): (body, response)}; `lists`
    names the routes answering a JSON array of the response model, `statuses` those answering
    other than 200, `content_types` those answering other than JSON."""
    import re

    for route in routes:
        if not isinstance(route, web.RouteDef):
            continue
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        key = (path, route.method.lower())
        body, response = models.get(key, (None, None))
        summary = (route.handler.__doc__ or route.handler.__name__).strip().splitlines()[0]
        doc = Doc(
            summary,
            (tag,),
            body,
            (queries or {}).get(key),
            response,
            response_list=key in lists,
            content_type=(content_types or {}).get(key, "application/json"),
            status=(statuses or {}).get(key, 200),
        )
        setattr(route.handler, DOC_ATTR, doc)


def _path_params(path: str) -> list[str]:
    import re

    return [m.split(":")[0] for m in re.findall(r"\{([^}]+)\}", path)]


OPENAPI_KEY: web.AppKey[dict[str, Any]] = web.AppKey("openapi")


@public("the API description")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


async def _build_on_startup(app: web.Application) -> None:
    app[OPENAPI_KEY] = build_document(app)


def setup(app: web.Application) -> None:
    """Call last: the document covers the routes registered before it is built at start-up."""
    app.router.add_get("/api/openapi.json", openapi_json)
    app.on_startup.append(_build_on_startup)

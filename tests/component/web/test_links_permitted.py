"""No page links to a page the viewer cannot open (issue #15): links are shown through
`can_open`, which reads the route's own `@protected` declaration, and the home tiles' table
agrees with the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from server.app import create_app
from server.auth.permissions import Action, StaffIdentity, allowed
from server.http import keys
from server.org.models import Role
from tests.component.web.test_status_labels import visible_text
from tests.conftest import make_settings
from web.links import may_open, required_action
from web.render import page
from web.views.case_list import list_context
from web.views.home import HOME_TILES


@pytest.fixture
async def app(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[web.Application]:
    application = create_app(make_settings(tmp_path, demo_sqlite_url))
    server = TestServer(application)
    await server.start_server()
    try:
        yield application
    finally:
        await server.close()


def _as(role: Role) -> StaffIdentity:
    return StaffIdentity(
        staff_id=1,
        username="u",
        display_name="某人",
        site_id=1,
        department_id=None,
        roles=frozenset({role}),
    )


def _render(app: web.Application, role: Role, template: str, context: dict[str, Any]) -> str:
    request = make_mocked_request("GET", "/", app=app)
    request[keys.staff] = _as(role)
    response = page(request, template, context)
    assert response.text is not None
    return visible_text(response.text)


async def test_home_tiles_need_what_their_routes_need(app: web.Application) -> None:
    for label, url, action in HOME_TILES:
        assert required_action(app, url) == action, (label, url)


async def test_routes_answer_for_links(app: web.Application) -> None:
    assert required_action(app, "/cases/dashboard") == Action.case_assess
    assert required_action(app, "/scheduling/book") == Action.schedule_book
    assert required_action(app, "/login") is None  # public
    with pytest.raises(LookupError):
        required_action(app, "/no-such-page")
    assert not may_open(app, None, "/cases/dashboard")


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
async def test_gated_links_follow_the_permission_table(app: web.Application, role: Role) -> None:
    cases = _render(app, role, "cases/list.html", list_context())
    assert ("双评双考" in cases) == allowed({role}, Action.case_assess), role
    mine = _render(app, role, "scheduling/mine.html", {"items": [], "me": "staff:1"})
    assert ("新建预约" in mine) == allowed({role}, Action.schedule_book), role
    assert "我的周日程" in mine


async def test_some_role_sees_and_some_role_does_not(app: web.Application) -> None:
    """The parametrised test above must see both outcomes, or it proves nothing."""
    assert {allowed({r}, Action.case_assess) for r in Role} == {True, False}
    assert {allowed({r}, Action.schedule_book) for r in Role} == {True, False}

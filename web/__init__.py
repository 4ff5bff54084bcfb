"""The browser face of onedoor: Jinja2 pages (Simplified Chinese first, English second), thin
page views that call services, and the static WebRTC client (plain modern JavaScript).

    browser ──HTTP──► web.views.* ──► server services (org, cases, sessions)
    browser ──WS────► signaling (web/static/*.js speak onedoor.v1)
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from web import i18n, labels
from web.views import (
    audit,
    auth,
    call,
    cases,
    desk,
    home,
    join,
    kiosk,
    org,
    recordings,
    room,
    scheduling,
)

HERE = Path(__file__).parent


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    i18n.install(app, env)
    static = app.router.add_static("/static/", HERE / "static", name="static", append_version=True)
    # Versioned URLs (?v=<hash>), so browsers never run a stale client after an upgrade.
    env.globals["static"] = lambda filename: str(static.url_for(filename=filename))
    env.globals["label"] = labels.label  # {{ _(label("session_state", s.state)) }}
    auth.setup(app)
    home.setup(app)
    org.setup(app)
    audit.setup(app)
    cases.setup(app)
    scheduling.setup(app)
    call.setup(app)
    desk.setup(app)
    room.setup(app)
    join.setup(app)
    kiosk.setup(app)
    recordings.setup(app)

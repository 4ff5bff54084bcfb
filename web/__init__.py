"""The browser face of onedoor: Jinja2 pages (Simplified Chinese first, English second), thin
page views that call services, and the static WebRTC client (plain modern JavaScript).

    browser ──HTTP──► web.views.* ──► server services (org, cases, sessions)
    browser ──WS────► signaling (web/static/*.js speak onedoor.v1)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from server.http import keys
from server.kernel import clock
from web import i18n, labels, links
from web.views import (
    admin_deadlines,
    admin_holidays,
    admin_org,
    admin_staff,
    audit,
    auth,
    booking,
    call,
    case_actions,
    case_notices,
    case_sign_off,
    cases,
    desk,
    home,
    intake,
    join,
    kiosk,
    org,
    recordings,
    room,
    scheduling,
    security,
    session_minutes,
    session_record,
    supervision_batches,
    tokens,
)

HERE = Path(__file__).parent


def local_filter(tz: str) -> Callable[..., str]:
    """The `local` filter: a stored (UTC) time in the district's zone, no zone label, "—" for
    none. `{{ e.at|local }}` → 2027-04-01 07:30; `{{ a.effective_at|local("date") }}`."""
    zone = clock.zone(tz)

    def local(value: datetime | date | None, style: clock.Style = "minute") -> str:
        return clock.format_local(value, style, zone) if value is not None else "—"

    return local


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
    env.globals["can_open"] = links.can_open  # {% if can_open("/cases/dashboard") %}
    # The browser shows live times (chat, desk refresh) in the district's zone too.
    env.globals["district_timezone"] = app[keys.settings].timezone
    env.filters["local"] = local_filter(app[keys.settings].timezone)  # {{ e.at|local }}
    auth.setup(app)
    admin_deadlines.setup(app)
    admin_org.setup(app)
    admin_holidays.setup(app)
    admin_staff.setup(app)
    home.setup(app)
    org.setup(app)
    audit.setup(app)
    cases.setup(app)
    case_actions.setup(app)
    case_notices.setup(app)
    case_sign_off.setup(app)
    intake.setup(app)
    scheduling.setup(app)
    booking.setup(app)  # the booking form and changes from a booking's page (#16 item 2)
    call.setup(app)
    desk.setup(app)
    room.setup(app)
    join.setup(app)
    kiosk.setup(app)
    recordings.setup(app)
    session_record.setup(app)
    session_minutes.setup(app)
    tokens.setup(app)
    security.setup(app)
    supervision_batches.setup(app)

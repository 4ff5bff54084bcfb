"""Sign-in and sign-out pages."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from server import keys
from server.auth.service import sign_in, sign_out
from server.auth.web import SESSION_COOKIE, client_ip, public, set_cookie
from server.db import utcnow
from server.errors import AccountLocked, InvalidCredentials, RateLimited
from web.i18n import _
from web.render import page


def _safe_next(value: str | None) -> str:
    # Only local paths: never redirect to another site after sign-in.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


@public("the sign-in form")
async def login_form(request: web.Request) -> web.Response:
    return page(
        request,
        "login.html",
        {"error": None, "username": "", "next": _safe_next(request.query.get("next"))},
    )


@public("sign-in itself")
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", ""))[:64].strip()
    password = str(form.get("password", ""))[:256]
    next_url = _safe_next(str(form.get("next", "/")))
    settings = request.app[keys.settings]
    if not await request.app[keys.ratelimiter].hit(
        f"login:{client_ip(request)}", limit=settings.login_rate_per_min, window_s=60
    ):
        raise RateLimited("too many sign-in attempts from this address")
    failure: InvalidCredentials | AccountLocked | None = None
    session_id = ""
    async with request.app[keys.db].begin() as session:
        try:
            session_id, _identity = await sign_in(
                session,
                username=username,
                password=password,
                ip=client_ip(request),
                now=utcnow(),
                max_failures=settings.login_max_failures,
                lockout=timedelta(seconds=settings.login_lockout_s),
            )
        except (InvalidCredentials, AccountLocked) as e:
            # Caught inside the transaction: the failure counter and audit entries commit.
            failure = e
    if failure is not None:
        return page(
            request,
            "login.html",
            {"error": _(request, failure.message_zh), "username": username, "next": next_url},
            status=failure.http_status,
        )
    response = web.HTTPSeeOther(next_url)
    set_cookie(request, response, SESSION_COOKIE, session_id)
    raise response


@public("signing out needs no permission")
async def logout(request: web.Request) -> web.StreamResponse:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        async with request.app[keys.db].begin() as session:
            await sign_out(session, session_id=session_id, ip=client_ip(request))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout, name="logout")

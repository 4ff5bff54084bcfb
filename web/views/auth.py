"""Sign-in and sign-out pages."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import segno
from aiohttp import web

from server.audit.service import record
from server.auth import totp
from server.auth.permissions import Action, StaffIdentity
from server.auth.service import (
    CurrentPasswordWrong,
    PasswordUnchanged,
    change_password,
    check_password,
    open_session,
    sign_out,
)
from server.auth.totp import Pending
from server.http import keys
from server.http.auth import (
    PASSWORD_CHANGE_PAGE,
    SESSION_COOKIE,
    client_ip,
    protected,
    public,
    set_cookie,
    signed_in_staff,
)
from server.kernel.db import utcnow
from server.kernel.errors import (
    AppError,
    InvalidCredentials,
    InvalidInput,
    RateLimited,
    SignInThrottled,
)
from server.org import service as org
from web.i18n import _
from web.render import page

PENDING_COOKIE = "od_pending"


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
    ip = client_ip(request)
    limiter, throttle = request.app[keys.ratelimiter], request.app[keys.signin_throttle]
    # Only failures count towards the address's limit: a busy window PC signs in all day.
    if await limiter.count(f"login-failed:{ip}", window_s=60) >= settings.login_rate_per_min:
        raise RateLimited("too many failed sign-ins from this address")
    if await throttle.wait_s(username, ip) > 0:
        # The same answer for a name that exists and one that does not; nothing is checked.
        async with request.app[keys.db].begin() as session:
            await record(
                session,
                actor="anonymous",
                action="auth.sign_in_throttled",
                ip=ip,
                detail={"username": username},
            )
        throttled = SignInThrottled("too many failed sign-ins for this name from this address")
        return _login_failed(request, throttled, username, next_url)
    failure: InvalidCredentials | None = None
    session_id = ""
    pending: Pending | None = None
    identity: StaffIdentity | None = None
    async with request.app[keys.db].begin() as session:
        try:
            staff = await check_password(session, username=username, password=password, ip=ip)
            if settings.staff_2fa == "off" or (
                settings.staff_2fa == "optional" and staff.totp_secret_enc is None
            ):
                session_id, identity = await open_session(
                    session, staff=staff, ip=client_ip(request), now=utcnow()
                )
            elif staff.totp_secret_enc is not None:
                pending = Pending(staff_id=staff.id, enrol_secret=None)
            else:  # required and not yet enrolled: enrol now
                pending = Pending(staff_id=staff.id, enrol_secret=totp.new_secret())
        except InvalidCredentials as e:
            # Caught inside the transaction: the audit entry commits.
            failure = e
    if failure is not None:
        await limiter.hit(f"login-failed:{ip}", limit=settings.login_rate_per_min, window_s=60)
        await throttle.failed(username, ip)
        return _login_failed(request, failure, username, next_url)
    await throttle.succeeded(username, ip)
    if pending is not None:
        return _to_second_step(request, pending, next_url)
    if identity is not None and identity.must_change_password:
        next_url = _password_change_url(next_url)
    response = web.HTTPSeeOther(next_url)
    set_cookie(request, response, SESSION_COOKIE, session_id)
    raise response


def _password_change_url(next_url: str) -> str:
    return PASSWORD_CHANGE_PAGE + ("" if next_url == "/" else "?" + urlencode({"next": next_url}))


def _login_failed(
    request: web.Request, failure: AppError, username: str, next_url: str
) -> web.Response:
    return page(
        request,
        "login.html",
        {"error": _(request, failure.message_zh), "username": username, "next": next_url},
        status=failure.http_status,
    )


def _to_second_step(request: web.Request, pending: Pending, next_url: str) -> web.StreamResponse:
    secret = request.app[keys.settings].secret_bytes()
    response = web.HTTPSeeOther(f"/login/2fa?next={next_url}")
    set_cookie(
        request,
        response,
        PENDING_COOKIE,
        totp.pending_token(secret, pending, now=utcnow()),
        max_age=totp.PENDING_TTL_S,
    )
    raise response


@public("the second sign-in step; needs the signed pending token from the password step")
async def second_factor_form(request: web.Request) -> web.StreamResponse:
    secret = request.app[keys.settings].secret_bytes()
    pending = totp.read_pending(secret, request.cookies.get(PENDING_COOKIE), now=utcnow())
    return await _second_factor_page(request, pending, error=None)


async def _second_factor_page(
    request: web.Request, pending: Pending, *, error: str | None, status: int = 200
) -> web.Response:
    qr_svg = manual = None
    if pending.enrol_secret:
        async with request.app[keys.db].begin() as session:
            username = await org.staff_username(session, staff_id=pending.staff_id) or ""
        uri = totp.provisioning_uri(pending.enrol_secret, username)
        qr_svg = segno.make(uri, error="m").svg_data_uri(scale=5)
        manual = pending.enrol_secret
    return page(
        request,
        "login_2fa.html",
        {
            "error": error,
            "qr_svg": qr_svg,
            "manual": manual,
            "next": _safe_next(request.query.get("next")),
        },
        status=status,
    )


@public("the second sign-in step; needs the signed pending token from the password step")
async def second_factor_submit(request: web.Request) -> web.StreamResponse:
    settings = request.app[keys.settings]
    pending = totp.read_pending(
        settings.secret_bytes(), request.cookies.get(PENDING_COOKIE), now=utcnow()
    )
    form = await request.post()
    code = str(form.get("code", ""))[:12]
    next_url = _safe_next(str(form.get("next", "/")))
    if not await request.app[keys.ratelimiter].hit(
        f"totp:{pending.staff_id}", limit=settings.login_max_failures * 2, window_s=300
    ):
        raise RateLimited("too many codes tried")
    failure: AppError | None = None
    failed_name: str | None = None
    session_id = ""
    async with request.app[keys.db].begin() as session:
        try:
            staff = await totp.verify_code(
                session,
                pii=request.app[keys.pii],
                staff_id=pending.staff_id,
                code=code,
                now=time.time(),
                enrol_secret=pending.enrol_secret,
                ip=client_ip(request),
            )
            session_id, identity = await open_session(
                session, staff=staff, ip=client_ip(request), now=utcnow()
            )
            if identity.must_change_password:
                next_url = _password_change_url(next_url)
        except totp.InvalidCode as e:
            failed_name = await org.staff_username(session, staff_id=pending.staff_id)
            failure = e
    if failure is not None:
        if failed_name is not None:  # a wrong code slows this name at this address down too
            await request.app[keys.signin_throttle].failed(failed_name, client_ip(request))
        return await _second_factor_page(
            request, pending, error=_(request, failure.message_zh), status=failure.http_status
        )
    response = web.HTTPSeeOther(next_url)
    set_cookie(request, response, SESSION_COOKIE, session_id)
    response.del_cookie(PENDING_COOKIE, path="/")
    raise response


@protected(Action.org_view)
async def enrol_second_factor(request: web.Request) -> web.StreamResponse:
    """A signed-in staff member sets up (or replaces) their authenticator app."""
    staff = signed_in_staff(request)
    return _to_second_step(
        request, Pending(staff_id=staff.staff_id, enrol_secret=totp.new_secret()), "/"
    )


@public("signing out needs no permission")
async def logout(request: web.Request) -> web.StreamResponse:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        async with request.app[keys.db].begin() as session:
            await sign_out(session, session_id=session_id, ip=client_ip(request))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


_PASSWORD_MESSAGES = {
    "current_password": "当前密码不正确。",
    "new_password": "新密码至少10位，须同时包含字母和数字。",
    "unchanged": "新密码不能与当前密码相同。",
    "confirm": "两次输入的新密码不一致。",
}


def _password_page(
    request: web.Request, *, errors: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    staff = signed_in_staff(request)
    return page(
        request,
        "account_password.html",
        {
            "forced": staff.must_change_password,
            "errors": errors or {},
            "next": _safe_next(request.query.get("next")),
        },
        status=status,
    )


@public("any signed-in staff member, whatever their roles; the view requires a sign-in")
async def password_form(request: web.Request) -> web.Response:
    """Choose one's own password (the only page besides sign-out while an administrator's
    one-time password is in use)."""
    return _password_page(request)


@public("any signed-in staff member, whatever their roles; the view requires a sign-in")
async def password_submit(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    form = await request.post()
    current = str(form.get("current_password", ""))[:256]
    new = str(form.get("new_password", ""))[:256]
    confirm = str(form.get("confirm", ""))[:256]
    next_url = _safe_next(str(form.get("next", "/")))
    settings = request.app[keys.settings]
    if not await request.app[keys.ratelimiter].hit(
        f"password-change:{staff.staff_id}", limit=settings.login_max_failures * 2, window_s=300
    ):
        raise RateLimited("too many password changes tried")
    errors: dict[str, str] = {}
    if new != confirm:
        errors["confirm"] = _PASSWORD_MESSAGES["confirm"]
    else:
        async with request.app[keys.db].begin() as session:
            try:
                await change_password(
                    session,
                    staff_id=staff.staff_id,
                    current=current,
                    new=new,
                    ip=client_ip(request),
                )
            except CurrentPasswordWrong:  # caught inside: the failure's audit entry commits
                errors["current_password"] = _PASSWORD_MESSAGES["current_password"]
            except PasswordUnchanged:
                errors["new_password"] = _PASSWORD_MESSAGES["unchanged"]
            except InvalidInput:
                errors["new_password"] = _PASSWORD_MESSAGES["new_password"]
    if errors:
        return _password_page(request, errors=errors, status=422)
    raise web.HTTPSeeOther(next_url if next_url != PASSWORD_CHANGE_PAGE else "/")


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_get("/login/2fa", second_factor_form, name="login_2fa")
    app.router.add_post("/login/2fa", second_factor_submit)
    app.router.add_post("/account/2fa", enrol_second_factor, name="account_2fa")
    app.router.add_get(PASSWORD_CHANGE_PAGE, password_form, name="account_password")
    app.router.add_post(PASSWORD_CHANGE_PAGE, password_submit)

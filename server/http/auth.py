"""The HTTP edge of auth: the middleware that loads who is signed in, CSRF, and `require`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from server.audit.service import record
from server.auth import csrf
from server.auth.api_tokens import authenticate
from server.auth.permissions import Action, StaffIdentity
from server.auth.service import PasswordChangeRequired, load_session
from server.http import keys
from server.kernel.db import utcnow
from server.kernel.errors import CsrfFailed, NotAuthenticated, PermissionDenied

logger = logging.getLogger(__name__)

SESSION_COOKIE = "od_session"
BEARER = "bearer "
#: Where a staff member whose password an administrator set may go before changing it.
PASSWORD_CHANGE_PAGE = "/account/password"
_OPEN_BEFORE_PASSWORD_CHANGE = frozenset(
    {PASSWORD_CHANGE_PAGE, "/logout", "/login", "/login/2fa", "/healthz", "/readyz",
     "/favicon.ico"}
)  # fmt: skip


def client_ip(request: web.Request) -> str:
    return request.remote or ""


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[keys.settings]
    request[keys.staff] = None
    authorization = request.headers.get("Authorization", "")
    if authorization[: len(BEARER)].lower() == BEARER:
        # An API client: the token alone says who it is (any cookie is ignored); an unknown,
        # expired or revoked token is refused, never treated as anonymous.
        async with request.app[keys.db].begin() as session:
            request[keys.staff] = await authenticate(
                session,
                token=authorization[len(BEARER) :].strip(),
                now=utcnow(),
                ip=client_ip(request),
                method=request.method,
                path=request.path,
            )
        _check_password_changed(request)
        return await handler(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    # Liveness never touches the database: a browser's cookie must not make it wait there.
    if session_id and request.path != "/healthz":
        async with request.app[keys.db].begin() as session:
            request[keys.staff] = await load_session(
                session,
                session_id=session_id,
                now=utcnow(),
                idle_timeout=timedelta(seconds=settings.session_idle_timeout_s),
            )
    _check_password_changed(request)
    return await handler(request)


def _check_password_changed(request: web.Request) -> None:
    """A staff member signed in with a password an administrator set reaches only the change
    page and sign-out: a page redirects there, the API and any other request answers 403
    `password_change_required`."""
    staff = request[keys.staff]
    if staff is None or not staff.must_change_password:
        return
    path = request.path
    if path in _OPEN_BEFORE_PASSWORD_CHANGE or path.startswith("/static/"):
        return
    if request.method in ("GET", "HEAD") and not path.startswith("/api/"):
        raise web.HTTPSeeOther(PASSWORD_CHANGE_PAGE)
    raise PasswordChangeRequired("choose your own password first")


def _bearer(request: web.Request) -> bool:
    staff = request.get(keys.staff)
    return staff is not None and staff.token_id is not None


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _bearer(request):
        # CSRF guards cookies a browser sends by itself; a bearer token is sent only by a
        # client that holds it (and the cookie was ignored), so there is nothing to forge.
        request[keys.csrf_token] = ""
        return await handler(request)
    secret = request.app[keys.settings].secret_bytes()
    cookie = request.cookies.get(csrf.COOKIE)
    now = utcnow()
    changes_state = request.method not in csrf.SAFE_METHODS
    fresh = not csrf.well_formed(secret, cookie, now=now, accept_legacy=changes_state)
    token = csrf.new_token(secret, now=now) if fresh else str(cookie)
    request[keys.csrf_token] = token
    if changes_state:
        submitted = request.headers.get(csrf.HEADER)
        if submitted is None and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await request.post()
            value = form.get(csrf.FORM_FIELD)
            submitted = value if isinstance(value, str) else None
        if fresh or not csrf.matches(secret, cookie, submitted, now=now):
            raise CsrfFailed("missing or invalid CSRF token")
    response = await handler(request)
    if fresh and not response.prepared:
        set_cookie(request, response, csrf.COOKIE, token, httponly=False)
    return response


def set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    httponly: bool = True,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        httponly=httponly,
        secure=request.app[keys.settings].cookie_secure,
        samesite="Lax",
        path="/",
        max_age=max_age,
    )


def current_staff(request: web.Request) -> StaffIdentity | None:
    return request.get(keys.staff)


def signed_in_staff(request: web.Request) -> StaffIdentity:
    """Inside a `protected` view: the staff member the check admitted."""
    staff = current_staff(request)
    if staff is None:
        raise NotAuthenticated("sign in first")
    return staff


async def require(request: web.Request, action: Action) -> StaffIdentity:
    """The signed-in staff member, if the permission table lets their roles do `action`.

    Raises:
        NotAuthenticated: nobody is signed in.
        PermissionDenied: signed in, but not allowed (the denial is audited).
    """
    staff = current_staff(request)
    if staff is None:
        raise NotAuthenticated("sign in first")
    if not staff.can(action):
        async with request.app[keys.db].begin() as session:
            await record(
                session,
                actor=staff.actor,
                action="auth.permission_denied",
                object_type="action",
                object_id=str(action),
                ip=client_ip(request),
                detail={"path": request.path, "method": request.method},
            )
        raise PermissionDenied(f"your roles may not {action}")
    return staff


ACTION_ATTR = "__onedoor_action__"
PUBLIC_ATTR = "__onedoor_public__"


R = TypeVar("R", bound=web.StreamResponse)
View = Callable[[web.Request], Awaitable[R]]


def protected(action: Action) -> Callable[[View[R]], View[R]]:
    """Declare the action a view needs; the permission check runs before the view.

    The declaration lives on the handler, so tests can walk every route and try every role
    against it (tests/component/server/test_access_matrix.py).
    """

    def wrap(handler: View[R]) -> View[R]:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> R:
            await require(request, action)
            return await handler(request)

        setattr(guarded, ACTION_ATTR, action)
        return guarded

    return wrap


def public(reason: str) -> Callable[[View[R]], View[R]]:
    """Declare a view open without sign-in (the reason is for reviewers and the access test)."""

    def wrap(handler: View[R]) -> View[R]:
        setattr(handler, PUBLIC_ATTR, reason)
        return handler

    return wrap

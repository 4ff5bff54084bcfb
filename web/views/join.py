"""Residents join by link or QR (`GET /join/{token}`): no account; the token is the credential.
An expired, revoked or unknown link gets a clear zh-CN page instead of a broken room."""

from __future__ import annotations

from aiohttp import web

from server.http import keys
from server.http.auth import client_ip, public
from server.kernel.db import utcnow
from server.kernel.ratelimit import check_join_rate
from server.sessions import service as sessions
from server.sessions.errors import (
    SessionClosed,
    SessionNotFound,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
)
from web.render import page

#: Error code → (title, what the resident should do), zh-CN msgids.
LINK_PROBLEMS = {
    "token_expired": (
        "链接已过期",
        "该视频接访链接已过期。请联系为您预约的工作人员，重新获取链接或二维码。",
    ),
    "token_revoked": (
        "链接已失效",
        "该链接已被工作人员撤销。如仍需视频接访，请联系工作人员重新发送链接。",
    ),
    "token_invalid": (
        "链接无效",
        "无法识别该链接，请检查是否完整复制，或直接扫描工作人员提供的二维码。",
    ),
    "session_closed": (
        "会话已结束",
        "本次视频接访或调解已经结束。如有需要，请联系工作人员另行预约。",
    ),
    "room_not_found": (
        "链接无效",
        "无法识别该链接，请检查是否完整复制，或直接扫描工作人员提供的二维码。",
    ),
}


@public(
    "the join link's token is the credential; verified here and again on the socket "
    "(rate-limited per address)"
)
async def join(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    await check_join_rate(
        request.app[keys.ratelimiter],
        client_ip(request),
        per_min=request.app[keys.settings].join_rate_per_min,
    )
    try:
        async with request.app[keys.db].begin() as session:
            admission = await sessions.admit_join_token(
                session,
                secret=request.app[keys.settings].secret_bytes(),
                token=token,
                now=utcnow(),
            )
    except (TokenExpired, TokenRevoked, TokenInvalid, SessionClosed, SessionNotFound) as e:
        title, advice = LINK_PROBLEMS[e.code]
        status = 410 if e.code in ("token_expired", "token_revoked", "session_closed") else 404
        return page(
            request,
            "join_problem.html",
            {"title": title, "advice": advice, "code": e.code},
            status=status,
        )
    grant, view = admission.grant, admission.session
    response = page(
        request,
        "join.html",
        {
            "room_id": grant.room_id,
            "token": token,
            "display_name": grant.display_name,
            "title": view.title,
            "kind": view.kind.value,
        },
    )
    response.headers["Referrer-Policy"] = "no-referrer"  # the token must not leak onwards
    response.headers["Cache-Control"] = "no-store"
    return response


def setup(app: web.Application) -> None:
    app.router.add_get(r"/join/{token}", join, name="join")

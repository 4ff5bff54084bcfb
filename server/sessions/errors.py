"""Errors of the sessions domain. Each has a stable `code`; the join-link and room codes are
the ones signaling clients and the join page already switch on (`token_invalid`,
`room_not_found`, ...), so signaling re-exports these classes instead of defining its own."""

from __future__ import annotations

from server.kernel.errors import AppError, IllegalTransition, NotFound


class TokenInvalid(AppError):
    code, http_status, message_zh = "token_invalid", 401, "链接无效"


class TokenExpired(AppError):
    code, http_status, message_zh = "token_expired", 401, "链接已过期"


class TokenRevoked(AppError):
    code, http_status, message_zh = "token_revoked", 401, "链接已被撤销"


class SessionNotFound(NotFound):
    """No session with that room or id (the code signaling has always sent for it)."""

    code, http_status, message_zh = "room_not_found", 404, "会话不存在"


class SessionClosed(AppError):
    code, http_status, message_zh = "session_closed", 410, "会话已结束"


class SessionNotOpen(AppError):
    """A booked session before its room opens (its window): it can be neither started nor
    ended yet; `details` say when it opens."""

    code, http_status, message_zh = (
        "session_not_open",
        409,
        "预约的会话尚未到开放时间，不能开始或结束",
    )


class JoinTokenNotFound(NotFound):
    code, message_zh = "join_token_not_found", "邀请链接不存在"


class IllegalSessionTransition(IllegalTransition):
    """A lifecycle change the session's state does not allow (code `illegal_transition`, the
    code scheduling has always answered with); `details` name the states."""

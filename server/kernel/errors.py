"""The one error root. Domain code raises these; only the HTTP middleware and the WebSocket
loop translate them (into `{"error": code, "message": ...}`)."""

from __future__ import annotations

from typing import Any, ClassVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

#: A backing service (the database, Redis) is down or restarting: retryable, not a bug. The
#: HTTP edge answers 503 `service_unavailable`; signaling sends `room_unavailable`.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,  # no pooled connection within pool_timeout
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
)


class AppError(Exception):
    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    #: Human message in Simplified Chinese, for the UI; str(e) is the English detail.
    message_zh: ClassVar[str] = "服务器内部错误"

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message or self.code)
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.code,
            "message": str(self),
            "message_zh": self.message_zh,
        }
        if self.details:
            body["details"] = self.details
        return body


class NotFound(AppError):
    code, http_status, message_zh = "not_found", 404, "未找到"


class PermissionDenied(AppError):
    code, http_status, message_zh = "permission_denied", 403, "没有权限"


class NotAuthenticated(AppError):
    code, http_status, message_zh = "not_authenticated", 401, "请先登录"


class InvalidInput(AppError):
    code, http_status, message_zh = "invalid_input", 422, "输入有误"


class CsrfFailed(AppError):
    code, http_status, message_zh = "csrf_failed", 403, "页面已过期，请刷新后重试"


class AccountLocked(AppError):
    code, http_status, message_zh = "account_locked", 423, "账号已锁定，请稍后再试"


class SignInThrottled(AppError):
    """Too many failed sign-ins for this name from this address: the same answer whether the
    name exists or not (server/kernel/throttle.py)."""

    code, http_status, message_zh = "sign_in_throttled", 429, "登录失败次数过多，请稍后再试"


class InvalidCredentials(AppError):
    code, http_status, message_zh = "invalid_credentials", 401, "用户名或密码错误"


class Conflict(AppError):
    code, http_status, message_zh = "conflict", 409, "操作冲突"


class BookingConflict(Conflict):
    code, message_zh = "booking_conflict", "时间冲突，该时段已被预约"


class IllegalTransition(Conflict):
    code, message_zh = "illegal_transition", "当前状态不允许该操作"


class PayloadTooLarge(AppError):
    code, http_status, message_zh = "payload_too_large", 413, "提交内容过大"


class RateLimited(AppError):
    code, http_status, message_zh = "rate_limited", 429, "操作过于频繁，请稍后再试"


class TooManyErrors(RateLimited):
    """A client whose requests keep failing (probing ids, routes, permissions) waits."""

    code, message_zh = "too_many_errors", "请求错误过多，请稍后再试"


class JoinRateLimited(RateLimited):
    """Too many join links redeemed from one address (page and signaling join together)."""

    code, message_zh = "join_rate_limited", "进入次数过多，请稍等一分钟后再试"


class KioskRateLimited(RateLimited):
    code, message_zh = "kiosk_rate_limited", "登记过于频繁，请稍等一分钟后再试"


class SignalingError(AppError):
    code, http_status, message_zh = "signaling_error", 400, "连线出错"


class MediaError(AppError):
    code, http_status, message_zh = "media_error", 502, "音视频服务出错"


class ServiceUnavailable(AppError):
    code, http_status, message_zh = "service_unavailable", 503, "服务暂时不可用，请稍后重试"


class DatabaseBusy(ServiceUnavailable):
    """No database connection (or, on SQLite, no turn at the write lock) within the bound."""

    code = "database_busy"

"""Typed signaling errors: each has a stable `code` clients switch on and a Chinese message.

They are sent as `error` messages and never close the socket unless `close_code` is set.
"""

from __future__ import annotations

from media import errors as media_errors
from server.kernel.errors import AppError, JoinRateLimited, SignalingError

# A join link's errors and a missing session belong to the sessions domain (it verifies
# tokens and looks sessions up); signaling sends them under the same codes.
from server.sessions.errors import SessionNotFound as RoomNotFound
from server.sessions.errors import SessionNotOpen as SessionNotOpen
from server.sessions.errors import TokenExpired as TokenExpired
from server.sessions.errors import TokenInvalid as TokenInvalid
from server.sessions.errors import TokenRevoked as TokenRevoked


class BadMessage(SignalingError):
    code, message_zh = "bad_message", "消息格式有误"


class UnknownType(SignalingError):
    code, message_zh = "unknown_type", "不支持的消息类型"


class MessageTooLarge(SignalingError):
    code, http_status, message_zh = "message_too_large", 413, "消息过大"


class RateLimited(SignalingError):
    code, http_status, message_zh = "rate_limited", 429, "操作过于频繁，请稍后再试"


class NotJoined(SignalingError):
    code, message_zh = "not_joined", "请先加入房间"


class AlreadyJoined(SignalingError):
    code, message_zh = "already_joined", "已在房间中"


class OutOfOrder(SignalingError):
    code, http_status, message_zh = "out_of_order", 409, "消息顺序有误"


class NotAuthenticated(SignalingError):
    code, http_status, message_zh = "not_authenticated", 401, "请先登录或使用邀请链接"


class Forbidden(SignalingError):
    code, http_status, message_zh = "forbidden", 403, "没有权限"


class RoomFull(SignalingError):
    code, http_status, message_zh = "room_full", 409, "房间已满"


class LobbyFull(SignalingError):
    code, http_status, message_zh = "lobby_full", 409, "等候人数已满，请稍后再试"


class RoomLocked(SignalingError):
    code, http_status, message_zh = "room_locked", 423, "房间已锁定"


class SessionClosed(SignalingError):
    """The room has ended (room state); the domain's own is server.sessions.errors."""

    code, http_status, message_zh = "session_closed", 410, "会话已结束"


class PeerNotFound(SignalingError):
    code, http_status, message_zh = "peer_not_found", 404, "参与人不存在"


class InvalidState(SignalingError):
    code, http_status, message_zh = "invalid_state", 409, "当前状态不允许该操作"


class NoOfficial(SignalingError):
    code, http_status, message_zh = "no_official", 409, "工作人员不在场，暂不能进入"


class ConsentMissing(SignalingError):
    code, http_status, message_zh = "consent_missing", 409, "尚有参与人未同意录像"


class ConsentRefused(SignalingError):
    code, http_status, message_zh = "consent_refused", 409, "有参与人拒绝录像，请做书面笔录"


class NodeFull(SignalingError):
    code, http_status, message_zh = "node_full", 503, "服务器繁忙，请稍后再试"


class TooManyConnections(SignalingError):
    code, http_status, message_zh = "too_many_connections", 429, "连接过多"


class ConnectionReplaced(SignalingError):
    code, http_status, message_zh = "connection_replaced", 409, "您已在其他窗口或设备上进入"


class RoomUnavailable(SignalingError):
    code, http_status, message_zh = "room_unavailable", 503, "会话暂时不可用，正在恢复"


class MediaUnavailable(SignalingError):
    code, http_status, message_zh = "media_error", 502, "音视频服务出错"


class ResumeFailed(SignalingError):
    code, http_status, message_zh = "resume_failed", 410, "无法恢复连接，请重新进入"


#: WebSocket close codes (4000-4999), listed in docs/signaling.md.
CLOSE_CODES: dict[str, int] = {
    "protocol_error": 4400,
    "denied": 4403,
    "removed": 4404,
    "connection_replaced": 4409,
    "session_ended": 4410,
    "rate_limited": 4429,
    "resume_failed": 4411,
}

ALL_ERRORS: list[type[AppError]] = [
    BadMessage,
    UnknownType,
    MessageTooLarge,
    RateLimited,
    NotJoined,
    AlreadyJoined,
    OutOfOrder,
    TokenInvalid,
    TokenExpired,
    TokenRevoked,
    NotAuthenticated,
    Forbidden,
    RoomNotFound,
    RoomFull,
    LobbyFull,
    RoomLocked,
    SessionClosed,
    SessionNotOpen,
    PeerNotFound,
    InvalidState,
    NoOfficial,
    ConsentMissing,
    ConsentRefused,
    NodeFull,
    TooManyConnections,
    ConnectionReplaced,
    RoomUnavailable,
    MediaUnavailable,
    ResumeFailed,
]


#: Every `code` an `error` message can carry: the one documented list (docs/signaling.md,
#: "Errors"), an enum in docs/signaling.schema.json.
ERROR_CODES: tuple[str, ...] = tuple(
    sorted(
        {
            *(e.code for e in ALL_ERRORS),
            JoinRateLimited.code,
            media_errors.MediaFailure.code,
            media_errors.PeerNotFound.code,
            media_errors.InvalidDescription.code,
            media_errors.NegotiationConflict.code,
            media_errors.NegotiationTimeout.code,
            media_errors.RecordingError.code,
            media_errors.MediaSaturated.code,
            "media_failed",  # the media connection failed: send a new offer (no `re`)
        }
    )
)

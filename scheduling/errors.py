"""Scheduling errors: leaves of the one AppError root (server/kernel/errors.py)."""

from __future__ import annotations

from server.kernel.errors import BookingConflict, InvalidInput, NotFound


class SlotUnavailable(InvalidInput):
    """The time lies outside someone's working hours, notice or advance window, or leave."""

    code, http_status, message_zh = "slot_unavailable", 422, "所选时间不在可预约时段内"


class HoldExpired(BookingConflict):
    code, message_zh = "hold_expired", "预留已过期，该时段已被他人预约，请重新选择"


class UnknownParticipant(NotFound):
    code, http_status, message_zh = "unknown_participant", 422, "参与人员或资源不存在或已停用"


class WrongResourceKind(InvalidInput):
    code, message_zh = "wrong_resource_kind", "资源类型不符"


class BookingNotFound(NotFound):
    code, message_zh = "booking_not_found", "预约不存在"


class BookingClosed(BookingConflict):
    code, message_zh = "booking_closed", "该预约已取消或已改期，不能再修改"

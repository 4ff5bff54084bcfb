"""What a resident takes home from a video reception: the case number, what happens next and
the link to follow the case, on the community point's screen and by SMS (issue #16 item 6).

The reception's outcomes are the desk's (`web.views.desk.OUTCOMES`); each has its next step
in words here, so the screen, the SMS and the timeline say the same thing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.cases.outbox import ResidentPhone, enqueue
from server.cases.queries import case_number, petitioner_phone
from server.cases.timeline import append_event
from server.kernel.crypto import PiiCipher

#: The desk's outcome → what happens next, as told to the resident.
NEXT_STEPS: dict[str, str] = {
    "accepted": "您的事项已受理，承办单位将依法在规定期限内办理并书面答复。",
    "answered": "工作人员已当场答复。如仍有疑问，可凭事项编号查询或再次来访。",
    "redirected": "您的诉求应通过法定途径解决，请按工作人员告知的途径办理。",
    "joint": "您的事项已转入联合调处，工作人员将与您联系确定调解时间。",
    "interrupted": "通话中断，工作人员将尽快与您联系。",
}
SMS_SIGNATURE = "【拱墅区信访超市】"


def next_step(outcome: str) -> str:
    return NEXT_STEPS.get(outcome, "工作人员将与您联系。")


def receipt_text(case_no: str, outcome: str, follow_url: str) -> str:
    return (
        f"{SMS_SIGNATURE}您的信访事项编号{case_no}。{next_step(outcome)}查询办理进度：{follow_url}"
    )


async def send_reception_receipt(
    session: AsyncSession,
    *,
    pii: PiiCipher,
    case_id: int,
    session_id: int,
    outcome: str,
    follow_url: str,
    now: datetime,
) -> bool:
    """Queue the SMS to the petitioner (once per reception: the dedupe key is the session)
    and note it on the timeline. False when the petitioner left no phone."""
    phone = await petitioner_phone(session, pii=pii, case_id=case_id)
    if phone:
        await enqueue(
            session,
            key=f"reception:{session_id}",
            case_id=case_id,
            to=ResidentPhone(phone, pii),
            subject="信访事项回执",
            body=receipt_text(await case_number(session, case_id=case_id), outcome, follow_url),
            now=now,
        )
    await append_event(
        session,
        case_id=case_id,
        type="reception_receipt_sent",
        at=now,
        payload={"outcome": outcome, "sms": bool(phone)},
    )
    return bool(phone)

"""A booking's case, looked up by its case number (案件编号) with the booker's visibility: a
number that does not exist and a case the booker may not see give the same 404
`case_not_found` (nothing disclosed), never a 500."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.schemas import BookingRequest
from server.auth.permissions import StaffIdentity
from server.cases.access import CaseNotFound, check_visible, visible_case_id


async def link_case(
    session: AsyncSession, request: BookingRequest, *, booker: StaffIdentity
) -> BookingRequest:
    """The request with `case_id` set from `case_no` (or a given `case_id` checked).

    Raises:
        CaseNotFound: no such case, or the booker may not see it (`details.field` = case_no).
    """
    if request.case_no and request.case_no.strip():
        try:
            case_id = await visible_case_id(session, staff=booker, case_no=request.case_no)
        except CaseNotFound:
            raise CaseNotFound(
                f"no case numbered {request.case_no!r} that you may see", field="case_no"
            ) from None
        return request.model_copy(update={"case_id": case_id, "case_no": request.case_no.strip()})
    if request.case_id is not None:
        try:
            await check_visible(session, staff=booker, case_id=request.case_id)
        except CaseNotFound:
            raise CaseNotFound(
                f"no case {request.case_id} that you may see", field="case_no"
            ) from None
    return request

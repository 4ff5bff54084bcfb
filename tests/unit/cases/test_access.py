"""A confidential case never goes to the accused unit (access.check_not_accused)."""

from __future__ import annotations

import pytest

from server.cases.access import check_not_accused
from server.cases.models import PetitionCase
from server.cases.statemachine import ConfidentialTransferBlocked

ACCUSED = 7


def case(*, confidential: bool, accused: int | None) -> PetitionCase:
    return PetitionCase(confidential=confidential, accused_dept_id=accused)


def test_the_accused_unit_and_its_members_are_blocked() -> None:
    row = case(confidential=True, accused=ACCUSED)
    with pytest.raises(ConfidentialTransferBlocked, match="go to the accused unit"):
        check_not_accused(row, department_id=ACCUSED)
    with pytest.raises(ConfidentialTransferBlocked, match="member of the accused unit"):
        check_not_accused(row, member_of=ACCUSED)


def test_other_units_and_people_without_a_department_may_handle_it() -> None:
    row = case(confidential=True, accused=ACCUSED)
    check_not_accused(row, department_id=8)
    check_not_accused(row, member_of=8)
    check_not_accused(row, department_id=None, member_of=None)


def test_open_cases_and_cases_without_an_accused_unit_are_not_restricted() -> None:
    check_not_accused(case(confidential=False, accused=ACCUSED), department_id=ACCUSED)
    check_not_accused(case(confidential=True, accused=None), department_id=ACCUSED)

"""The service chain (接、转、调、诉、化, DOMAIN.md): each state's link, as issue #17 found them
wrong (handling showed 调, 复查/复核 showed 诉, a terminated case showed 化)."""

from __future__ import annotations

import pytest

from server.cases.labels import CHAIN_LINK, chain_link
from server.cases.models import CaseState


def test_every_state_has_a_link_entry() -> None:
    assert set(CHAIN_LINK) == {s.value for s in CaseState}


@pytest.mark.parametrize(
    ("state", "mediating", "link"),
    [
        ("registered", False, "接"),
        ("not_accepted", False, "接"),
        ("transferred", False, "转"),
        ("handling", False, "转"),  # handled by the unit it went to: not mediation
        ("handling", True, "调"),  # a mediation session or agreement of the case
        ("accepted", True, "调"),
        ("review", False, "转"),  # 复查 is handled again inside the petition system
        ("re_review", False, "转"),
        ("redirected_legal", False, "诉"),  # arbitration, administrative review, litigation
        ("redirected_legal", True, "诉"),
        ("replied", False, "化"),
        ("closed", True, "化"),  # resolved, mediated or not
        ("terminated", False, ""),  # not resolved: in no link
        ("terminated", True, ""),
    ],
)
def test_the_link_of_each_state(state: str, mediating: bool, link: str) -> None:
    assert chain_link(state, mediating=mediating) == link

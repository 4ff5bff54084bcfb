"""The zh-CN label of each case state and the service-chain link (接、转、调、诉、化) it
belongs to: the case file shows both."""

from __future__ import annotations

STATE_LABELS = {
    "registered": "登记",
    "accepted": "已受理",
    "not_accepted": "不予受理",
    "redirected_legal": "导入法定途径",
    "transferred": "转送/交办",
    "handling": "办理中",
    "replied": "已答复",
    "evaluated": "已评价",
    "revisited": "已回访",
    "closed": "已结案",
    "review": "复查",
    "re_review": "复核",
    "terminated": "终止",
}
#: The service-chain link (接、转、调、诉、化, DOMAIN.md: receive, transfer, mediate, litigate,
#: resolve) of each state. 复查/复核 are handled again inside the petition system (转), not in a
#: court; a case being mediated is in 调 (`chain_link`); a terminated case is in no link.
CHAIN_LINK = {
    "registered": "接",
    "accepted": "接",
    "not_accepted": "接",
    "transferred": "转",
    "handling": "转",
    "review": "转",
    "re_review": "转",
    "redirected_legal": "诉",
    "replied": "化",
    "evaluated": "化",
    "revisited": "化",
    "closed": "化",
    "terminated": "",
}
#: States in which a mediation (a mediation session or agreement of the case) puts it in 调.
MEDIATION_STATES = frozenset({"accepted", "transferred", "handling", "review", "re_review"})


def chain_link(state: str, *, mediating: bool = False) -> str:
    """The link a case is in ("" when it is in none: terminated)."""
    if mediating and state in MEDIATION_STATES:
        return "调"
    return CHAIN_LINK.get(state, "")

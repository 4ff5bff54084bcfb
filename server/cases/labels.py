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
#: The service-chain link (接、转、调、诉、化) a state belongs to.
CHAIN_LINK = {
    "registered": "接",
    "accepted": "接",
    "transferred": "转",
    "handling": "调",
    "redirected_legal": "诉",
    "review": "诉",
    "re_review": "诉",
    "replied": "化",
    "evaluated": "化",
    "revisited": "化",
    "closed": "化",
    "not_accepted": "接",
    "terminated": "化",
}

"""A matter type's typed attributes (validation.validate_attributes)."""

from __future__ import annotations

from typing import Any

import pytest

from server.cases.validation import ATTRIBUTE_TEXT_MAX, validate_attributes
from server.kernel.errors import InvalidInput

FIELDS: list[dict[str, Any]] = [
    {"name": "employer", "label": "用人单位", "type": "text", "required": True},
    {"name": "months", "label": "拖欠月数", "type": "int", "required": True},
    {"name": "since", "label": "开始日期", "type": "date", "required": False},
    {"name": "written", "label": "书面合同", "type": "bool", "required": False},
]


def check(attributes: dict[str, Any]) -> dict[str, Any]:
    return validate_attributes("wage_arrears", FIELDS, attributes)


def test_values_are_normalised_and_optional_ones_may_be_left_out() -> None:
    assert check({"employer": "某公司", "months": "3", "since": "2026-01-05"}) == {
        "employer": "某公司",
        "months": 3,
        "since": "2026-01-05",
    }
    assert check({"employer": "某公司", "months": 2, "written": False})["written"] is False


@pytest.mark.parametrize(
    ("attributes", "field", "reason"),
    [
        ({"months": 3}, "employer", "请填写“用人单位”"),
        ({"employer": "", "months": 3}, "employer", "请填写“用人单位”"),
        ({"employer": "某公司", "months": "三"}, "months", "“拖欠月数”应为整数"),
        ({"employer": "某公司", "months": True}, "months", "“拖欠月数”应为整数"),
        ({"employer": "某公司", "months": 1, "since": "5/1/2026"}, "since", "应为日期"),
        ({"employer": "某公司", "months": 1, "written": "yes"}, "written", "应为是或否"),
        ({"employer": "x" * (ATTRIBUTE_TEXT_MAX + 1), "months": 1}, "employer", "不超过500字"),
    ],
)
def test_a_wrong_value_names_its_field(attributes: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check(attributes)
    assert info.value.details["field"] == field
    assert reason in info.value.details["reason_zh"]


def test_unknown_attributes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown attributes"):
        check({"employer": "某公司", "months": 1, "colour": "red"})

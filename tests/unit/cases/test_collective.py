"""Collective visits (集体访): the intake's headcount and representatives, checked at the edge."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from server.cases.schemas import MAX_REPRESENTATIVES, IntakeRequest
from server.cases.validation import (
    MAX_REPRESENTATIVES_CAP,
    DuplicateRepresentative,
    HeadcountTooLow,
    InvalidCollective,
    InvalidIdNumber,
    InvalidPhone,
    NotCollective,
    RepresentativesRequired,
    TooManyRepresentatives,
)
from server.kernel.errors import InvalidInput
from server.kernel.settings import Settings, SettingsError

ID = "11010519491231002X"  # the GB 11643 standard's own example


def rep(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"代表{i}", "phone": f"1381234{i:04d}", **extra}


def intake(context: dict[str, Any] | None = None, **fields: Any) -> IntakeRequest:
    body = {"channel": "window", "site_id": 1, "summary": "小区集体反映噪声扰民", **fields}
    return IntakeRequest.model_validate(body, context=context)


def test_a_collective_visit_keeps_headcount_and_normalised_representatives() -> None:
    req = intake(
        collective=True,
        headcount=30,
        representatives=[
            rep(1, id_number=ID.lower()),
            {"name": " 李四 ", "phone": "+86 139-0000-0001"},
        ],
    )
    assert req.headcount == 30
    assert [(r.name, r.phone, r.id_number) for r in req.representatives] == [
        ("代表1", "13812340001", ID),
        ("李四", "13900000001", None),
    ]


def test_five_representatives_by_default_more_is_a_typed_error() -> None:
    ctx = {MAX_REPRESENTATIVES: 5}
    assert (
        len(
            intake(
                ctx, collective=True, headcount=9, representatives=[rep(i) for i in range(5)]
            ).representatives
        )
        == 5
    )
    with pytest.raises(TooManyRepresentatives) as err:
        intake(ctx, collective=True, headcount=9, representatives=[rep(i) for i in range(6)])
    assert err.value.code == "too_many_representatives" and err.value.http_status == 422
    assert err.value.details["field"] == "representatives"
    assert "不得超过5人" in err.value.details["reason_zh"]
    # A deployment with a stricter local rule.
    with pytest.raises(TooManyRepresentatives):
        intake(
            {MAX_REPRESENTATIVES: 3},
            collective=True,
            headcount=9,
            representatives=[rep(i) for i in range(4)],
        )
    # Without context only the hard bound applies here; the service checks the setting again.
    assert (
        len(
            intake(
                collective=True, headcount=9, representatives=[rep(i) for i in range(6)]
            ).representatives
        )
        == 6
    )
    with pytest.raises(TooManyRepresentatives):
        intake(
            collective=True,
            headcount=99,
            representatives=[rep(i) for i in range(MAX_REPRESENTATIVES_CAP + 1)],
        )


def test_the_setting_defaults_to_five_and_is_bounded() -> None:
    assert Settings.model_fields["collective_max_representatives"].default == 5
    env: dict[str, str] = {}
    assert (
        Settings.from_env(
            {**env, "ONEDOOR_COLLECTIVE_MAX_REPRESENTATIVES": "3"}
        ).collective_max_representatives
        == 3
    )
    with pytest.raises(SettingsError):
        Settings.from_env({**env, "ONEDOOR_COLLECTIVE_MAX_REPRESENTATIVES": "21"})


@pytest.mark.parametrize(
    ("fields", "error", "field"),
    [
        (
            {"headcount": 3, "representatives": [rep(1), rep(2), rep(3), rep(4)]},
            HeadcountTooLow,
            "headcount",
        ),
        ({"headcount": 1, "representatives": [rep(1)]}, HeadcountTooLow, "headcount"),
        ({"representatives": [rep(1)]}, InvalidCollective, "headcount"),
        ({"headcount": 12}, RepresentativesRequired, "representatives"),
        (
            {"headcount": 5, "representatives": [rep(1), rep(1)]},
            DuplicateRepresentative,
            "representatives.1",
        ),
        (
            {"headcount": 5, "representatives": [rep(1, id_number=ID), rep(2, id_number=ID)]},
            DuplicateRepresentative,
            "representatives.1",
        ),
    ],
)
def test_inconsistent_collective_visits_are_refused(
    fields: dict[str, Any], error: type[InvalidCollective], field: str
) -> None:
    with pytest.raises(error) as err:
        intake({MAX_REPRESENTATIVES: 5}, collective=True, **fields)
    assert type(err.value) is error
    assert err.value.details["field"] == field and err.value.details["reason_zh"]
    assert err.value.message_zh


def test_the_headcount_must_cover_the_representatives() -> None:
    assert intake(collective=True, headcount=2, representatives=[rep(1), rep(2)]).headcount == 2
    with pytest.raises(HeadcountTooLow) as err:
        intake(collective=True, headcount=2, representatives=[rep(1), rep(2), rep(3)])
    assert err.value.details["min"] == 3


def test_a_joint_letter_or_online_group_petition_may_come_without_representatives() -> None:
    for channel in ("letter", "web", "agent"):
        assert intake(channel=channel, collective=True, headcount=40).representatives == []


@pytest.mark.parametrize(
    "fields",
    [
        {"representatives": [rep(1)]},
        {"headcount": 3},
        {"headcount": 3, "representatives": [rep(1)]},
    ],
)
def test_a_case_that_is_not_collective_carries_no_representatives(fields: dict[str, Any]) -> None:
    with pytest.raises(NotCollective) as err:
        intake(**fields)
    assert err.value.code == "not_collective"
    assert intake().representatives == [] and intake().headcount is None


@pytest.mark.parametrize(
    ("representative", "error", "field"),
    [
        ({"name": "王五", "phone": "12345"}, InvalidPhone, "representatives.1.phone"),
        (
            {"name": "王五", "phone": "13800000009", "id_number": "110105194912310021"},
            InvalidIdNumber,
            "representatives.1.id_number",
        ),
    ],
)
def test_representatives_phone_and_id_are_checked_like_the_petitioners(
    representative: dict[str, Any], error: type[InvalidInput], field: str
) -> None:
    with pytest.raises(error) as err:
        intake(collective=True, headcount=5, representatives=[rep(1), representative])
    assert err.value.details["field"] == field


def test_a_representative_needs_name_and_phone() -> None:
    with pytest.raises(ValidationError):
        intake(collective=True, headcount=5, representatives=[{"name": "王五"}])
    with pytest.raises(ValidationError):
        intake(collective=True, headcount=5, representatives=[{"name": "", "phone": "13800000009"}])
    with pytest.raises(ValidationError):
        intake(collective=True, headcount=0, representatives=[rep(1)])

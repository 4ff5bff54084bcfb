from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.cases.schemas import PetitionerInput
from server.cases.validation import (
    InvalidIdNumber,
    InvalidPhone,
    id_check_char,
    normalize_id_number,
    normalize_phone,
)

VALID = "11010519491231002X"  # the GB 11643 standard's own example


def test_standard_example_is_valid() -> None:
    assert normalize_id_number(VALID.lower()) == VALID


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("110105194912310021", "校验位"),  # wrong check character
        ("11010519491231002", "18位"),
        ("1101051949123100AX", "数字"),
        ("110105194902300028", "出生日期"),  # 30 February
        ("010105194912310021", "地区码"),
    ],
)
def test_invalid_numbers_say_why_in_chinese(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdNumber) as err:
        normalize_id_number(raw)
    assert reason in err.value.details["reason_zh"]
    assert err.value.http_status == 422


def test_future_birth_date_rejected() -> None:
    first17 = "33010520990101001"
    with pytest.raises(InvalidIdNumber):
        normalize_id_number(first17 + id_check_char(first17), today=date(2026, 1, 1))


@given(
    st.from_regex(
        r"33010[1-9](19[5-9]\d|200\d)(0[1-9]|1[0-2])(0[1-9]|1\d|2[0-8])\d{3}", fullmatch=True
    )
)
def test_any_number_with_its_check_char_is_valid(first17: str) -> None:
    number = first17 + id_check_char(first17)
    assert normalize_id_number(number) == number
    wrong = "0" if number[-1] != "0" else "1"
    with pytest.raises(InvalidIdNumber):
        normalize_id_number(number[:-1] + wrong)


@pytest.mark.parametrize("raw", ["13812345678", "+86 138-1234-5678", "008619912345678"])
def test_phone_normalised(raw: str) -> None:
    assert len(normalize_phone(raw)) == 11


@pytest.mark.parametrize("raw", ["12812345678", "1381234567", "0571-88888888", "abc"])
def test_bad_phone_rejected(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        normalize_phone(raw)


def test_petitioner_input_validates_at_the_edge() -> None:
    p = PetitionerInput(name="张三", phone="+86 13812345678", id_number=VALID.lower())
    assert p.phone == "13812345678" and p.id_number == VALID
    with pytest.raises(InvalidIdNumber):
        PetitionerInput(name="张三", id_number="110105194912310021")

"""Edge validation of Chinese identity numbers (GB 11643-1999) and mainland mobile numbers.

Each check returns the normalised value or raises `InvalidIdNumber` / `InvalidPhone`, whose
`message_zh` tells the person at the window exactly what is wrong.
"""

from __future__ import annotations

import re
from datetime import date

from server.errors import InvalidInput

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_PHONE_RE = re.compile(r"^1[3-9]\d{9}$")


class InvalidIdNumber(InvalidInput):
    code, message_zh = "invalid_id_number", "身份证号码无效，请核对后重新输入"


class InvalidPhone(InvalidInput):
    code, message_zh = "invalid_phone", "手机号码无效，请输入11位中国大陆手机号码"


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def normalize_id_number(raw: str, *, today: date | None = None) -> str:
    """Validate an 18-character resident identity number and return it upper-cased.

    Checks the length and characters, the region prefix, the birth date (a real date, not in
    the future) and the ISO 7064 MOD 11-2 check character.
    """
    value = raw.strip().replace(" ", "").upper()
    if len(value) != 18:
        raise InvalidIdNumber(
            f"an identity number has 18 characters, got {len(value)}",
            field="id_number",
            reason_zh=f"身份证号码应为18位，当前为{len(value)}位",
        )
    if not value[:17].isdigit() or not (value[17].isdigit() or value[17] == "X"):
        raise InvalidIdNumber(
            "only digits and a final X are allowed",
            field="id_number",
            reason_zh="只能包含数字，最后一位可以是X",
        )
    if value[0] not in "123456789" or value[:2] == "00":
        raise InvalidIdNumber("unknown region code", field="id_number", reason_zh="地区码无效")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidIdNumber(
            "the birth date part is not a real date", field="id_number", reason_zh="出生日期无效"
        ) from None
    if born.year < 1900 or (today is not None and born > today):
        raise InvalidIdNumber(
            "the birth date part is out of range", field="id_number", reason_zh="出生日期超出范围"
        )
    if id_check_char(value[:17]) != value[17]:
        raise InvalidIdNumber(
            "the check character does not match (a digit is mistyped)",
            field="id_number",
            reason_zh="校验位不符，可能有数字输错",
        )
    return value


def normalize_phone(raw: str) -> str:
    """Validate a mainland mobile number; accepts +86/0086 prefixes, spaces and hyphens."""
    value = re.sub(r"[\s\-()]", "", raw.strip())
    for prefix in ("+86", "0086"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    if not _PHONE_RE.fullmatch(value):
        raise InvalidPhone(
            "a mainland mobile number has 11 digits starting with 13-19", field="phone"
        )
    return value

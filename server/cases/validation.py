"""Edge validation of Chinese identity numbers (GB 11643-1999), mainland mobile numbers and
a matter type's typed attributes.

Each check returns the normalised value or raises `InvalidIdNumber` / `InvalidPhone`, whose
`message_zh` tells the person at the window exactly what is wrong.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from server.kernel.errors import InvalidInput

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


# --- collective visits (集体访) ----------------------------------------------------------------

#: Hard bound on representatives in any input, whatever the deployment allows
#: (Settings.collective_max_representatives, 5 by the 信访工作条例, is at most this).
MAX_REPRESENTATIVES_CAP = 20
#: A collective visit or joint petition is made by several people (多人): at least two.
COLLECTIVE_MIN_HEADCOUNT = 2
#: Sanity bound on the headcount (a typo guard, not a rule).
MAX_HEADCOUNT = 100_000


class InvalidCollective(InvalidInput):
    """The collective-visit part of an intake is inconsistent; `details` name the field and
    give a zh-CN reason."""

    code, message_zh = "invalid_collective", "集体访信息有误，请核对来访人数和代表"


class TooManyRepresentatives(InvalidCollective):
    code, message_zh = "too_many_representatives", "集体访推选的代表人数超过规定上限"


class RepresentativesRequired(InvalidCollective):
    code, message_zh = "representatives_required", "集体走访须推选代表，请登记代表信息"


class HeadcountTooLow(InvalidCollective):
    code, message_zh = "headcount_too_low", "来访人数不能少于代表人数，集体访至少2人"


class NotCollective(InvalidCollective):
    code, message_zh = "not_collective", "非集体访事项不能登记来访人数和代表"


class DuplicateRepresentative(InvalidCollective):
    code, message_zh = "duplicate_representative", "同一代表不能重复登记"


def check_collective(
    *,
    collective: bool,
    headcount: int | None,
    representatives: list[tuple[str, str | None]],
    in_person: bool,
    max_representatives: int,
) -> None:
    """The rules for a collective visit (集体访), on already validated representatives given as
    (phone, id_number) pairs.

    A collective case has a headcount of at least two and at least its representatives'
    number, at most `max_representatives` representatives (the 信访工作条例: at most 5), none
    twice (same phone or ID number), and, when the group came in person (`in_person`), at
    least one representative. A case that is not collective carries neither.
    """
    count = len(representatives)
    if not collective:
        if headcount is not None or count:
            raise NotCollective(
                "headcount and representatives belong to collective cases only",
                field="representatives" if count else "headcount",
                reason_zh="请先勾选“集体访”，或删除来访人数和代表",
            )
        return
    if count > max_representatives:
        raise TooManyRepresentatives(
            f"at most {max_representatives} representatives, got {count}",
            field="representatives",
            reason_zh=f"代表不得超过{max_representatives}人，当前{count}人",
            max=max_representatives,
        )
    if headcount is None:
        raise InvalidCollective(
            "a collective case needs its headcount",
            field="headcount",
            reason_zh="请填写来访（联名）人数",
        )
    minimum = max(COLLECTIVE_MIN_HEADCOUNT, count)
    if headcount < minimum:
        raise HeadcountTooLow(
            f"the headcount must be at least {minimum}",
            field="headcount",
            reason_zh=f"来访人数应不少于{minimum}人",
            min=minimum,
        )
    if in_person and count == 0:
        raise RepresentativesRequired(
            "a group that came in person chooses representatives",
            field="representatives",
            reason_zh=f"请登记推选的代表（1至{max_representatives}人）",
        )
    seen: set[str] = set()
    for index, (phone, id_number) in enumerate(representatives):
        keys = {f"p:{phone}"} | ({f"i:{id_number}"} if id_number else set())
        if keys & seen:
            raise DuplicateRepresentative(
                "the same person is listed twice",
                field=f"representatives.{index}",
                reason_zh=f"第{index + 1}位代表与前面的代表重复（手机号码或身份证号码相同）",
            )
        seen |= keys


ATTRIBUTE_TEXT_MAX = 500


def validate_attributes(
    code: str, fields: list[dict[str, Any]], attributes: dict[str, Any], *, require: bool = True
) -> dict[str, Any]:
    """The typed attributes of matter type `code` (its `fields`): required ones present (unless
    not `require`d yet: completed during handling), each
    of its type (text: a string of at most 500 characters; int: a whole number; date: an ISO
    date; bool: true/false), nothing unknown. Raises InvalidInput naming the field."""
    out: dict[str, Any] = {}
    for spec in fields:
        name, kind = spec["name"], spec.get("type", "text")
        label = spec.get("label", name)
        value = attributes.get(name)
        if value in (None, ""):
            if require and spec.get("required"):
                raise InvalidInput(
                    f"{code} needs {name}",
                    field=name,
                    reason_zh=f"请填写“{label}”",
                )
            continue
        if kind == "int":
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, str) and value.isdigit())
            ):
                raise InvalidInput(
                    f"{name} must be a whole number",
                    field=name,
                    reason_zh=f"“{label}”应为整数",
                )
            out[name] = int(value)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise InvalidInput(
                    f"{name} must be true or false", field=name, reason_zh=f"“{label}”应为是或否"
                )
            out[name] = value
        elif kind == "date":
            try:
                out[name] = date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise InvalidInput(
                    f"{name} must be a date (YYYY-MM-DD)",
                    field=name,
                    reason_zh=f"“{label}”应为日期（年-月-日）",
                ) from None
        else:
            if not isinstance(value, str) or len(value) > ATTRIBUTE_TEXT_MAX:
                raise InvalidInput(
                    f"{name} must be text of at most {ATTRIBUTE_TEXT_MAX} characters",
                    field=name,
                    reason_zh=f"“{label}”应为不超过{ATTRIBUTE_TEXT_MAX}字的文字",
                )
            out[name] = value
    unknown = set(attributes) - {s["name"] for s in fields}
    if unknown:
        raise InvalidInput(f"unknown attributes: {sorted(unknown)}", fields=sorted(unknown))
    return out

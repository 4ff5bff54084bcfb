"""The written notices (受理告知书, 不予受理告知书, 导入法定途径告知书, 书面答复意见书) print the
case number, the petitioner, the decision and the district's date, in the Simplified Chinese
face; a reply or refusal names the leader who signed it off."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import fpdf
import pytest

from server.cases import notices, pdf
from server.cases.models import CaseState
from server.cases.notices import NoticeFacts

#: 07:30 on 1 April in Beijing is 23:30 UTC on 31 March.
DECIDED = datetime(2027, 3, 31, 23, 30, tzinfo=UTC)
SIGNED = datetime(2027, 4, 2, 1, 0, tzinfo=UTC)


def _font() -> Any:
    try:
        return pdf.cjk_font()
    except pdf.CjkFontMissing:
        pytest.skip("no CJK font installed")


def _facts(kind: str, **kw: Any) -> NoticeFacts:
    base: dict[str, Any] = {
        "kind": kind,
        "case_no": "330105-2027-000042",
        "district": "西湖区",
        "petitioner": "赵一",
        "unit": "区住房和城乡建设局",
        "decided_at": DECIDED,
        "summary": "小区电梯长期故障",
        "signer": "钱局长",
        "signed_at": SIGNED,
    }
    return NoticeFacts(**(base | kw))


def _printed(monkeypatch: pytest.MonkeyPatch, facts: NoticeFacts, **kw: Any) -> str:
    font = _font()
    lines: list[str] = []
    for name in ("cell", "multi_cell"):
        original = getattr(fpdf.FPDF, name)

        def record(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            text = args[2] if len(args) > 2 else kwargs.get("text", kwargs.get("txt", ""))
            if not kwargs.get("dry_run"):
                lines.append(str(text))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(fpdf.FPDF, name, record)
    out = notices.notice_pdf(facts, font=font, **kw)
    assert out.startswith(b"%PDF")
    return "\n".join(lines)


def test_refusal_prints_case_number_beijing_date_reason_and_signer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _printed(monkeypatch, _facts("refusal", text="该事项已经依法处理完毕，无新的事实和理由"))
    assert "不予受理告知书" in text and "西湖区" in text
    assert "330105-2027-000042" in text and "赵一：" in text
    assert "本机关于2027-04-01决定不予受理" in text
    assert "该事项已经依法处理完毕，无新的事实和理由" in text
    assert "签发人：钱局长" in text and "签发日期：2027-04-02" in text
    assert "区住房和城乡建设局" in text
    assert "2027-03-31" not in text


def test_legal_route_notice_names_the_route_its_reason_and_only_general_time_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    facts = _facts("legal_route", legal_route="arbitration", text="属于劳动争议", signer="")
    text = _printed(monkeypatch, facts)
    assert "导入法定途径告知书" in text
    assert "依法应当通过仲裁途径解决" in text and "属于劳动争议" in text
    assert "一般为一年" in text and "仅为一般性提示" in text
    assert "签发人" not in text


def test_reply_tells_the_petitioner_of_the_30_day_review(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _printed(monkeypatch, _facts("reply", text="经核查，电梯已于三月更换主板并恢复运行。"))
    assert "书面答复意见书" in text and "电梯已于三月更换主板" in text
    assert "三十日内" in text and "复查" in text
    assert "签发人：钱局长" in text


def test_acceptance_in_the_configured_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _printed(monkeypatch, _facts("acceptance"), tz="UTC")
    assert "受理告知书" in text and "已于2027-03-31依法受理" in text


def test_the_simplified_chinese_face_is_embedded() -> None:
    font = _font()
    out = notices.notice_pdf(_facts("reply", text="答复"), font=font)
    if font.suffix == ".ttc" and "NotoSansCJK" in font.name:
        assert b"NotoSansCJKSC" in out and b"NotoSansCJKJP" not in out


@pytest.mark.parametrize(
    ("state", "accepted", "replied", "expected"),
    [
        (CaseState.registered, False, False, []),
        (CaseState.handling, True, False, ["acceptance"]),
        (CaseState.replied, True, True, ["acceptance", "reply"]),
        (CaseState.not_accepted, False, False, ["refusal"]),
        (CaseState.redirected_legal, False, False, ["legal_route"]),
    ],
)
def test_notices_follow_the_state(
    state: CaseState, accepted: bool, replied: bool, expected: list[str]
) -> None:
    assert notices.available_notices(state, accepted=accepted, replied=replied) == expected


def test_legal_route_notice_names_the_room_the_case_was_handed_over_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    facts = _facts(
        "legal_route",
        legal_route="arbitration",
        text="属于劳动争议",
        signer="",
        room="区劳动人事争议仲裁院接谈室",
    )
    text = _printed(monkeypatch, facts)
    assert "本机关已将您的事项移交区劳动人事争议仲裁院接谈室" in text
    text = _printed(monkeypatch, _facts("legal_route", legal_route="police", text="涉嫌诈骗"))
    assert "移交" not in text and "公安机关报案" in text

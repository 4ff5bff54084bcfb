"""The agreement PDF prints the district's dates and times: an agreement whose last signature
is at 07:30 on 1 April in Beijing (23:30 UTC on 31 March) takes effect on 1 April."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import fpdf
import pytest

from server.cases import agreements
from server.cases.schemas import AgreementView, SignatureView

SIGNED = datetime(2027, 3, 31, 23, 30, tzinfo=UTC)


def _view() -> AgreementView:
    return AgreementView(
        id=5,
        case_id=1,
        session_id=None,
        mediator_id=3,
        parties=[{"name": "赵一", "role": "applicant"}, {"name": "钱二", "role": "respondent"}],
        facts="楼上住户卫生间漏水，损坏楼下吊顶。",
        terms=[{"term": "钱二赔偿赵一维修费3000元", "how": "银行转账", "by": "2027-04-15"}],
        status="effective",
        effective_at=SIGNED,
        judicial_due_at=datetime(2027, 4, 30, 16, 0, tzinfo=UTC),
        judicial_requested_at=None,
        judicial_result=None,
        signatures=[
            SignatureView(
                signer=signer, signer_name=name, method="typed", data=name, signed_at=SIGNED
            )
            for signer, name in (("party:0", "赵一"), ("party:1", "钱二"), ("mediator", "调解员甲"))
        ],
        missing_signers=[],
    )


def _printed(monkeypatch: pytest.MonkeyPatch, view: AgreementView | None = None, **kw: Any) -> str:
    """Render the PDF and return every text line handed to fpdf."""
    try:
        font = agreements.cjk_font()
    except agreements.CjkFontMissing:
        pytest.skip("no CJK font installed")
    lines: list[str] = []
    for name in ("cell", "multi_cell"):
        original = getattr(fpdf.FPDF, name)

        def record(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            text = args[2] if len(args) > 2 else kwargs.get("text", kwargs.get("txt", ""))
            lines.append(str(text))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(fpdf.FPDF, name, record)
    pdf = agreements.agreement_pdf(view or _view(), case_no="330105-2027-000001", font=font, **kw)
    assert pdf.startswith(b"%PDF")
    return "\n".join(lines)


def test_effective_date_and_signing_times_are_beijings(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _printed(monkeypatch)
    assert "本协议自各方签名之日（2027-04-01）起生效" in text
    assert text.count("2027-04-01 07:30") == 3  # each signature's time
    assert "2027-03-31" not in text and "UTC" not in text


def test_each_signature_says_how_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """#17 item 4: the party's own link, or the mediator's device with the identification."""
    view = _view()
    ways = [
        {"via": "own_link"},
        {"via": "mediator_device", "id_method": "id_card", "id_last4": "002X"},
        {"via": "own_account"},
    ]
    signatures = [s.model_copy(update=w) for s, w in zip(view.signatures, ways, strict=True)]
    text = _printed(monkeypatch, view.model_copy(update={"signatures": signatures}))
    assert "当事人：赵一（电子签名，本人链接签署，2027-04-01 07:30）" in text
    assert (
        "当事人：钱二（电子签名，调解员设备签署（身份证核验，身份证号后4位002X），2027-04-01 07:30）"
        in text
    )
    assert "调解员：调解员甲（电子签名，调解员本人签署，2027-04-01 07:30）" in text


def test_the_configured_zone_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _printed(monkeypatch, tz="UTC")
    assert "本协议自各方签名之日（2027-03-31）起生效" in text
    assert "2027-03-31 23:30" in text and "UTC" not in text


def _font() -> Any:
    try:
        return agreements.cjk_font()
    except agreements.CjkFontMissing:
        pytest.skip("no CJK font installed")


def test_the_simplified_chinese_face_is_embedded() -> None:
    """#17 finding 13: index 0 of Noto Sans CJK's collection is the Japanese face."""
    font = _font()
    pdf = agreements.agreement_pdf(_view(), case_no="330105-2027-000001", font=font)
    if font.suffix == ".ttc" and "NotoSansCJK" in font.name:
        assert b"NotoSansCJKSC" in pdf and b"NotoSansCJKJP" not in pdf


def test_long_lines_wrap_and_term_numbers_stay_with_their_terms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """#17 finding 13: the effective-date sentence was cut off at the margin (a one-line
    cell), and a term's number sat alone on its line ("1. " broke at the space)."""
    font = _font()
    wrapped: list[list[str]] = []
    original = getattr(agreements, "_paragraph")  # noqa: B009 (not exported; patched here)

    def record(pdf: Any, text: str, height: float = 7) -> None:
        lines = pdf.multi_cell(0, height, text, dry_run=True, output="LINES")
        wrapped.append([str(line) for line in lines])
        original(pdf, text, height)

    monkeypatch.setattr(agreements, "_paragraph", record)
    view = _view().model_copy(
        update={
            "terms": [{"term": "钱二赔偿赵一维修费" * 6, "how": "银行转账", "by": "2027-04-15"}]
        }
    )
    agreements.agreement_pdf(view, case_no="330105-2027-000001", font=font)
    printed = ["".join(lines) for lines in wrapped]
    last = next(i for i, text in enumerate(printed) if text.startswith("本协议自各方签名之日"))
    assert printed[last].endswith("申请司法确认。") and len(wrapped[last]) >= 2
    term = next(lines for lines in wrapped if lines[0].startswith("1．"))
    assert len(term) >= 2 and len(term[0]) > len("1．")

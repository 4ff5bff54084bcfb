"""What the case PDFs share (mediation agreements, written notices): the CJK font with its
Simplified Chinese face, and paragraphs that wrap at the margin."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from server.kernel.errors import ServiceUnavailable

CJK_FONT_CANDIDATES = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
)


class CjkFontMissing(ServiceUnavailable):
    code, message_zh = "cjk_font_missing", "服务器缺少中文字体，无法生成PDF"


def cjk_font() -> Path:
    for path in CJK_FONT_CANDIDATES:
        if path.exists():
            return path
    raise CjkFontMissing("no CJK font found; install fonts-noto-cjk")


@functools.cache
def face_index(font: Path) -> int:
    """In a font collection (.ttc), the Simplified Chinese face: Noto Sans CJK's first face is
    the Japanese one, whose glyph variants are wrong for Chinese text."""
    if font.suffix.lower() != ".ttc":
        return 0
    from fontTools.ttLib import TTCollection

    collection = TTCollection(str(font), lazy=True)
    try:
        for index, face in enumerate(collection.fonts):
            family = str(face["name"].getDebugName(1) or "")
            if family.endswith(" SC") and "Mono" not in family:
                return index
    finally:
        collection.close()
    return 0


def paragraph(pdf: Any, text: str, height: float = 7) -> None:
    """Text that wraps at the right margin (a `cell` would cut it off)."""
    pdf.multi_cell(0, height, text, new_x="LMARGIN", new_y="NEXT")


def new_document(font: Path | None = None) -> Any:
    """An A4 fpdf document with one page and the CJK font registered as "cjk"."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.add_page()
    font = font or cjk_font()
    pdf.add_font("cjk", "", str(font), collection_font_number=face_index(font))
    return pdf

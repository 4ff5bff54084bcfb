"""Drawn signatures: the server accepts only the SVG paths the signature pad produces."""

from __future__ import annotations

import pytest

from server.cases.agreements import (
    SIGNATURE_MAX_POINTS,
    InvalidSignature,
    check_signature_path,
    signature_strokes,
)


@pytest.mark.parametrize(
    "path",
    [
        "M10 10 L40 30 L80 12",
        "M 10 10 L 40 30 L 80 12",
        "M10,10 L40,30",
        "M0 0 L600 200",
        "M12.5 30.1 L13 31 M100 100 L100 100",  # a tap is a stroke of two equal points
    ],
)
def test_pad_paths_are_accepted(path: str) -> None:
    assert check_signature_path(path) >= 2


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "empty"),
        ("<script>alert(1)</script>", "markup"),
        ("L10 10 L20 20", "does not start with M"),
        ("M10 10", "a stroke of one point"),
        ("M10 10 L20 20 M30 30", "the last stroke has one point"),
        ("m10 10 l20 20", "relative commands"),
        ("M10 10 C20 20 30 30 40 40", "curves"),
        ("M10 10 A5 5 0 0 1 20 20", "arcs"),
        ("M10 10 Z", "close path"),
        ("M10 10 L601 20", "x outside the area"),
        ("M10 10 L20 201", "y outside the area"),
        ("M10 10 L1e3 20", "exponents"),
        ("M10 10 L-5 20", "negative numbers"),
        ("M10 10 L20.25 20", "two decimals"),
        ('M10 10 L20 20" onload="x', "attribute injection"),
    ],
)
def test_anything_else_is_refused(path: str, why: str) -> None:
    with pytest.raises(InvalidSignature):
        check_signature_path(path)


def test_size_is_bounded() -> None:
    many = "M1 1 " + " ".join("L2 2" for _ in range(SIGNATURE_MAX_POINTS))
    assert len(many) < 20000
    with pytest.raises(InvalidSignature):
        check_signature_path(many)
    with pytest.raises(InvalidSignature):
        check_signature_path("M1 1 " + "L2 2 " * 5000)  # over 20,000 characters
    strokes = " ".join("M1 1 L2 2" for _ in range(61))
    with pytest.raises(InvalidSignature):
        check_signature_path(strokes)


def test_strokes_for_the_pdf() -> None:
    assert signature_strokes("M10 10 L40 30 M5 5 L6 6.5") == [
        [(10.0, 10.0), (40.0, 30.0)],
        [(5.0, 5.0), (6.0, 6.5)],
    ]

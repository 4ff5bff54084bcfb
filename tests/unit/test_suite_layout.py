"""`make test` runs every test folder: the Makefile names them (the suite runs in two parts,
parallel and serial), so a new folder of tests must be added there or it never runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_folder_is_run_by_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    named = set(re.findall(r"\btests/([a-z0-9_]+)\b", makefile))
    folders = {
        p.parent.relative_to(ROOT / "tests").parts[0]
        for p in (ROOT / "tests").glob("*/**/test_*.py")
    }
    assert folders, "no test folders found"
    missing = folders - named
    assert not missing, f"test folders not in the Makefile's pytest or e2e targets: {missing}"

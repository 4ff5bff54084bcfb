"""docs/api.md lists every error code: each AppError subclass anywhere in the code base has
its `code` in the document's code table (a new error without documentation fails here)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from server.kernel.errors import AppError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "signaling", "scheduling", "web")
#: Modules that need optional runtime pieces to import (none define errors).
SKIP = ("server.__main__",)


def _subclasses(cls: type[AppError]) -> set[type[AppError]]:
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub)
        out |= _subclasses(sub)
    return out


def all_error_codes() -> dict[str, type[AppError]]:
    for package in PACKAGES:
        mod = importlib.import_module(package)
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{package}."):
            if info.name not in SKIP:
                importlib.import_module(info.name)
    codes: dict[str, type[AppError]] = {"internal_error": AppError}
    for cls in _subclasses(AppError):
        codes.setdefault(cls.code, cls)
    return codes


def test_every_error_code_is_in_docs_api_md() -> None:
    text = (ROOT / "docs/api.md").read_text(encoding="utf-8")
    missing = sorted(code for code in all_error_codes() if f"`{code}`" not in text)
    assert not missing, f"error codes missing from docs/api.md: {missing}"

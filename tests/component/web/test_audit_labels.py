"""Every action code the code base writes to the audit log has a Chinese label on the audit
page: the codes are collected from the source (the `action=` of each call, the codes passed to
the small `audit(...)` helpers, `action` parameter defaults) and the dynamic families (case
transitions, sign-off drafts, signaling events) are enumerated from their tables."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from server.cases.sign_off import DRAFT_EVENTS
from server.cases.statemachine import TRANSITIONS
from web.audit_labels import AUDIT_ACTION_LABELS, action_label

ROOT = Path(__file__).resolve().parents[3]
_CODE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
_HELPERS = {"record", "audit", "_audit"}


def _written_codes() -> dict[str, str]:
    """code → the file that writes it."""
    found: dict[str, str] = {}
    for package in ("server", "web", "signaling", "scheduling"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                values: list[ast.expr] = []
                if isinstance(node, ast.Call):
                    values += [k.value for k in node.keywords if k.arg == "action"]
                    name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                    if name in _HELPERS:
                        values += node.args
                elif isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                    args = node.args.args + node.args.kwonlyargs
                    defaults: list[ast.expr | None] = [None] * (
                        len(node.args.args) - len(node.args.defaults)
                    )
                    defaults += [*node.args.defaults, *node.args.kw_defaults]
                    values += [
                        d
                        for a, d in zip(args, defaults, strict=True)
                        if a.arg == "action" and d is not None
                    ]
                while values:
                    v = values.pop()
                    if isinstance(v, ast.IfExp):  # action="a" if x else "b"
                        values += [v.body, v.orelse]
                    elif (
                        isinstance(v, ast.Constant)
                        and isinstance(v.value, str)
                        and _CODE.match(v.value)
                    ):
                        found.setdefault(v.value, str(path.relative_to(ROOT)))
    return found


def test_the_collector_finds_the_codes_it_must() -> None:
    codes = _written_codes()
    # one of each way of writing: action=, a helper's argument, a parameter default
    assert {"auth.sign_in", "recording.fetch", "agreement.view", "role.grant"} <= codes.keys()


def test_every_written_action_code_has_a_label() -> None:
    missing = {c: f for c, f in _written_codes().items() if c not in AUDIT_ACTION_LABELS}
    assert not missing, f"add these audit action codes to web/audit_labels.py: {missing}"


def test_dynamic_families_have_labels() -> None:
    for name in [*TRANSITIONS, *DRAFT_EVENTS.values()]:
        label = action_label(f"case.{name}")
        assert label != f"case.{name}" and not re.search(r"[a-z]{3}", label), name
    assert "视频会议" in action_label("signaling.participant.joined")


def test_an_unknown_code_is_shown_as_itself() -> None:
    assert action_label("nobody.writes_this") == "nobody.writes_this"

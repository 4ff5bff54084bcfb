"""Every action code the code base writes to the audit log has a Chinese label on the audit
page, and every label has its English in the catalogue: the codes are collected from the source
(the `action=` of each call, the codes passed to the small `audit(...)` helpers, `action`
parameter defaults) and the dynamic families (case transitions, sign-off drafts, signaling
events) are enumerated from their tables."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from server.cases.sign_off import DRAFT_EVENTS
from server.cases.statemachine import TRANSITIONS
from tests.conftest import signed_in
from web.audit_labels import (
    AUDIT_ACTION_LABELS,
    OBJECT_TYPE_LABELS,
    SIGNALING_EVENT,
    action_label,
    object_label,
)

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


def _english() -> tuple[Translations, set[str]]:
    """The English catalogue as the app loads it, and its translated message ids."""
    with (ROOT / "web/locale/en/LC_MESSAGES/messages.po").open("rb") as fh:
        catalog = read_po(fh, locale="en")
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf), {str(m.id) for m in catalog if m.id and m.string}


ENGLISH, TRANSLATED = _english()


def test_every_label_has_english() -> None:
    labels = [*AUDIT_ACTION_LABELS.values(), *OBJECT_TYPE_LABELS.values(), SIGNALING_EVENT]
    untranslated = sorted({zh for zh in labels if zh not in TRANSLATED})
    assert not untranslated, f"add English for these to messages.po: {untranslated}"
    for code in [*_written_codes(), *(f"case.{n}" for n in [*TRANSITIONS, *DRAFT_EVENTS.values()])]:
        english = action_label(code, ENGLISH.gettext)
        assert english != action_label(code) and not re.search(r"[\u4e00-\u9fff]", english), code
    assert action_label("signaling.participant.joined", ENGLISH.gettext) == (
        "Video conference event (participant.joined)"
    )
    assert object_label("staff", ENGLISH.gettext) == "Staff"


async def test_the_audit_page_in_english_shows_english_labels(app_client: Any) -> None:
    await signed_in(app_client, "audit_admin")  # writes auth.sign_in
    await app_client.get("/audit")  # writes audit.read
    html = await (await app_client.get("/audit", params={"lang": "en"})).text()
    table = html.split('id="audit"')[1]
    assert ">Audit log read<" in table and ">Sign in<" in table
    assert "查阅审计日志" not in table and ">登录<" not in table
    zh = (await (await app_client.get("/audit", params={"lang": "zh-CN"})).text()).split(
        'id="audit"'
    )[1]
    assert ">查阅审计日志<" in zh

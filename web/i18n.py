"""gettext for the pages. Message ids are the Simplified Chinese text (the default language);
web/locale/en/LC_MESSAGES/messages.po translates them to English. Catalogues are read with
Babel when the app starts (no compile step)."""

from __future__ import annotations

import gettext
import io
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from server.http import keys
from server.http.auth import current_staff

LANGUAGES = ("zh-CN", "en")
DEFAULT = "zh-CN"
COOKIE = "od_lang"
LOCALE_DIR = Path(__file__).parent / "locale"

translations_key: web.AppKey[dict[str, gettext.NullTranslations]] = web.AppKey("translations")


def _load(lang: str) -> gettext.NullTranslations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def install(app: web.Application, env: jinja2.Environment) -> None:
    async def load(app: web.Application) -> None:
        app[translations_key] = {"zh-CN": gettext.NullTranslations(), "en": _load("en")}

    app.on_startup.append(load)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_ctx_gettext, ngettext=_ctx_ngettext, newstyle=True
    )


@jinja2.pass_context
def _ctx_gettext(ctx: Any, message: str, **kwargs: Any) -> str:
    text = ctx["_translations"].gettext(message)
    return str(text % kwargs) if kwargs else str(text)


@jinja2.pass_context
def _ctx_ngettext(ctx: Any, singular: str, plural: str, n: int, **kwargs: Any) -> str:
    text = ctx["_translations"].ngettext(singular, plural, n)
    return str(text % {"num": n, **kwargs})


def language_of(request: web.Request) -> str:
    lang = request.query.get("lang") or request.cookies.get(COOKIE) or DEFAULT
    return lang if lang in LANGUAGES else DEFAULT


def gettext_for(request: web.Request) -> gettext.NullTranslations:
    return request.app[translations_key][language_of(request)]


def _(request: web.Request, message: str) -> str:
    """Translate in Python code (flash messages, errors)."""
    return gettext_for(request).gettext(message)


def common_context(request: web.Request) -> dict[str, Any]:

    lang = language_of(request)
    return {
        "_translations": gettext_for(request),
        "lang": lang,
        "html_lang": "zh-CN" if lang == "zh-CN" else "en",
        "staff": current_staff(request),
        "csrf_token": request.get(keys.csrf_token, ""),
    }

"""Texts for people in the site's language: English by default, Chinese (简体中文) where the
locale says so (`EDGE_AGENT_LANG`, `LC_ALL`, `LC_MESSAGES` or `LANG`, e.g. zh_CN.UTF-8).

Wrap every text a technician reads in `_()`, with its values put in afterwards:
`_("{count} devices down").format(count=n)`, never `_(f"...")` (the catalog is keyed by the
text before the values go in). Machine fields (JSON, MQTT) are never translated.

The catalogs are gettext `.po` files in `edge_agent/locale/` (`zh_CN.po`), read with polib
when a language other than English is asked for.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

LOCALES = Path(__file__).parent / "locale"
_ENV = ("EDGE_AGENT_LANG", "LC_ALL", "LC_MESSAGES", "LANG")


def language() -> str:
    """The catalog to use: the first locale variable set, by its language part."""
    for name in _ENV:
        value = os.environ.get(name)
        if value:
            return "zh_CN" if value.lower().startswith("zh") else "en"
    return "en"


@cache
def _catalog(lang: str) -> dict[str, str]:
    if lang == "en":
        return {}
    import polib  # only when a translation is wanted

    path = LOCALES / f"{lang}.po"
    if not path.exists():
        return {}
    return {e.msgid: e.msgstr for e in polib.pofile(str(path)) if e.msgstr and not e.obsolete}


def _(text: str) -> str:
    """`text` in the site's language (itself when there is no translation)."""
    return _catalog(language()).get(text, text)

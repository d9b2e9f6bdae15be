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
LANGUAGES = ("en", "zh_CN")  # English, and the catalogs in LOCALES
_ENV = ("EDGE_AGENT_LANG", "LC_ALL", "LC_MESSAGES", "LANG")
_NO_PREFERENCE = ("c", "posix")  # a system default, not a person's choice
_site_locale: str | None = None


def language_of(locale: str) -> str | None:
    """The catalog a locale name asks for (zh_CN.UTF-8, zh, en_US -> zh_CN, zh_CN, en), or
    None for one without a preference (C, POSIX) or one we have no texts for."""
    base = locale.split(".")[0].split("@")[0].strip().lower()
    if not base or base in _NO_PREFERENCE:
        return None
    if base == "zh" or base.startswith(("zh_", "zh-")):
        return "zh_CN"
    if base == "en" or base.startswith(("en_", "en-")):
        return "en"
    return None


def use_site_locale(locale: str | None) -> None:
    """The configuration's `site.locale`: used where the environment expresses no choice."""
    global _site_locale
    _site_locale = locale


def language() -> str:
    """The catalog to use: $EDGE_AGENT_LANG; else the first of LC_ALL, LC_MESSAGES, LANG
    that is set, as libc takes it, unless it is C/POSIX; else `site.locale`; else English.
    A language without texts (de_DE) reads English."""
    explicit = os.environ.get("EDGE_AGENT_LANG")
    if explicit:
        return language_of(explicit) or "en"
    for name in _ENV[1:]:
        value = os.environ.get(name)
        if value:
            chosen = language_of(value)
            if chosen is not None or value.split(".")[0].lower() not in _NO_PREFERENCE:
                return chosen or "en"
            break
    return (language_of(_site_locale) if _site_locale else None) or "en"


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


def N_(text: str) -> str:
    """Marks a text for the catalog where it is defined (a table of defaults) and is
    translated later, where it is used, with `_(variable)`."""
    return text

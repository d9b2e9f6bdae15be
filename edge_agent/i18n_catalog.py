"""Keeping the catalogs whole: every `_("...")` text of the code, and the `.po` files
brought up to date with them (`./dev messages`; run it after adding texts, then translate
the entries it marks new).

Texts are found by reading the source (ast), not by running it: a literal passed straight
to `_()`. A `_()` of anything else (a variable, an f-string) cannot be translated and is
reported.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import polib

from edge_agent.i18n import LANGUAGES, LOCALES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_agent", "control_loops", "drivers", "simulators")
# Libraries whose texts reach the technician through our catalog (edge_agent.cli.common:
# click_in_our_language): their modules' `_("...")` and `ngettext("...", "...", n)`.
LIBRARY_TEXTS = {"click": ("core", "decorators", "exceptions", "formatting", "parser",
                           "termui", "types")}  # fmt: skip


def sources(root: Path = ROOT) -> list[Path]:
    ours = sorted(p for package in PACKAGES for p in (root / package).rglob("*.py"))
    return ours + library_sources()


def library_sources() -> list[Path]:
    import importlib.util

    found = []
    for library, modules in LIBRARY_TEXTS.items():
        for module in modules:
            spec = importlib.util.find_spec(f"{library}.{module}")
            if spec is not None and spec.origin is not None:
                found.append(Path(spec.origin))
    return found


def texts(paths: Iterable[Path]) -> tuple[dict[str, list[str]], list[str]]:
    """The texts given to `_()` or marked with `N_()`, with where each is (file:line), and
    the calls that cannot be in a catalog: `_(f"...")`, `_("a" + b)`, `N_(variable)`.
    `_(variable)` is allowed: it translates a text marked with N_ where it was defined
    (a word of the machine vocabulary: edge_agent.cli.words)."""
    found: dict[str, list[str]] = {}
    wrong: list[str] = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id == "ngettext":  # a library's plural: both forms in the catalog
                for arg in node.args[:2]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found.setdefault(arg.value, []).append(_where(path, node))
                continue
            if node.func.id not in ("_", "N_") or len(node.args) != 1:
                continue
            where = _where(path, node)
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.setdefault(arg.value, []).append(where)
            elif node.func.id == "N_":  # N_ marks a literal for the catalog: nothing else
                wrong.append(where)
            elif isinstance(arg, ast.JoinedStr | ast.BinOp):
                wrong.append(where)  # an f-string or a sum: keyed by text nobody wrote
    return found, wrong


def _where(path: Path, node: ast.AST) -> str:
    """file:line, ours from the repository, a library's from its package (click/core.py)."""
    if path.is_relative_to(ROOT) and "site-packages" not in path.parts:
        name = str(path.relative_to(ROOT))
    else:
        name = "/".join(path.parts[-2:])
    return f"{name}:{getattr(node, 'lineno', 0)}"


def update(language: str, found: dict[str, list[str]]) -> tuple[int, int]:
    """Add the new texts to LOCALES/<language>.po (untranslated), mark the texts no longer
    used obsolete, refresh the places; returns (added, obsoleted)."""
    path = LOCALES / f"{language}.po"
    catalog = polib.pofile(str(path), wrapwidth=0)
    known = {entry.msgid: entry for entry in catalog if not entry.obsolete}
    added = obsoleted = 0
    for msgid, places in sorted(found.items()):
        entry = known.get(msgid)
        if entry is None:
            entry = polib.POEntry(msgid=msgid, msgstr="")
            catalog.append(entry)
            added += 1
        # Files, not lines: a line moving is no change of the catalog.
        entry.occurrences = sorted({(place.rsplit(":", 1)[0], "") for place in places})
    for msgid, entry in known.items():
        if msgid and msgid not in found:
            entry.obsolete = True
            obsoleted += 1
    catalog.save(str(path))
    return added, obsoleted


def main() -> int:
    found, wrong = texts(sources())
    for where in wrong:
        print(f"{where}: _() of something that is not a literal text", file=sys.stderr)
    for language in LANGUAGES:
        if language != "en":
            added, obsoleted = update(language, found)
            missing = sum(1 for e in polib.pofile(str(LOCALES / f"{language}.po"))
                          if e.msgid and not e.msgstr and not e.obsolete)  # fmt: skip
            print(f"{language}: {added} new, {obsoleted} obsolete, {missing} to translate")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

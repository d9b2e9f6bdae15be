"""The technician's language: English by default, Chinese where the locale says so."""

from __future__ import annotations

import subprocess
import sys

import polib

from edge_agent import i18n
from tests.harness import REPO


def test_the_locale_picks_the_language(monkeypatch):
    for name in ("EDGE_AGENT_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    assert i18n.language() == "en" and i18n._("error: {message}") == "error: {message}"
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert i18n.language() == "zh_CN"
    assert i18n._("error: {message}") == "错误：{message}"
    monkeypatch.setenv("LC_ALL", "C.UTF-8")  # the first one set wins, as in libc
    assert i18n.language() == "en"


def test_every_translation_keeps_the_placeholders_of_its_text():
    for entry in polib.pofile(str(i18n.LOCALES / "zh_CN.po")):
        if entry.msgstr:
            fields = lambda text: sorted(p for p in text.split("{")[1:])  # noqa: E731
            assert [f.split("}")[0] for f in fields(entry.msgstr)] == [
                f.split("}")[0] for f in fields(entry.msgid)
            ], entry.msgid


def test_an_error_reads_in_chinese():
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "status", "--socket", "/nonexistent/agent.sock"],
        capture_output=True, text=True, cwd=REPO, env={"LANG": "zh_CN.UTF-8", "PATH": "/usr/bin"},
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.startswith("错误：")

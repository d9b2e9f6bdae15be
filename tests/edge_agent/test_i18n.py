"""The technician's language: English by default, Chinese where the locale says so."""

from __future__ import annotations

import subprocess
import sys

import polib
import pytest

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


def test_every_text_of_the_code_has_its_chinese():
    """What `./dev messages` keeps: each literal given to _() is in the catalog, translated."""
    from edge_agent import i18n_catalog

    found, wrong = i18n_catalog.texts(i18n_catalog.sources())
    assert not wrong, f"_() of something that is not a literal text: {wrong}"
    catalog = {e.msgid: e.msgstr for e in polib.pofile(str(i18n.LOCALES / "zh_CN.po"))}
    missing = sorted(f"{places[0]}: {text!r}" for text, places in found.items()
                     if not catalog.get(text))  # fmt: skip
    assert not missing, "not translated (run ./dev messages, then translate):\n" + "\n".join(
        missing
    )


def test_the_site_locale_applies_where_the_environment_has_no_choice(monkeypatch):
    for name in ("EDGE_AGENT_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(i18n, "_site_locale", None)
    i18n.use_site_locale("zh_CN.UTF-8")
    assert i18n.language() == "zh_CN"  # nothing set: the site's
    monkeypatch.setenv("LANG", "C.UTF-8")  # Debian's default is no choice either
    assert i18n.language() == "zh_CN"
    monkeypatch.setenv("LANG", "en_US.UTF-8")  # the technician's own choice wins
    assert i18n.language() == "en"
    monkeypatch.setenv("LANG", "de_DE.UTF-8")  # a language without texts reads English
    assert i18n.language() == "en"
    monkeypatch.setenv("EDGE_AGENT_LANG", "zh_CN")
    assert i18n.language() == "zh_CN"


def test_a_locale_without_texts_is_a_config_error(tmp_path):
    from edge_agent.config.errors import ConfigError
    from edge_agent.config.loader import load_config

    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: s, locale: de_DE}\ngateway: {id: g}\nuplink: {endpoints: [{host: 127.0.0.1}]}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(site)
    assert "site.yaml:1 site.locale: expected a locale of en, zh_CN" in str(error.value.issues[0])


def test_the_cli_reads_the_site_locale_of_its_config(tmp_path):
    """A file with a mistake elsewhere still gives its language (and its socket)."""
    site = tmp_path / "site.yaml"
    site.write_text(
        "site:\n  id: s\n  locale: zh_CN.UTF-8\ngateway: {id: g}\n"
        f"local: {{socket: {tmp_path / 'agent.sock'}}}\nuplink: {{endpoints: [}}\n"
    )
    env = {"PATH": "/usr/bin", "LANG": "C.UTF-8"}
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "status", "-c", str(site)],
        capture_output=True, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1].startswith("错误："), result.stderr
    english = subprocess.run(
        [sys.executable, "-m", "edge_agent", "status", "-c", str(site)],
        capture_output=True, text=True, cwd=REPO, env={**env, "LANG": "en_US.UTF-8"},
    )  # fmt: skip
    assert english.stderr.splitlines()[-1].startswith("error: "), english.stderr


def test_the_words_shown_cover_the_vocabulary_of_the_code():
    """Each state the agent can report has its entry in cli.words (and so its Chinese)."""
    import re
    import typing

    from edge_agent.alarms.engine import AlarmState
    from edge_agent.alarms.rules import SEVERITY_RANK
    from edge_agent.cli import words
    from edge_agent.commands.messages import Source
    from edge_agent.points import Quality

    assert set(words.SEVERITIES) == set(SEVERITY_RANK)
    assert set(words.ALARM_STATES) == set(typing.get_args(AlarmState))
    assert set(words.QUALITIES) == {q.value for q in Quality}
    source = lambda *parts: (REPO.joinpath(*parts)).read_text()  # noqa: E731
    modes = set(re.findall(r'\.mode(?:, [\w.]+)? = "(\w+)"', source("control_loops", "runner.py")))
    modes |= set(re.findall(r'mode = "(\w+)" if', source("control_loops", "runner.py")))
    assert modes and modes <= set(words.LOOP_MODES), modes - set(words.LOOP_MODES)
    states = set(
        re.findall(r'self\.state(?:, [\w.]+)? = "(\w+)"', source("edge_agent", "uplink.py"))
    )
    assert states == set(words.UPLINK_STATES)
    commands = set(re.findall(r'self\.commands = "(\w+)"', source("edge_agent", "uplink.py")))
    assert commands | {"off"} == set(words.COMMAND_STATES)
    assert set(words.SOURCES) == {s.name.lower() for s in Source}
    from edge_agent.energy.counters import EnergyQuality

    assert set(words.ENERGY_QUALITIES) == {q.value for q in EnergyQuality}
    endings = set(re.findall(r'"(rule \w+)"', source("edge_agent", "alarms", "engine.py")))
    assert endings | {"superseded"} == set(words.ALARM_ENDINGS)


def test_usage_errors_of_the_agents_commands_are_one_line_exit_2():
    """run without --config (click 8.5 lets an explicit default=None pass as given: it must
    still be missing), options that exclude each other, a number out of its range."""
    cases = [
        (["run"], "Missing option '--config'", "缺少选项 '--config'"),
        (["demo", "--sim", "x.yaml", "--no-sim"], "--sim and --no-sim exclude each other",
         "--sim 与 --no-sim 不能同时使用"),
        (["demo", "--duration", "0"], "Invalid value for '--duration'", "'--duration' 的值无效"),
        (["status", "--bogus"], "No such option '--bogus'", "没有选项 '--bogus'"),
        (["install-service", "--bogus"], "No such option", "没有选项"),
    ]  # fmt: skip
    for args, english, chinese in cases:
        languages = [("en_US.UTF-8", "error: ", english), ("zh_CN.UTF-8", "错误：", chinese)]
        for lang, prefix, text in languages:
            done = subprocess.run(
                [sys.executable, "-m", "edge_agent", *args],
                capture_output=True, text=True, cwd=REPO, env={"LANG": lang, "PATH": "/usr/bin"},
            )  # fmt: skip
            assert done.returncode == 2, (args, lang, done.stderr)
            assert done.stdout == "" and len(done.stderr.splitlines()) == 1, (args, done.stderr)
            assert done.stderr.startswith(prefix) and text in done.stderr, (args, done.stderr)


def test_a_config_error_reads_in_chinese(tmp_path):
    """The loader's words (expected, got, unknown key, did you mean) in the technician's
    language; the file, line and key path stay as they are."""
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: s}\ngateway: {id: g}\nuplink: {endpoints: [{host: 127.0.0.1}]}\n"
        "devices:\n  - id: d1\n    driver: fake\n    pol_interval: 5s\n"
        "    points: [{id: a, signal: {value: 1}}]\n  - id: d2\n    driver: fake\n"
        "    poll_interval: soon\n    points: [{id: a, signal: {value: 1}}]\n"
    )
    run = lambda lang: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "edge_agent", "config", "validate", str(site)],
        capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin", "LANG": lang},
    )  # fmt: skip
    chinese, english = run("zh_CN.UTF-8"), run("en_US.UTF-8")
    assert chinese.returncode == english.returncode == 1
    assert (
        "site.yaml:7 devices[0].pol_interval: 未知的键 'pol_interval'（是否想写 'poll_interval'？"
        in (chinese.stderr)
    )
    assert "site.yaml:11 devices[1].poll_interval: 应为时长，如 5s、500ms、2m，得到 'soon'" in (
        chinese.stderr
    )
    assert "site.yaml:7 devices[0].pol_interval: unknown key 'pol_interval' (did you mean" in (
        english.stderr
    )
    assert "expected a duration such as 5s, 500ms, 2m, got 'soon'" in english.stderr


def test_config_validate_reads_the_files_site_locale(tmp_path):
    """An integrator's file that says `site.locale: zh_CN` is checked in Chinese where the
    shell has no language (LANG=C)."""
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: s, locale: zh_CN}\ngateway: {id: g}\n"
        "uplink: {endpoints: [{host: 127.0.0.1}], keepalive: never}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "config", "validate", str(site)],
        capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin", "LANG": "C"},
    )  # fmt: skip
    assert done.returncode == 1
    assert "site.yaml:3 uplink.keepalive: 应为时长，如 5s、500ms、2m，得到 'never'" in done.stderr


def test_clicks_own_texts_read_in_chinese_too():
    """A mistyped command: click's words (missing argument, no such option, Usage) come
    through our catalog; exit 2 either way."""

    def run(lang: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "edge_agent", *args],
            capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin", "LANG": lang},
        )  # fmt: skip

    missing = run("zh_CN.UTF-8", "write", "chiller-1.chws_setpoint")
    assert missing.returncode == 2 and missing.stderr.startswith("错误：缺少参数 'VALUE'")
    english = run("en_US.UTF-8", "write", "chiller-1.chws_setpoint")
    assert english.returncode == 2 and english.stderr.startswith("error: Missing argument 'VALUE'")
    bogus = run("zh_CN.UTF-8", "status", "--bogus")
    assert bogus.returncode == 2 and "没有选项 '--bogus'" in bogus.stderr
    helped = run("zh_CN.UTF-8", "write", "-h")
    assert helped.returncode == 0 and helped.stdout.startswith("用法：")
    assert "显示此帮助并退出。" in helped.stdout


def test_cross_checks_and_includes_read_in_chinese(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: s}\ngateway: {id: g}\nuplink: {endpoints: [{host: 127.0.0.1}]}\n"
        "devices:\n  - id: d1\n    driver: fake\n    link: bus-9\n"
        "    points: [{id: a, signal: {value: 1}}]\n"
        "alarms: !include alarms.yaml\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "config", "validate", str(site)],
        capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin", "LANG": "zh_CN.UTF-8"},
    )  # fmt: skip
    assert done.returncode == 1
    missing = tmp_path / "alarms.yaml"
    assert f"site.yaml:9 alarms: 包含的文件 '{missing}' 不存在" in done.stderr, done.stderr
    site.write_text(site.read_text().replace("alarms: !include alarms.yaml\n", ""))
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "config", "validate", str(site)],
        capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin", "LANG": "zh_CN.UTF-8"},
    )  # fmt: skip
    assert "site.yaml:7 devices[0].link: 未知的链路 'bus-9'（已有链路：" in done.stderr, done.stderr

"""The configuration loader: file:line error reporting, includes, cross-checks and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_agent.cli.config import config as config_cli
from edge_agent.config import loader
from edge_agent.config.errors import ConfigError, ConfigIssue
from edge_agent.config.loader import load_config, load_config_text
from edge_agent.config.models import AgentConfig

REPO = Path(__file__).resolve().parents[2]
TOP_LEVEL_KEYS = ", ".join(AgentConfig.model_fields)  # the sections grow with features
FIXTURES = Path(__file__).resolve().parent / "configs"
EXAMPLE = REPO / "configs" / "example-site.yaml"

# A valid configuration; the cases below change one line of it (line numbers on the left).
BASE = """\
site:
  id: st-marys
gateway:
  id: plant-b2
uplink:
  endpoints:
    - host: broker-1
      port: 8883
links:
  - id: bus-1
devices:
  - id: chiller-1
    driver: fake
    link: bus-1
    poll_interval: 5s
    timeout: 1s
    points:
      - id: supply-temp
        unit: degC
      - id: setpoint
        writable: true
        limits: {min: 5, max: 10}
"""
LAST = "        limits: {min: 5, max: 10}"


def variant(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def issues(text: str, root: Path, extra: dict[str, str] | None = None) -> list[ConfigIssue]:
    """Write `text` as site.yaml (plus `extra` files) under root, which is the cwd."""
    write(root, {"site.yaml": text, **(extra or {})})
    with pytest.raises(ConfigError) as caught:
        load_config("site.yaml")
    return caught.value.issues


def found(items: list[ConfigIssue]) -> list[tuple[str, int | None, str, str]]:
    return [(i.file, i.line, i.path, i.message) for i in items]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_base_config_is_valid(in_tmp: Path) -> None:
    write(in_tmp, {"site.yaml": BASE})
    config = load_config("site.yaml")
    assert isinstance(config, AgentConfig)
    assert config.devices[0].points[1].limits is not None
    assert config.devices[0].poll_interval == 5.0


# --- one mistake, one issue: (old line, new line) -> (line, path, message) ---------------


@dataclass(frozen=True)
class Case:
    old: str
    new: str
    line: int
    path: str
    message: str


CASES = {
    "not a number": Case(
        "        unit: degC",
        "        scale: x",
        19,
        "devices[0].points[0].scale",
        "expected a number, got 'x'",
    ),
    "not an integer": Case(
        "      port: 8883",
        "      port: 8883.5",
        8,
        "uplink.endpoints[0].port",
        "expected an integer, got 8883.5",
    ),
    "not a boolean": Case(
        "    link: bus-1",
        "    enabled: maybe",
        14,
        "devices[0].enabled",
        "expected true or false, got 'maybe'",
    ),
    "required key missing": Case(
        "  id: plant-b2", "  name: Plant B2", 3, "gateway.id", "required key missing"
    ),
    "unknown key with suggestion": Case(
        "    timeout: 1s",
        "    pol_interval: 5s",
        16,
        "devices[0].pol_interval",
        "unknown key 'pol_interval' (did you mean 'poll_interval'? allowed: id, name, driver, "
        "link, enabled, poll_interval, timeout, points, connection)",
    ),
    "unknown top-level key": Case(
        LAST,
        LAST + "\ndatabase: {path: x.db}",
        23,
        "database",
        f"unknown key 'database' (allowed: {TOP_LEVEL_KEYS})",
    ),
    "unknown driver": Case(
        "    driver: fake",
        "    driver: profinet",
        13,
        "devices[0].driver",
        "expected one of 'fake', 'modbus', 'bacnet', 'dlt645' (got 'profinet')",
    ),
    "driver missing": Case(
        "    driver: fake",
        "    name: Chiller 1",
        12,
        "devices[0].driver",
        "required key missing (one of 'fake', 'modbus', 'bacnet', 'dlt645')",
    ),
    "bad duration": Case(
        "    poll_interval: 5s",
        "    poll_interval: 5 sec",
        15,
        "devices[0].poll_interval",
        "expected a duration such as 5s, 500ms, 2m, got '5 sec'",
    ),
    "zero duration": Case(
        "    timeout: 1s",
        "    timeout: 0",
        16,
        "devices[0].timeout",
        "must be greater than 0, got 0",
    ),
    "infinite duration": Case(
        "      port: 8883",
        "      port: 8883\n  keepalive: .inf",
        9,
        "uplink.keepalive",
        "expected a finite number, got .inf",
    ),
    "below range": Case(
        "      port: 8883",
        "      port: 0",
        8,
        "uplink.endpoints[0].port",
        "must be at least 1, got 0",
    ),
    "above range": Case(
        "      port: 8883",
        "      port: 70000",
        8,
        "uplink.endpoints[0].port",
        "must be at most 65535, got 70000",
    ),
    "negative gap": Case(
        "  - id: bus-1",
        "  - {id: bus-1, gap: -1}",
        10,
        "links[0].gap",
        "must be at least 0, got -1",
    ),
    "id with a space": Case(
        "  - id: chiller-1",
        "  - id: chiller 1",
        12,
        "devices[0].id",
        "expected an id of letters, digits, '-' and '_' (starting with a letter or digit, "
        "at most 64 characters), got 'chiller 1'",
    ),
    "id read as a number": Case(
        "  id: st-marys",
        "  id: 0x10",
        2,
        "site.id",
        "expected text, got 0x10 (put it in quotes if it is meant as text)",
    ),
    "text read as a boolean": Case(
        "  id: plant-b2",
        "  id: plant-b2\n  name: no",
        5,
        "gateway.name",
        "expected text, got no (put it in quotes if it is meant as text)",
    ),
    "literal read as a number": Case(
        "      port: 8883",
        "      port: 8883\n  protocol: 5",
        9,
        "uplink.protocol",
        "expected one of '3.1.1', '5' (got the number 5; write '5' in quotes)",
    ),
    "unknown log level": Case(
        LAST,
        LAST + "\nlog_level: verbose",
        23,
        "log_level",
        "expected one of 'debug', 'info', 'warning', 'error' (got 'verbose')",
    ),
    "unknown point kind": Case(
        "        unit: degC",
        "        kind: temperature",
        19,
        "devices[0].points[0].kind",
        "expected one of 'analog', 'binary', 'multistate', 'string' (got 'temperature')",
    ),
    "empty point list": Case(
        LAST,
        LAST + "\n  - {id: pump-1, driver: fake, points: []}",
        23,
        "devices[1].points",
        "must have at least 1 item(s), got 0",
    ),
    "limits reversed": Case(
        LAST,
        "        limits: {min: 10, max: 5}",
        22,
        "devices[0].points[1].limits",
        "min (10.0) is greater than max (5.0)",
    ),
    "tls cert without key": Case(
        "      port: 8883",
        "      port: 8883\n  tls: {cert: client.crt}",
        9,
        "uplink.tls",
        "cert and key must be given together",
    ),
    "signal value of neither type": Case(
        "        unit: degC",
        "        signal: {value: [1, 2]}",
        19,
        "devices[0].points[0].signal.value",
        "expected a number or text, got a list",
    ),
    "bad size": Case(
        LAST,
        LAST + "\nstore: {disk_budget: lots}",
        23,
        "store.disk_budget",
        "expected a size such as 512MB or 2GiB, got 'lots'",
    ),
    "empty host": Case(
        "    - host: broker-1",
        "    - host: ''",
        7,
        "uplink.endpoints[0].host",
        "must not be empty",
    ),
    "bad topic prefix": Case(
        "      port: 8883",
        "      port: 8883\n  topic_prefix: plant/#",
        9,
        "uplink.topic_prefix",
        "expected a topic prefix without spaces, '+' or '#', not starting or ending with '/', "
        "got 'plant/#'",
    ),
    "mapping instead of list": Case(
        "  - id: bus-1", "    id: bus-1", 9, "links", "expected a list, got a mapping"
    ),
    "empty section": Case("  id: st-marys", "", 1, "site", "expected a mapping, got nothing"),
    "text instead of mapping": Case(
        "    - host: broker-1\n      port: 8883",
        "    - broker-1\n  keepalive: 30s",
        7,
        "uplink.endpoints[0]",
        "expected a mapping, got 'broker-1'",
    ),
    # Cross-checks, run once the models have validated.
    "duplicate device id": Case(
        LAST,
        LAST + "\n  - {id: chiller-1, driver: fake, points: [{id: p}]}",
        23,
        "devices[1].id",
        "duplicate device id 'chiller-1' (first at line 12)",
    ),
    "duplicate point id": Case(
        "      - id: setpoint",
        "      - id: supply-temp",
        20,
        "devices[0].points[1].id",
        "duplicate point id 'supply-temp' (first at line 18)",
    ),
    "duplicate link id": Case(
        "  - id: bus-1",
        "  - id: bus-1\n  - id: bus-1",
        11,
        "links[1].id",
        "duplicate link id 'bus-1' (first at line 10)",
    ),
    "unknown link": Case(
        "    link: bus-1",
        "    link: bus-2",
        14,
        "devices[0].link",
        "unknown link 'bus-2' (links: bus-1)",
    ),
    "writable without limits": Case(
        LAST,
        "        kind: multistate",
        21,
        "devices[0].points[1].writable",
        "a writable multistate point needs limits (min and max) to check commands",
    ),
    "timeout as long as the interval": Case(
        "    timeout: 1s",
        "    timeout: 5s",
        16,
        "devices[0].timeout",
        "timeout (5s) must be shorter than poll_interval (5s)",
    ),
    "default timeout too long": Case(
        "    poll_interval: 5s\n    timeout: 1s",
        "    poll_interval: 1500ms\n    enabled: true",
        15,
        "devices[0].poll_interval",
        "timeout (2s, the default) must be shorter than poll_interval (1.5s)",
    ),
    "signal min above max": Case(
        "        unit: degC",
        "        signal: {mode: walk, min: 10, max: 0}",
        19,
        "devices[0].points[0].signal.min",
        "min (10) is greater than max (0)",
    ),
    "duplicate endpoint": Case(
        "      port: 8883",
        "      port: 8883\n    - {host: BROKER-1, port: 8883}",
        9,
        "uplink.endpoints[1]",
        "duplicate endpoint 'broker-1:8883' (first at line 7)",
    ),
    "password without user name": Case(
        "      port: 8883",
        "      port: 8883\n  password_file: /etc/edge-agent/mqtt-password",
        9,
        "uplink.password_file",
        "password_file needs a username (without one, no password is sent)",
    ),
    "reconnect backoff reversed": Case(
        "      port: 8883",
        "      port: 8883\n  reconnect: {initial: 2m, max: 1m}",
        9,
        "uplink.reconnect.initial",
        "initial (120s) is longer than max (60s)",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_one_mistake_one_issue(case: Case, in_tmp: Path) -> None:
    got = issues(variant(case.old, case.new), in_tmp)
    assert found(got) == [("site.yaml", case.line, case.path, case.message)]


def test_every_model_error_is_reported_at_once(in_tmp: Path) -> None:
    text = variant("        unit: degC", "        scale: x\n        kind: temperature")
    text = text.replace("      port: 8883", "      port: 0").replace("uplink:", "uplinks:")
    assert found(issues(text, in_tmp)) == [
        ("site.yaml", 1, "uplink", "required key missing"),
        ("site.yaml", 5, "uplinks", "unknown key 'uplinks' (did you mean 'uplink'? allowed: "
         f"{TOP_LEVEL_KEYS})"),
        ("site.yaml", 19, "devices[0].points[0].scale", "expected a number, got 'x'"),
        ("site.yaml", 20, "devices[0].points[0].kind",
         "expected one of 'analog', 'binary', 'multistate', 'string' (got 'temperature')"),
    ]  # fmt: skip


def test_every_cross_check_is_reported_at_once(in_tmp: Path) -> None:
    text = variant("    link: bus-1", "    link: bus-2").replace("timeout: 1s", "timeout: 9s")
    got = issues(text, in_tmp)
    assert [(i.line, i.path) for i in got] == [(14, "devices[0].link"), (16, "devices[0].timeout")]


def test_writable_binary_point_needs_no_limits(in_tmp: Path) -> None:
    write(in_tmp, {"site.yaml": variant(LAST, "        kind: binary")})
    assert load_config("site.yaml").devices[0].points[1].writable


def test_issue_and_error_formats() -> None:
    issue = ConfigIssue("site.yaml", 42, "devices[3].points[7].scale", "expected a number, got 'x'")
    assert str(issue) == "site.yaml:42 devices[3].points[7].scale: expected a number, got 'x'"
    assert str(ConfigIssue("site.yaml", None, "", "file not found")) == "site.yaml: file not found"
    later = ConfigIssue("b.yaml", 1, "", "y")
    error = ConfigError([later, issue, ConfigIssue("site.yaml", 3, "x", "z"), later])
    assert [i.line for i in error.issues] == [1, 3, 42]  # sorted by file, then line; no repeats
    assert str(error).splitlines() == [str(i) for i in error.issues]


# --- YAML itself -----------------------------------------------------------------------


def test_duplicate_keys_are_errors(in_tmp: Path) -> None:
    text = variant("      port: 8883", "      port: 8883\n      port: 1883")
    assert found(issues(text, in_tmp)) == [
        ("site.yaml", 9, "uplink.endpoints[0].port", "duplicate key 'port' (first at line 8)")
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "site:\n  id: a\n  name: Plant: B2\n",
            3,
            "YAML syntax error: mapping values are not allowed here; "
            "a value containing ': ' must be in quotes",
        ),
        (
            "site:\n\tid: a\n",
            2,
            "YAML syntax error: found character '\\t' that cannot start any token; "
            "indent with spaces, not tabs",
        ),
        (
            "site: {id: a\ngateway: b\n",
            2,
            "YAML syntax error: expected ',' or '}', but got ':' "
            "(while parsing a flow mapping at line 1)",
        ),
        (
            "site: {id: a}\n---\nsite: {id: b}\n",
            2,
            "YAML syntax error: expected a single document in the stream at line 1, "
            "but found another document",
        ),
        ("site: *nowhere\n", 1, "YAML syntax error: found undefined alias 'nowhere'"),
        (
            "site:\n  name: 'Plant B2\n\ngateway: {}\n",
            2,
            "YAML syntax error: found unexpected end of stream "
            "(while scanning a quoted scalar at line 2)",
        ),
    ],
    ids=["colon", "tab", "unclosed brace", "two documents", "undefined alias", "unclosed quote"],
)
def test_yaml_syntax_errors_have_a_line(text: str, line: int, message: str, in_tmp: Path) -> None:
    assert found(issues(text, in_tmp)) == [("site.yaml", line, "", message)]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"", None, "file is empty"),
        (b"# only a comment\n\n", None, "file is empty"),
        (b"- site\n- gateway\n", 1, "expected a mapping of sections (site, gateway, uplink, ...), "
         "got a list"),
        (b"site:\n  name: caf\xe9\n", 2, "file is not UTF-8 text"),
    ],
    ids=["empty", "comments only", "top-level list", "latin-1"],
)  # fmt: skip
def test_file_level_errors(content: bytes, line: int | None, message: str, in_tmp: Path) -> None:
    (in_tmp / "site.yaml").write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config("site.yaml")
    assert found(caught.value.issues) == [("site.yaml", line, "", message)]


def test_missing_file_and_directory(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nowhere\.yaml: file not found$"):
        load_config("nowhere.yaml")
    with pytest.raises(ConfigError, match=r"^\.: file is a directory$"):
        load_config(".")


def test_unreadable_file(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    write(in_tmp, {"site.yaml": BASE})
    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod 0 does not stop root
    with pytest.raises(ConfigError) as caught:
        load_config("site.yaml")
    assert str(caught.value) == "site.yaml: file is not readable (permission denied)"


def test_merge_keys_inherit_and_report_at_the_merge_line(in_tmp: Path) -> None:
    text = variant(
        LAST,
        LAST + "\n  - <<: *chiller\n    id: chiller-2\n  - <<: *chiller",
    ).replace("  - id: chiller-1", "  - &chiller\n    id: chiller-1")
    got = issues(text, in_tmp)
    # chiller-2 inherits everything but its id; the third copy repeats chiller-1's id.
    assert found(got) == [
        ("site.yaml", 26, "devices[2].id", "duplicate device id 'chiller-1' (first at line 13)")
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!env BROKER", "unknown tag !env"),
        ("!!python/object:os.system x", "unknown tag !!python/object:os.system"),
        ("!!int abc", "cannot read 'abc' as !!int"),
    ],
)
def test_tags_outside_safe_yaml_are_errors(value: str, message: str, in_tmp: Path) -> None:
    text = variant("    - host: broker-1", f"    - host: {value}")
    assert found(issues(text, in_tmp)) == [("site.yaml", 7, "uplink.endpoints[0].host", message)]


def test_self_referencing_alias(in_tmp: Path) -> None:
    text = variant(LAST, LAST + "\n        signal: &s {value: *s}")
    assert found(issues(text, in_tmp)) == [
        ("site.yaml", 23, "devices[0].points[1].signal.value",
         "an alias refers to the value it is part of"),
    ]  # fmt: skip


def test_alias_explosion_is_bounded(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_VALUES", 1000)
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 6)]
    got = issues("\n".join(levels) + "\n", in_tmp)
    assert found(got) == [
        ("site.yaml", None, "", "too many values (more than 1000, after expanding aliases)")
    ]


def test_deep_nesting_is_an_error_not_a_crash(in_tmp: Path) -> None:
    got = issues("site: " + "[" * 5000 + "]" * 5000 + "\n", in_tmp)
    assert found(got) == [
        ("site.yaml", None, "", "YAML syntax error: values are nested too deeply")
    ]


@pytest.mark.parametrize(
    "text",
    ["\x00", "[", "- a\n- b: [", ": :", "? [a]\n: b\n", "!include", "a: !include [x]", "&a *a"],
)
def test_garbage_raises_config_error_only(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    assert all(i.file == "<string>" for i in caught.value.issues)


# --- includes --------------------------------------------------------------------------


def test_includes_splice_lists_and_nest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    config = load_config("includes/site.yaml")
    assert [d.id for d in config.devices] == ["pump-1", "pump-2", "tank"]
    assert [p.id for p in config.devices[1].points] == ["speed", "running"]
    assert config.devices[2].points[0].unit == "m"


def test_errors_inside_included_files_name_that_file(in_tmp: Path) -> None:
    text = variant(
        "    points:\n      - id: supply-temp\n        unit: degC",
        "    points:\n      - !include points/chiller.yaml\n        # spliced",
    )
    got = issues(
        text,
        in_tmp,
        {"points/chiller.yaml": "- id: power\n  unit: kW\n  scale: x\n- id: energy\n  foo: 1\n"},
    )
    assert found(got) == [
        ("points/chiller.yaml", 3, "devices[0].points[0].scale", "expected a number, got 'x'"),
        ("points/chiller.yaml", 5, "devices[0].points[1].foo", "unknown key 'foo' (allowed: id, "
         "name, kind, unit, writable, limits, min_write_interval, scale, offset, signal)"),
    ]  # fmt: skip


def test_included_mapping_and_nested_relative_include(in_tmp: Path) -> None:
    text = variant(LAST, LAST + "\n  - !include devices/pump.yaml")
    files = {
        "devices/pump.yaml": "id: pump-1\ndriver: fake\npoints: !include ../points/pump.yaml\n",
        "points/pump.yaml": "- id: speed\n  writable: true\n",
    }
    assert found(issues(text, in_tmp, files)) == [
        ("points/pump.yaml", 2, "devices[1].points[0].writable",
         "a writable analog point needs limits (min and max) to check commands"),
    ]  # fmt: skip


def test_duplicate_key_and_syntax_error_in_included_files(in_tmp: Path) -> None:
    text = variant(
        LAST,
        LAST + "\n  - !include a.yaml"
        "\n  - {id: b, driver: fake, points: !include b.yaml}"
        "\n  - {id: c, driver: fake, points: !include b.yaml}",  # the same error, reported once
    )
    files = {
        "a.yaml": "id: a\ndriver: fake\npoints: [{id: p}]\nid: a2\n",
        "b.yaml": "- id: p\n  unit: [degC\n",
    }
    assert found(issues(text, in_tmp, files)) == [
        ("a.yaml", 4, "devices[1].id", "duplicate key 'id' (first at line 1)"),
        ("b.yaml", 2, "", "YAML syntax error: expected ',' or ']', but got '<stream end>' "
         "(while parsing a flow sequence at line 2)"),
    ]  # fmt: skip


def test_missing_include_names_the_including_line_only(in_tmp: Path) -> None:
    text = variant(LAST, LAST + "\n  - {id: pump, driver: fake, points: !include nope.yaml}")
    # Only the cause: not also "devices[1].points: expected a list, got nothing".
    assert found(issues(text, in_tmp)) == [
        ("site.yaml", 23, "devices[1].points", "included file 'nope.yaml' not found")
    ]


def test_failed_include_in_a_list_adds_no_follow_up_errors(in_tmp: Path) -> None:
    text = variant(LAST, LAST + "\n  - {id: pump, driver: fake, points: [!include p.yaml]}")
    assert found(issues(text, in_tmp, {"p.yaml": "# nothing yet\n"})) == [
        ("site.yaml", 23, "devices[1].points", "included file 'p.yaml' is empty")
    ]


def test_include_cycles(in_tmp: Path) -> None:
    text = variant(LAST, LAST + "\n  - !include a.yaml")
    files = {"a.yaml": "- !include b.yaml\n", "b.yaml": "- !include a.yaml\n"}
    assert found(issues(text, in_tmp, files)) == [
        ("b.yaml", 1, "devices", "include cycle: site.yaml -> a.yaml -> b.yaml -> a.yaml")
    ]
    text = variant("  id: plant-b2", "  id: plant-b2\n  name: !include site.yaml")
    assert found(issues(text, in_tmp)) == [
        ("site.yaml", 5, "gateway.name", "include cycle: site.yaml -> site.yaml")
    ]


def test_include_needs_a_path(in_tmp: Path) -> None:
    text = variant(
        "      - id: supply-temp\n        unit: degC", "      - !include {path: x}\n      # ?"
    )
    assert found(issues(text, in_tmp)) == [
        ("site.yaml", 18, "devices[0].points",
         "!include expects a file path, e.g. !include points/chiller.yaml"),
    ]  # fmt: skip


def test_config_text_with_and_without_base_dir(tmp_path: Path) -> None:
    write(tmp_path, {"points.yaml": "- id: p\n"})
    text = variant(
        "      - id: supply-temp\n        unit: degC", "      - !include points.yaml\n      #"
    )
    config = load_config_text(text, "pushed.yaml", base_dir=tmp_path)
    assert [p.id for p in config.devices[0].points] == ["p", "setpoint"]
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "pushed.yaml")
    assert found(caught.value.issues) == [
        ("pushed.yaml", 18, "devices[0].points",
         "!include is not possible in a configuration given as text"),
    ]  # fmt: skip


# --- the example and the CLI -----------------------------------------------------------


def test_example_site_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert len(config.uplink.endpoints) == 2
    assert config.uplink.tls is not None and config.uplink.password_file is not None
    assert {d.id for d in config.devices} >= {"chiller-1", "chiller-2", "ahu-1"}
    assert config.devices[0].points == config.devices[1].points  # one shared point file


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(config_cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_validate_ok() -> None:
    code, out, err = run_cli("validate", str(EXAMPLE))
    config = load_config(EXAMPLE)
    points = sum(len(d.points) for d in config.devices)
    assert (code, err) == (0, "")
    assert out == (
        f"OK {EXAMPLE}: {len(config.devices)} devices, {points} points, "
        f"config hash {config.config_hash}\n"
    )


BROKEN = [
    "broken/devices.yaml:5 devices[0].points[0].scale: expected a number, got 'fast'",
    "broken/site.yaml:4 uplink.endpoints[0].port: must be at least 1, got 0",
    "broken/site.yaml:9 devices[1].points: included file 'broken/missing.yaml' not found",
]


def test_cli_validate_lists_every_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    code, out, err = run_cli("validate", "broken/site.yaml")
    assert (code, out, err.splitlines()) == (1, "", BROKEN)


def test_cli_survives_a_loader_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: str) -> AgentConfig:
        raise RuntimeError("boom")

    monkeypatch.setattr("edge_agent.cli.config.load_with_warnings", broken)
    code, out, err = run_cli("validate", "x.yaml")
    assert (code, out) == (1, "")
    assert err == "x.yaml: internal error while loading (RuntimeError: boom)\n"


def test_cli_show_round_trips(in_tmp: Path) -> None:
    expected = load_config(EXAMPLE)
    code, out, _ = run_cli("show", str(EXAMPLE))
    assert code == 0 and out.startswith("# effective configuration of ")
    (in_tmp / "effective.yaml").write_text(out)
    assert load_config("effective.yaml") == expected
    code, out, _ = run_cli("show", "--json", str(EXAMPLE))
    data = json.loads(out)
    assert data["devices"][0]["poll_interval"] == 5.0
    assert data["devices"][0]["points"][0]["signal"]["min"] == 5.0
    assert load_config_text(out).config_hash == expected.config_hash  # "-inf" loads back


def test_cli_show_heads_its_yaml_in_the_site_language(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heading is a YAML comment: in Chinese the output still loads as the same config."""
    expected = load_config(EXAMPLE)
    for name in ("EDGE_AGENT_LANG", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    code, out, _ = run_cli("show", str(EXAMPLE))
    assert code == 0
    assert out.splitlines()[0] == f"# {EXAMPLE} 的生效配置（配置哈希 {expected.config_hash}）"
    assert load_config_text(out).config_hash == expected.config_hash
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    code, out, _ = run_cli("show", str(EXAMPLE))
    assert out.splitlines()[0] == (
        f"# effective configuration of {EXAMPLE} (config hash {expected.config_hash})"
    )


def test_cli_show_reports_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    code, out, err = run_cli("show", "--json", "broken/site.yaml")
    assert (code, out, err.splitlines()) == (1, "", BROKEN)


def subprocess_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from edge_agent.cli.config import config; config()"
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, cwd=FIXTURES, capture_output=True, text=True, timeout=60)


def test_subprocess_validate_ok() -> None:
    result = subprocess_cli("validate", "includes/site.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK includes/site.yaml: 3 devices, 5 points, config hash ")
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("file", "lines"),
    [
        ("broken/site.yaml", BROKEN),
        ("nowhere.yaml", ["nowhere.yaml: file not found"]),
        ("broken", ["broken: file is a directory"]),
    ],
)
def test_subprocess_validate_fails_without_traceback(file: str, lines: list[str]) -> None:
    result = subprocess_cli("validate", file)
    assert (result.returncode, result.stdout) == (1, "")
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == lines

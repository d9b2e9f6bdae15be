"""Every table of the CLI as the technician sees it, against a running agent: on an
80-column terminal (a real pty) and piped; values and units always visible, floats at the
point's resolution, no line wider than 80 cells, no escape code with NO_COLOR or in a pipe,
with long device and point names too."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.harness import REPO, AgentProcess, run_cli, site_config, wait_until

LONG = "chilled_water_supply_temperature_setpoint_from_optimizer"
LONG_DEVICE = "chiller-plant-north-wing-basement-2"
ESCAPE = "\x1b["


def _config(workdir: Path) -> dict:
    ahu = {
        "id": "ahu-1",
        "driver": "fake",
        "poll_interval": 0.2,
        "timeout": 0.1,
        "points": [
            # no declared resolution: 4 significant digits, not 1.0188841356578546
            {"id": "supply", "unit": "degC", "signal": {"value": 1.0188841356578546}},
            {"id": "valve", "unit": "%", "signal": {"value": 42.123, "resolution": 0.1}},
            {"id": LONG, "unit": "degC", "writable": True, "limits": {"min": 0, "max": 100},
             "signal": {"value": 6.666666}},
            {"id": "setpoint", "unit": "kPa", "writable": True, "limits": {"min": 0, "max": 100},
             "min_write_interval": 0, "signal": {"value": 5.0}},
        ],
    }  # fmt: skip
    north = {
        "id": LONG_DEVICE,
        "driver": "fake",
        "poll_interval": 0.2,
        "timeout": 0.1,
        "points": [{"id": "power", "unit": "kW", "signal": {"value": 1652.37}}],
    }
    loop = {"id": "chw-valve-with-a-long-name", "type": "pid", "period": 1,
            "measurement": "ahu-1.supply", "setpoint": 7.0, "output": f"ahu-1.{LONG}",
            "kp": 5, "ti": 60, "direction": "direct", "limits": {"min": 0, "max": 100},
            "safe_state": "hold"}  # fmt: skip
    alarms = [
        {"id": "warm-supply", "type": "high", "point": "ahu-1.supply", "limit": 0.5,
         "severity": "major", "message": "supply {value} degC above {limit} degC"},
        {"id": "pressure-high", "type": "high", "point": "ahu-1.setpoint", "limit": 50,
         "severity": "minor"},
    ]  # fmt: skip
    # No broker: the uplink keeps connecting (status has an error line to show).
    return site_config(workdir, 1, [ahu, north], loops=[loop], alarms=alarms)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("tables")
    running = AgentProcess(workdir, _config(workdir)).start()
    try:
        running.wait_ready()
        wait_until(lambda: running.request("alarms")["alarms"], 20, "the supply alarm")
        wait_until(lambda: running.request("loops")["loops"][0].get("written"), 20, "a write")
        yield running
    finally:
        if running.process and running.process.poll() is None:
            running.stop()


def terminal(*args: str, columns: int = 80, env: dict[str, str] | None = None) -> str:
    """The CLI on a pseudo-terminal `columns` wide: what a technician's screen shows."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environ.update({"TERM": "xterm-256color", "COLUMNS": str(columns), **(env or {})})
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", *args],
        stdin=child, stdout=child, stderr=child, cwd=REPO, env=environ,
    )  # fmt: skip
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(30) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


def piped(*args: str, env: dict[str, str] | None = None) -> str:
    done = run_cli(*args, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def fits(text: str, columns: int = 80) -> list[str]:
    lines = plain(text).splitlines()
    assert lines
    too_wide = [line for line in lines if cell_len(line) > columns]
    assert not too_wide, "\n".join(too_wide)
    assert all(line == line.rstrip() for line in lines)  # no trailing spaces either
    return lines


def socket(agent: AgentProcess) -> list[str]:
    return ["--socket", str(agent.socket)]


# -- points ----------------------------------------------------------------------------------


def test_points_at_80_columns_show_every_value_with_its_unit(agent: AgentProcess) -> None:
    screen = terminal("points", *socket(agent), env={"NO_COLOR": "1"})
    assert ESCAPE not in screen  # NO_COLOR: no colour, no bold either
    lines = fits(screen)
    text = "\n".join(lines)
    for value, unit in (("1.019", "degC"), ("42.1", "%"), ("1652.4", "kW")):
        assert re.search(rf"\s{re.escape(value)}\s+{re.escape(unit)}\s", text), (value, text)
    assert "1.0188841356578546" not in text
    # The long name wraps (never cut): all of it is there, the value beside it.
    first_words = "".join(line.split()[0] for line in lines[2:])
    assert f"ahu-1.{LONG}" in first_words
    # It breaks after its device; the value and unit are on the row's first line.
    row = next(line for line in lines if line.split()[0] in ("ahu-1.", f"ahu-1.{LONG[:20]}"))
    assert re.search(r"\s\d+\.\d+\s+degC\s", row), row


def test_points_in_colour_on_a_terminal(agent: AgentProcess) -> None:
    screen = terminal("points", *socket(agent))
    assert ESCAPE in screen  # a terminal without NO_COLOR: the headings are bold
    fits(screen)


def test_points_piped_are_one_row_per_point(agent: AgentProcess) -> None:
    out = piped("points", *socket(agent), env={"COLUMNS": "80"})
    assert ESCAPE not in out
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[0] == ["point", "value", "unit", "quality", "read", "held by"]
    by_ref = {row[0]: row for row in rows[1:]}
    assert set(by_ref) == {"ahu-1.supply", "ahu-1.valve", f"ahu-1.{LONG}", "ahu-1.setpoint",
                           f"{LONG_DEVICE}.power"}  # fmt: skip
    assert by_ref["ahu-1.supply"][1:3] == ["1.019", "degC"]
    assert by_ref["ahu-1.valve"][1:3] == ["42.1", "%"]
    assert by_ref[f"{LONG_DEVICE}.power"][1:4] == ["1652.4", "kW", "good"]
    assert by_ref[f"ahu-1.{LONG}"][2] == "degC"
    assert by_ref[f"ahu-1.{LONG}"][5].startswith("auto")  # the loop holds it
    assert json.loads(piped("points", *socket(agent), "--json"))["ahu-1.supply"]["value"] == (
        1.0188841356578546  # --json: the exact value, for scripts
    )


def test_read_shows_the_unit_at_the_resolution(agent: AgentProcess) -> None:
    assert piped("read", "ahu-1.supply", *socket(agent)) == "ahu-1.supply = 1.019 degC\n"
    assert piped("read", "ahu-1.valve", *socket(agent)) == "ahu-1.valve = 42.1 %\n"


# -- status, loops, alarms --------------------------------------------------------------------


def test_status_fits_80_columns_and_breaks_between_phrases(agent: AgentProcess) -> None:
    for screen in (
        terminal("status", *socket(agent), env={"NO_COLOR": "1"}),
        piped("status", *socket(agent), env={"COLUMNS": "80"}),
    ):
        assert ESCAPE not in screen
        lines = fits(screen)
        text = "\n".join(lines)
        for phrase in ("published 0", "in flight 0", "connects 0", "commands subscribing"):
            assert any(phrase in line for line in lines), (phrase, text)
        assert "Connection refused" in text
        # The long device name folds, never cut: its lines are the column's first words.
        assert LONG_DEVICE in "".join(line.split()[0] for line in lines if line.strip())


def test_loops_show_the_output_value_and_unit_under_a_long_name(agent: AgentProcess) -> None:
    screen = terminal("loops", *socket(agent), env={"NO_COLOR": "1"})
    assert ESCAPE not in screen
    text = "\n".join(fits(screen))
    assert "…" not in text  # nothing elided: was "plant.chw… = 6.67"
    assert re.search(r"= \d+\.\d+ degC", text), text
    rows = [line.split("\t") for line in piped("loops", *socket(agent)).splitlines()]
    assert rows[0] == ["loop", "type", "mode", "outputs", "last result", "changed by"]
    assert rows[1][:3] == ["chw-valve-with-a-long-name", "pid", "auto"]
    assert re.fullmatch(rf"ahu-1\.{LONG} = \d+\.\d+ degC", rows[1][3]), rows[1][3]


def test_alarms_fit_and_ended_alarms_are_listed(agent: AgentProcess) -> None:
    screen = terminal("alarms", *socket(agent), env={"NO_COLOR": "1"})
    assert ESCAPE not in screen
    text = "\n".join(fits(screen))
    assert "supply 1.019 degC above 0.5 degC" in text.replace("\n", " ") or "supply" in text
    assert "(unacknowledged)" in text

    # A condition that comes and goes, acknowledged: it leaves the list for the history.
    write = ["write", "ahu-1.setpoint", "60", "--for", "10m", *socket(agent)]
    assert run_cli(*write).returncode == 0
    wait_until(lambda: any(a["rule"] == "pressure-high" for a in agent.request("alarms")["alarms"]),
               10, "the pressure alarm")  # fmt: skip
    done = run_cli("alarms", "--ack", "pressure-high", "--note", "valve stuck", *socket(agent))
    assert done.returncode == 0, done.stderr
    back = run_cli("write", "ahu-1.setpoint", "5", "--for", "1m", *socket(agent))
    assert back.returncode == 0, back.stderr  # a fake device keeps a released value
    assert run_cli("release", "ahu-1.setpoint", *socket(agent)).returncode == 0
    wait_until(lambda: agent.request("alarms", history=True)["history"], 10, "the history")
    listed = piped("alarms", *socket(agent))
    assert "pressure-high" not in listed
    history = piped("alarms", "--history", *socket(agent)).splitlines()
    heading = history[0].split("\t")
    assert heading == ["severity", "raised", "cleared", "acknowledged", "by", "note", "ended",
                       "id", "point", "message"]  # fmt: skip
    ended = dict(zip(heading, history[1].split("\t"), strict=True))
    assert (ended["severity"], ended["note"], ended["ended"], ended["point"]) == (
        "minor", "valve stuck", "cleared", "ahu-1.setpoint"
    )  # fmt: skip
    assert ended["by"]
    screen = terminal("alarms", "--history", *socket(agent), env={"NO_COLOR": "1"})
    text = "\n".join(fits(screen))
    assert "acknowledged by" in text and "note: valve stuck" in text
    as_json = json.loads(piped("alarms", "--history", "--json", *socket(agent)))
    assert as_json[0]["closed"] == "cleared" and as_json[0]["ack_note"] == "valve stuck"


# -- export and trend, with the site's units ------------------------------------------------


def test_export_and_trend_with_units(agent: AgentProcess, tmp_path: Path) -> None:
    time.sleep(1.5)  # a few commits of history
    config = ["--config", str(agent.config_path)]
    out = piped("export", *config, "--since", "10m", "--points", "ahu-1.valve")
    header, first = out.splitlines()[:2]
    assert header == "ts,point,value,quality,unit"
    assert first.endswith(",ahu-1.valve,42.1,good,%")  # the device rounds to 0.1
    lines = piped("export", *config, "--since", "10m", "--format", "jsonl", "--points",
                  "ahu-1.valve").splitlines()  # fmt: skip
    record = json.loads(lines[0])
    assert (record["point"], record["value"], record["unit"]) == ("ahu-1.valve", 42.1, "%")
    assert isinstance(record["ts_ms"], int) and record["ts"].endswith("Z")

    chart = piped("trend", "ahu-1.valve", *config, "--since", "10m", env={"COLUMNS": "80"})
    assert ESCAPE not in chart
    assert "ahu-1.valve (%)" in chart  # the axis says the unit
    assert chart.splitlines()[-1].endswith("min 42.1 %, max 42.1 %, last 42.1 %")
    screen = terminal("trend", "ahu-1.valve", *config, "--since", "10m", env={"NO_COLOR": "1"})
    assert ESCAPE not in screen


# -- in Chinese --------------------------------------------------------------------------------

ZH = {"NO_COLOR": "1", "LANG": "zh_CN.UTF-8"}


def _cell_offset(line: str, token: str) -> int:
    return cell_len(line[: line.index(token)])


def test_the_tables_in_chinese_fit_and_keep_their_columns(agent: AgentProcess) -> None:
    """Wide characters take two cells: the columns still line up and 80 cells still fit."""
    lines = fits(terminal("points", *socket(agent), env=ZH))
    heading = lines[0]
    assert heading.split() == ["点位", "数值", "单位", "质量", "读取", "保持者"]
    units = [(line, unit) for line in lines[2:] for unit in (" degC ", " kPa ", " % ", " kW ")
             if unit in line]  # fmt: skip
    assert len(units) == 5, lines
    assert {_cell_offset(line, unit) + 1 for line, unit in units} == {_cell_offset(heading, "单位")}
    assert all("正常" in line for line, _unit in units)  # the quality, in Chinese too

    status = "\n".join(fits(terminal("status", *socket(agent), env=ZH)))
    for word in ("站点 / 网关", "上行", "连接中", "积压", "存储", "报警", "命令", "设备", "重要"):
        assert word in status, (word, status)
    assert "published" not in status and "subscribing" not in status
    loops = "\n".join(fits(terminal("loops", *socket(agent), env=ZH)))
    assert "控制回路" in loops and "自动" in loops and re.search(r"= \d+\.\d+ degC", loops)
    alarms = "\n".join(fits(terminal("alarms", *socket(agent), env=ZH)))
    assert "活动" in alarms and "（未确认）" in alarms

    rows = [line.split("\t") for line in piped("points", *socket(agent), env=ZH).splitlines()]
    assert rows[0] == ["点位", "数值", "单位", "质量", "读取", "保持者"]
    supply = next(row for row in rows if row[0] == "ahu-1.supply")
    assert supply[:4] == ["ahu-1.supply", "1.019", "degC", "正常"]

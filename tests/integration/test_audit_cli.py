"""`edge-agent audit` on the store of a real agent run: the platform wrote over mosquitto,
a technician wrote and released through the CLI (the local socket), an override ran out.
As the technician sees it: a table at 80 columns on a terminal (a real pty), tab-separated
lines into a pipe, JSON with --json; usage errors exit 2 with one line; each of those
writes, releases and the expiry is also one line of the agent's log."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber
from edge_agent.points import wall_ms
from tests.harness import REPO, AgentProcess, fake_device, run_cli, site_config, wait_until

CMD = "t/test-site/gw1/cmd"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A point id long enough to make the table fold (ids may be up to this long).
LONG = "supply_air_temperature_setpoint_occupied"


def _device() -> dict:
    device = fake_device("ahu-1", n_points=2, interval=0.2)
    device["points"] += [
        {"id": "sp", "unit": "degC", "writable": True, "limits": {"min": 5, "max": 12},
         "min_write_interval": 0, "signal": {"mode": "constant", "value": 7.0}},
        {"id": "mode", "kind": "multistate", "writable": True, "min_write_interval": 0,
         "limits": {"min": 1, "max": 4}, "signal": {"mode": "constant", "value": 1}},
        {"id": LONG, "unit": "degC", "writable": True, "min_write_interval": 0,
         "limits": {"min": 12, "max": 30}, "signal": {"mode": "constant", "value": 18.0}},
    ]  # fmt: skip
    return device


class Run:
    """The agent's run: its store file, config, log and the time before its first command."""

    def __init__(self, agent: AgentProcess, started_ms: int) -> None:
        self.agent = agent
        self.store = Path(agent.config["store"]["path"])
        self.config = agent.config_path
        self.started_ms = started_ms

    def audit(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run_cli("audit", "--store", str(self.store), *args, env=env)


def _send(platform: PlatformSubscriber, command_id: str, **body: object) -> None:
    platform.send(CMD, json.dumps({"v": 1, "id": command_id, **body}))


def _final(platform: PlatformSubscriber, command_id: str) -> dict:
    finals = ("rejected", "done", "failed")
    assert platform.wait_for(lambda p: any(a["stage"] in finals for a in p.acks(command_id)), 10), (
        f"no final reply to {command_id}"
    )
    return platform.acks(command_id)[-1]


def _cli(*args: str, socket: Path) -> None:
    done = run_cli(*args, "--socket", str(socket))
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One agent run with commands of every source and outcome, read while it runs (the
    first test) and after it stopped (the others)."""
    workdir = tmp_path_factory.mktemp("audit")
    broker = LocalBroker(workdir / "broker").start()
    platform = PlatformSubscriber(broker.port, topic="t/#").start()
    agent = AgentProcess(workdir, site_config(workdir, broker.port, [_device()]))
    try:
        agent.start().wait_commands()
        started = wall_ms()
        _send(platform, "plat-1", type="write", point="ahu-1.sp", value=8.5)
        assert _final(platform, "plat-1")["stage"] == "done"
        _send(platform, "plat-2", type="write", point="ahu-1.sp", value=30)
        assert _final(platform, "plat-2")["reason"] == "out_of_limits"
        _send(platform, "plat-3", type="read", point="ahu-1.c")  # not a write: --all only
        assert _final(platform, "plat-3")["stage"] == "done"
        _cli("write", "ahu-1.mode", "3", "--for", "1s", socket=agent.socket)
        _cli("write", f"ahu-1.{LONG}", "21.5", socket=agent.socket)
        _cli("release", f"ahu-1.{LONG}", socket=agent.socket)
        wait_until(lambda: agent.holder("ahu-1.mode") is None, 10, "the override's end")
        yield Run(agent, started)
    finally:
        if agent.process is not None and agent.process.poll() is None:
            agent.kill()
        platform.stop()
        broker.stop()


def _tsv(text: str) -> list[dict[str, str]]:
    """Tab-separated lines under a header (none at all when nothing was found)."""
    if not text:
        return []
    head, *rows = text.splitlines()
    names = head.split("\t")
    return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]


def test_piped_while_the_agent_runs_one_tab_separated_line_per_write_or_release(run):
    assert run.agent.process.poll() is None and run.store.with_name("outbox.db-wal").exists()
    files = sorted(run.store.parent.iterdir())
    shown = run.audit()
    assert shown.returncode == 0, shown.stderr
    rows = _tsv(shown.stdout)
    assert [(r["point"], r["value"], r["stage"], r["source"]) for r in rows] == [
        ("ahu-1.sp", "8.5", "done", "platform"),
        ("ahu-1.sp", "30", "rejected", "platform"),
        ("ahu-1.mode", "3", "done", "manual"),
        (f"ahu-1.{LONG}", "21.5", "done", "manual"),
        (f"ahu-1.{LONG}", "", "done", "manual"),  # a release: no value
    ]
    assert [r["type"] for r in rows] == ["write"] * 4 + ["release"]
    first, refused, override = rows[:3]
    assert (first["readback"], first["id"], first["type"]) == ("8.5", "plat-1", "write")
    assert refused["reason"] == "out_of_limits" and "5 to 12" in refused["message"]
    assert refused["readback"] == ""
    assert override["readback"] == "3" and override["until"].endswith("Z")
    assert override["by"]  # the technician's unix user
    for row in rows:
        datetime.fromisoformat(row["time"])  # ISO, UTC
        assert row["time"].endswith("Z")
    assert sorted(run.store.parent.iterdir()) == files  # reading made nothing beside it


def test_every_write_release_and_the_expiry_is_one_line_of_the_agents_log(run):
    if run.agent.process.poll() is None:
        assert run.agent.stop() == 0
    records = [json.loads(line) for line in run.agent.log_path.read_text().splitlines()]
    point_lines = [
        (r["event"], r.get("point"), r.get("source"))
        for r in records
        if r["event"] in ("write done", "write rejected", "release done", "hold_ended")
    ]
    assert point_lines == [
        ("write done", "ahu-1.sp", "platform"),
        ("write rejected", "ahu-1.sp", "platform"),
        ("write done", "ahu-1.mode", "manual"),
        ("write done", f"ahu-1.{LONG}", "manual"),
        ("release done", f"ahu-1.{LONG}", "manual"),
        ("hold_ended", "ahu-1.mode", "manual"),
    ]
    (ended,) = [r for r in records if r["event"] == "hold_ended"]
    assert ended["cause"] == "expired" and ended["effective"] == "device"
    (written,) = [r for r in records if r.get("id") == "plat-1"]
    assert (written["value"], written["readback"], written["by"]) == (8.5, 8.5, "platform")


@pytest.fixture
def stopped(run: Run) -> Run:
    if run.agent.process.poll() is None:
        assert run.agent.stop() == 0
    return run


def _in_pty(args: list[str], columns: int = 80) -> tuple[int, str]:
    """The CLI on a terminal `columns` wide (a real pty: isatty() is true)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", *args],
        stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            process.kill()
            pytest.fail(f"no output from {args}: {out!r}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return process.wait(10), ANSI.sub("", out.decode()).replace("\r\n", "\n")


def test_on_a_terminal_a_table_that_fits_80_columns(stopped):
    from rich.cells import cell_len

    code, text = _in_pty(["audit", "--store", str(stopped.store)])
    assert code == 0, text
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= 80, text
    assert lines[0].split() == ["time", "point", "value", "outcome", "read-back"], text
    assert all(line == line.rstrip() for line in lines) and "\t" not in text
    # A row: the time, the point, the value, the outcome, the read-back; who under it.
    assert re.search(
        r"^\d\d-\d\d \d\d:\d\d:\d\d +ahu-1\.sp +8\.5 +done +8\.5\n +by platform$", text, re.M
    ), text
    # A refusal says why, under the row, wrapped within 80 columns.
    assert re.search(
        r"ahu-1\.sp +30 +rejected\n +by platform; out_of_limits: ahu-1\.sp takes 5 to", text
    ), text
    # The long point folds after '_': whole, never cut off.
    assert re.search(
        r"ahu-1\.supply_air_temperature_ +21\.5 +done +21\.5\n {16}setpoint_occupied\n", text
    ), text
    assert "…" not in text
    wide = _in_pty(["audit", "--store", str(stopped.store)], 120)[1]
    assert wide.splitlines()[0].split()[-1] == "who" and LONG in wide


def test_json_has_the_command_the_outcome_and_the_read_back(stopped):
    shown = stopped.audit("--json")
    assert shown.returncode == 0, shown.stderr
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["id"] for r in records] == ["plat-1", "plat-2"] + [r["id"] for r in records[2:]]
    first = records[0]
    assert (first["point"], first["value"], first["readback"], first["stage"]) == (
        "ahu-1.sp",
        8.5,
        8.5,
        "done",
    )
    assert first["source"] == "platform" and first["time"].endswith("Z")
    assert first["ts"] >= stopped.started_ms
    assert records[1]["reason"] == "out_of_limits" and records[1]["readback"] is None
    assert records[2]["until"] is not None and records[2]["by"]


def test_filters_point_source_all(stopped):
    def points(*args: str) -> list[tuple[str, str]]:
        shown = stopped.audit(*args)
        assert shown.returncode == 0, shown.stderr
        return [(r["point"], r["value"]) for r in _tsv(shown.stdout)]

    assert points("--point", "ahu-1.mode") == [("ahu-1.mode", "3")]
    assert len(points("--point", "ahu-1.*")) == 5
    assert points("--source", "manual", "--point", "ahu-1.sp") == []
    assert [p for p, _ in points("--source", "platform")] == ["ahu-1.sp", "ahu-1.sp"]
    assert ("ahu-1.c", "") in points("--all")
    assert points("-n", "1") == [(f"ahu-1.{LONG}", "")]


@pytest.mark.parametrize("form", ["1h", "2h30m", "today", "-1h", "1h ago"])
def test_since_forms_that_include_the_run(stopped, form):
    shown = stopped.audit("--since", form)
    assert shown.returncode == 0, shown.stderr
    assert len(_tsv(shown.stdout)) == 5


def test_since_a_time_or_an_epoch(stopped):
    before = datetime.fromtimestamp(stopped.started_ms / 1000 - 1).strftime("%Y-%m-%d %H:%M:%S")
    assert len(_tsv(stopped.audit("--since", before).stdout)) == 5
    assert len(_tsv(stopped.audit("--since", f"@{stopped.started_ms // 1000 - 1}").stdout)) == 5
    later = stopped.audit("--since", f"@{time.time() + 3600:.0f}")
    assert later.returncode == 0 and later.stdout == ""
    assert "no writes or releases since" in later.stderr and str(stopped.store) in later.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "lately"], "--since"),
        (["--since", "@soon"], "--since"),
        (["--point", "sp"], "--point"),
        (["--source", "bms"], "--source"),
        (["-n", "-3"], "-n"),
        (["--colour"], "--colour"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(stopped, args, says):
    shown = stopped.audit(*args)
    assert shown.returncode == 2, shown
    assert shown.stdout == "" and "Traceback" not in shown.stderr
    assert says in shown.stderr and "Error:" in shown.stderr


def test_a_missing_an_empty_or_a_foreign_store_says_so(stopped, tmp_path):
    missing = run_cli("audit", "--store", str(tmp_path / "nothing.db"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: no edge-agent store at {tmp_path / 'nothing.db'}"

    from edge_agent.commands.audit import Audit
    from edge_agent.store.outbox import Outbox

    empty = tmp_path / "empty.db"
    Outbox(empty, 10**8, 86400.0).close()
    Audit(empty).close()
    shown = run_cli("audit", "--store", str(empty))
    assert (shown.returncode, shown.stdout) == (0, "")
    assert shown.stderr.strip() == f"no writes or releases in {empty}"

    foreign = tmp_path / "notes.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    shown = run_cli("audit", "--store", str(foreign))
    assert shown.returncode == 1 and "not an edge-agent store" in shown.stderr

    text = tmp_path / "site.yaml"
    text.write_text("site: {}\n")
    shown = run_cli("audit", "--store", str(text))
    assert shown.returncode == 1 and "not an SQLite database" in shown.stderr


def test_the_store_is_found_from_the_configuration(stopped):
    shown = run_cli("audit", "--config", str(stopped.config), "--point", "ahu-1.mode")
    assert shown.returncode == 0, shown.stderr
    assert [r["point"] for r in _tsv(shown.stdout)] == ["ahu-1.mode"]

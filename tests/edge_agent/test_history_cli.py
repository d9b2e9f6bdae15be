"""`edge-agent export` and `edge-agent trend`, through the installed entry point, on stores
filled by the real Outbox."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from edge_agent import SITE_CONFIG
from edge_agent.points import Batch, Quality, Reading, wall_ms
from edge_agent.store.outbox import Lane, Outbox, Record, TrafficClass
from tests.edge_agent.store.writer import WRITER
from tests.harness import REPO

MINUTE = 60_000


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point as `run_cli` runs it: this checkout's code, whichever
    interpreter's `edge-agent` script is installed (a worktree has none of its own)."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def one_error(done: subprocess.CompletedProcess[str], text: str, code: int = 1) -> None:
    """Exit `code` with one line on stderr, containing `text`; no traceback."""
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert text in lines[0], lines[0]
    assert "Traceback" not in done.stderr


def poll(device: str, ts: int, i: int) -> Record:
    readings = [
        Reading("t", round(20 + 0.1 * i, 1), ts),
        Reading("run", i % 3 == 0, ts),
        Reading("mode", "auto" if i % 2 else "manual, cooling", ts),
        Reading("kwh", 10**6 + i, ts - 1500, Quality.STALE),
    ]
    if device == "ahu-1" and i == 4:
        readings[0] = Reading.bad("t", "timeout", ts)
    return Record(TrafficClass.TELEMETRY, device, ts, batch=Batch(device, ts, tuple(readings)))


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, int]:
    """30 polls a minute apart of two devices, the older 20 delivered (history), the rest
    waiting for the broker; the agent is stopped."""
    path = tmp_path / "var" / "outbox.db"
    path.parent.mkdir()
    start = wall_ms() - 30 * MINUTE
    box = Outbox(path, 10**9, 86_400.0)
    box.append([poll(d, start + i * MINUTE, i) for i in range(30) for d in ("ahu-1", "ch-1")])
    box.mark_boundary()
    box.ack([r.id for r in box.lease(Lane.BACKLOG, 40)])
    assert box.stats().history_rows == 40 and box.stats().backlog_rows == 20
    box.close()
    return path, start


def test_export_csv_of_points_to_stdout(store) -> None:
    path, start = store
    done = run("export", "--store", str(path), "--since", "2h", "--points", "ahu-1.t,ahu-1.kwh")
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == ["ts", "point", "value", "quality", "unit"]
    expected = []
    for i in range(30):
        ts = start + i * MINUTE
        t = ["", "bad"] if i == 4 else [repr(round(20 + 0.1 * i, 1)), "good"]
        expected.append([iso(ts), "ahu-1.t", *t, ""])  # no config: no unit known
        expected.append([iso(ts - 1500), "ahu-1.kwh", str(10**6 + i), "stale", ""])
    assert rows[1:] == expected  # delivered and waiting rows alike, in time order
    assert done.stderr == ""


def test_export_of_a_device_to_a_file(store, tmp_path: Path) -> None:
    path, _ = store
    out = tmp_path / "ahu.csv"
    done = run("export", "--store", str(path), "--since", "2h", "--device", "ch-1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and f"exported 120 readings to {out}" in done.stderr
    rows = list(csv.DictReader(out.open(newline="")))
    assert len(rows) == 120
    assert {r["point"] for r in rows} == {f"ch-1.{p}" for p in ("t", "run", "mode", "kwh")}
    assert {r["value"] for r in rows if r["point"] == "ch-1.run"} == {"true", "false"}
    assert "manual, cooling" in {r["value"] for r in rows}  # quoted by csv, read back whole
    assert list(tmp_path.glob("*.part")) == []


def test_export_reads_the_store_named_by_the_config(store, tmp_path: Path) -> None:
    path, start = store
    config = tmp_path / "site.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": {"id": "s1"},
                "gateway": {"id": "g1"},
                "uplink": {"endpoints": [{"host": "127.0.0.1"}]},
                "store": {"path": str(path)},
            }
        )
    )
    since, until = iso(start + 10 * MINUTE), iso(start + 12 * MINUTE)
    done = run(
        "export", "-c", str(config), "--since", since, "--until", until, "--points", "ch-1.t"
    )
    assert done.returncode == 0, done.stderr
    assert [r[0] for r in csv.reader(io.StringIO(done.stdout))][1:] == [
        iso(start + 10 * MINUTE),
        iso(start + 11 * MINUTE),
    ]  # --until is excluded


def test_an_empty_range_is_said_on_stderr(store) -> None:
    path, start = store
    done = run("export", "--store", str(path), "--since", "5d", "--until", "4d")
    assert done.returncode == 0
    assert done.stdout == "ts,point,value,quality,unit\n"
    assert "no readings between" in done.stderr
    assert f"it holds {iso(start)} to {iso(start + 29 * MINUTE)}" in done.stderr


def test_export_while_the_agent_writes(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "0.005"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        time.sleep(0.5)
        for _ in range(3):
            done = run("export", "--store", str(path), "--since", "1h", "--points", "d.p0")
            assert done.returncode == 0, done.stderr
            values = [int(r[2]) for r in list(csv.reader(io.StringIO(done.stdout)))[1:]]
            assert values == list(range(len(values))) and values
        assert writer.poll() is None
    finally:
        writer.kill()
        writer.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--points", "ahu-1.nope"], "device 'ahu-1' has no point 'nope' (points: t, run, mode"),
        (["--points", "boiler.t"], "no device 'boiler'"),
        (["--device", "boiler"], "devices: ahu-1, ch-1"),
    ],
)
def test_export_errors_are_one_line(store, args: list[str], message: str) -> None:
    path, _ = store
    one_error(run("export", "--store", str(path), *args), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterdy"], "'--since': 'yesterdy': expected now, today, yesterday, a"),
        (["--until", "90"], "'--until': '90': a bare number is ambiguous: write 90s or 90m"),
        (["--since", "30m1h"], "'--since': '30m1h': write the units from the largest to"),
        (["--since", "1h", "--until", "2h"], "must be before --until"),
    ],
)
def test_a_time_that_is_none_is_a_usage_error(store, args: list[str], message: str) -> None:
    """Exit 2 (click's usage error), one line, for export and trend alike."""
    path, _ = store
    for command in (["export"], ["trend", "ahu-1.t"]):
        one_error(run(*command, "--store", str(path), *args), message, code=2)


def test_store_errors_are_one_line(store, tmp_path: Path) -> None:
    path, _ = store
    one_error(run("export", "--store", str(tmp_path / "none.db")), "no edge-agent store at")
    text = tmp_path / "site.yaml"
    text.write_text("site: {id: x}\n")
    one_error(run("export", "--store", str(text)), "is not an edge-agent store")
    one_error(run("export", "--config", str(text)), "site.yaml")  # invalid configuration
    one_error(run("export", "--config", str(tmp_path / "nope.yaml")), "nope.yaml")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 7")
    one_error(run("trend", "ahu-1.t", "--store", str(path)), "newer edge-agent")


@pytest.mark.skipif(Path(SITE_CONFIG).exists(), reason="a real config here")
def test_without_config_or_store_the_default_config_is_named() -> None:
    one_error(run("export"), f"no configuration at {SITE_CONFIG}")


def test_trend_in_the_terminal(store) -> None:
    path, _ = store
    done = run("trend", "ch-1.t", "--store", str(path), "--since", "2h")
    assert done.returncode == 0, done.stderr
    assert "ch-1.t" in done.stdout and "\x1b[" not in done.stdout  # no colour in a pipe
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("ch-1.t: 30 readings from ")
    assert "min 20.0, max 22.9, last 22.9" in summary  # 4 significant digits, one decimal
    bad = run("trend", "ahu-1.t", "--store", str(path), "--since", "2h")
    assert "; 1 without a value" in bad.stdout


def test_trend_to_png(store, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path, _ = store
    png = tmp_path / "t.png"
    done = run("trend", "ch-1.t", "--store", str(path), "--since", "2h", "--png", str(png))
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert f"wrote {png}" in done.stderr and done.stdout == ""


def test_trend_png_without_matplotlib_says_what_to_install(store, tmp_path: Path) -> None:
    path, _ = store
    hide = tmp_path / "hide"
    (hide / "matplotlib").mkdir(parents=True)
    (hide / "matplotlib" / "__init__.py").write_text("raise ImportError('hidden for a test')\n")
    done = run(
        "trend", "ch-1.t", "--store", str(path), "--png", str(tmp_path / "t.png"),
        env={"PYTHONPATH": str(hide)},
    )  # fmt: skip
    one_error(done, "pip install edge-agent[charts]")
    assert not (tmp_path / "t.png").exists()


def test_trend_errors(store) -> None:
    path, _ = store
    one_error(run("trend", "ch-1.mode", "--store", str(path), "--since", "2h"), "text values")
    one_error(run("trend", "ch-1.t", "--store", str(path), "--since", "3d", "--until", "2d"),
              "no readings between")  # fmt: skip
    one_error(run("trend", "t", "--store", str(path)), "write it as DEVICE.POINT")


def test_commands_are_registered() -> None:
    done = run("--help")
    assert done.returncode == 0
    assert "export" in done.stdout and "trend" in done.stdout


@pytest.mark.parametrize("span_s", [90, 1800, 3 * 86400])
def test_chart_ticks_are_labelled_once_and_the_axis_has_the_unit(
    span_s: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short spans once showed "11-24 08:00" five times (the label had no seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_agent.cli.history import _plot_png, time_ticks
    from edge_agent.cli.status_view import PointMeta

    start = 1764892800.0
    xs = [start + span_s * i / 29 for i in range(30)]
    ys = [7.0 + 0.1 * i for i in range(30)]
    _ticks, labels = time_ticks(xs)  # the terminal chart's
    assert len(labels) == len(set(labels)) >= 2
    figures: list = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at it
    _plot_png("ch-1.t", xs, ys, tmp_path / "t.png", PointMeta("degC", 1))
    axes = figures[0].axes[0]
    shown = [t.get_text() for t in axes.get_xticklabels() if t.get_text()]
    assert len(shown) == len(set(shown)) >= 2, shown
    assert axes.get_ylabel() == "degC"
    figures[0].clf()

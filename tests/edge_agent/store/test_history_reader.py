"""HistoryReader: read-only access to the store, with the agent running or stopped."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.points import Batch, Quality, Reading, wall_ms
from edge_agent.store.history import HistoryError, HistoryReader
from edge_agent.store.outbox import Lane, Outbox, Record, TrafficClass
from tests.edge_agent.store.writer import WRITER


def poll(device: str, ts: int, i: int) -> Record:
    readings = (
        Reading("t", round(20 + 0.1 * i, 1), ts),
        Reading("run", i % 2 == 0, ts),
        Reading("old", 7, ts - 3000, Quality.STALE),
        Reading.bad("kw", "timeout", ts),
    )
    return Record(TrafficClass.TELEMETRY, device, ts, batch=Batch(device, ts, readings))


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, int]:
    """A store the real Outbox filled: 10 polls of two devices, 6 of them delivered."""
    path = tmp_path / "outbox.db"
    now = wall_ms()
    box = Outbox(path, 10**12, 86_400.0)
    box.append([poll(d, now - 10_000 + 1000 * i, i) for i in range(10) for d in ("ahu", "ch")])
    box.mark_boundary()
    box.ack([r.id for r in box.lease(Lane.BACKLOG, 12)])
    box.close()
    return path, now


def test_readings_of_points_devices_and_everything(store) -> None:
    path, now = store
    with HistoryReader(path) as reader:
        t = list(reader.readings(now - 10_000, now, ["ahu.t"]))
        assert t == [("ahu.t", now - 10_000 + 1000 * i, round(20 + 0.1 * i, 1), "good")
                     for i in range(10)]  # fmt: skip
        both = list(reader.readings(now - 3000, now - 1000, ["ch.old", "ahu.kw"]))
        assert both == [
            ("ahu.kw", now - 3000, None, "bad"),
            ("ch.old", now - 6000, 7, "stale"),  # the reading's own (source) timestamp
            ("ahu.kw", now - 2000, None, "bad"),
            ("ch.old", now - 5000, 7, "stale"),
        ]
        device = list(reader.readings(now - 10_000, now, devices=["ch"]))
        assert len(device) == 40 and {ref.split(".")[0] for ref, *_ in device} == {"ch"}
        mixed = list(reader.readings(now - 10_000, now, ["ahu.t"], devices=["ch"]))
        assert len(mixed) == 50
        assert len(list(reader.readings(0, now + 1))) == 80
        assert list(reader.readings(now, now + 1000)) == []
        assert reader.devices() == ["ahu", "ch"]
        assert reader.points("ahu") == ["t", "run", "old", "kw"]
        assert reader.span() == (now - 10_000, now - 1000)


@pytest.mark.parametrize(
    ("points", "devices", "message"),
    [
        (["ahu.nope"], [], "device 'ahu' has no point 'nope' (points: t, run, old, kw)"),
        (["boiler.t"], [], "no device 'boiler'"),
        ([], ["boiler"], "devices: ahu, ch"),
        (["t"], [], "write it as DEVICE.POINT"),
    ],
)
def test_unknown_points_are_named(store, points, devices, message) -> None:
    path, _ = store
    with HistoryReader(path) as reader, pytest.raises(HistoryError, match=re.escape(message)):
        reader.check(points, devices)


def test_files_that_are_not_a_readable_store(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=f"no edge-agent store at {tmp_path / 'x.db'}"):
        HistoryReader(tmp_path / "x.db")
    with pytest.raises(HistoryError, match="is a directory"):
        HistoryReader(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 10)
    with pytest.raises(HistoryError, match=r"not an edge-agent store \(not an SQLite database"):
        HistoryReader(text)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(HistoryError, match="an SQLite database but not an edge-agent store"):
        HistoryReader(other)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 32)
    with pytest.raises(HistoryError, match=r"corrupt\.db is not a readable edge-agent store"):
        HistoryReader(corrupt)


def test_a_newer_schema_is_refused_with_advice(store) -> None:
    path, _ = store
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(HistoryError, match=r"newer edge-agent \(store schema 99.*upgrade"):
        HistoryReader(path)


def test_reading_a_stopped_agents_store_changes_no_file(store) -> None:
    path, now = store
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in path.parent.iterdir()}
    assert not path.with_name("outbox.db-wal").exists()
    with HistoryReader(path) as reader:
        assert len(list(reader.readings(0, now))) == 80
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in path.parent.iterdir()}
    # No -wal/-shm left behind (made by root they would lock the agent out of its store).
    assert after == before


def test_reads_alongside_a_running_writer(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "0.002"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        time.sleep(0.3)
        counts = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with HistoryReader(path) as reader:
                values = [v for _, _, v, _ in reader.readings(0, wall_ms() + 1000, ["d.p0"])]
            # A consistent snapshot: every poll from the first, none missing or doubled,
            # whether delivered (history) or not.
            assert values == list(range(len(values)))
            counts.append(len(values))
        assert writer.poll() is None  # the writer was never blocked into failing
        assert len(counts) > 3 and counts[-1] > counts[0] > 0
    finally:
        writer.kill()
        writer.wait()

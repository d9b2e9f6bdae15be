"""Outbox files of older schemas (1: before history; 2: before pending eviction
announcements) are migrated in place."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge_agent.points import Batch, Reading, wall_ms
from edge_agent.store import codec
from edge_agent.store.history import HistoryReader
from edge_agent.store.outbox import (
    SCHEMA_VERSION,
    Lane,
    Outbox,
    Record,
    StoreError,
    TrafficClass,
)

# The schema as version 1 of the agent created it (edge_agent/store/outbox.py before the
# history): no `sent` column, four counters.
V1_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS schemas (
    id INTEGER PRIMARY KEY,
    points TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    cls INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    n_points INTEGER NOT NULL,
    schema_id INTEGER,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (id) WHERE cls > 0;
CREATE TABLE IF NOT EXISTS counters (
    cls INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    points INTEGER NOT NULL,
    evicted_rows INTEGER NOT NULL,
    evicted_points INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters VALUES (0, 0, 0, 0, 0), (1, 0, 0, 0, 0), (2, 0, 0, 0, 0),
    (3, 0, 0, 0, 0);
PRAGMA user_version = 1;
COMMIT;
"""


def write_v1(path: Path, now: int) -> list[Batch]:
    """A v1 store as the old agent left it: seq 1-3 of ahu-1 were acked (deleted), 4-8 wait,
    one event waits, and 7 rows were once evicted."""
    batches = [
        Batch("ahu-1", now - 10_000 + 1000 * i, tuple(
            Reading(p, round(20 + i * 0.1 + j, 1), now - 10_000 + 1000 * i)
            for j, p in enumerate(("t", "rh"))
        ))
        for i in range(8)
    ]  # fmt: skip
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(V1_SCHEMA)
        db.execute("INSERT INTO streams VALUES (1, 0, 'ahu-1', 8), (2, 1, 'event', 1)")
        db.execute("INSERT INTO schemas VALUES (1, ?)", (json.dumps(["t", "rh"]),))
        for seq, batch in enumerate(batches, 1):
            if seq <= 3:
                continue
            _schema, body = codec.encode(batch.readings, batch.ts)
            db.execute(
                "INSERT INTO outbox (cls, stream, seq, ts, n_points, schema_id, body) "
                "VALUES (0, 1, ?, ?, 2, 1, ?)",
                (seq, batch.ts, body),
            )
        db.execute(
            "INSERT INTO outbox (cls, stream, seq, ts, n_points, schema_id, body) "
            "VALUES (1, 2, 1, ?, 0, NULL, ?)",
            (now, b'{"type":"device_down"}'),
        )
        db.execute("UPDATE counters SET rows = 5, points = 10, evicted_rows = 7, "
                   "evicted_points = 14 WHERE cls = 0")  # fmt: skip
        db.execute("UPDATE counters SET rows = 1 WHERE cls = 1")
    return batches


def test_a_v1_file_is_migrated_in_place_and_carries_on(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    now = wall_ms()
    batches = write_v1(path, now)
    box = Outbox(path, 10**12, 86_400.0)
    try:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stats = box.stats()
        assert (stats.backlog_rows, stats.backlog_points) == (6, 10)
        assert (stats.evicted_rows, stats.evicted_points) == (7, 14)
        assert (stats.history_rows, stats.history_evicted_rows) == (0, 0)
        # Everything in the v1 file is unsent: backlog, in order, with its seq and content.
        backlog = box.lease(Lane.BACKLOG, 100)
        assert [(r.seq, r.batch) for r in backlog] == list(enumerate(batches, 1))[3:]
        assert [r.payload for r in box.lease(Lane.PRIORITY, 10)] == [b'{"type":"device_down"}']
        assert box.append([_record(now)])[0].seq == 9  # the seq counter carries on
        box.ack([r.id for r in backlog])
        stats = box.stats()
        assert (stats.history_rows, stats.history_points, stats.backlog_rows) == (5, 10, 2)
        assert [r.seq for r in box.history(0, now + 1)] == [4, 5, 6, 7, 8, 9]
    finally:
        box.close()
    Outbox(path, 10**12, 86_400.0).close()  # opening a current file again migrates nothing


def test_a_v2_file_gets_the_evictions_table_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, 10**12, 86_400.0)
    now = wall_ms()
    old_announcement = Record(TrafficClass.EVENT, "event", now, payload=b'{"type":"data_evicted"}')
    box.append([_record(now), old_announcement, _record(now + 1)])
    box.close()
    with sqlite3.connect(path) as db:  # what version 2 had: no evictions table, 4 counters
        db.executescript(
            "DROP TABLE evictions; DELETE FROM counters WHERE cls = 4; PRAGMA user_version = 2;"
        )
    box = Outbox(path, 10**12, 86_400.0)
    try:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
            assert db.execute("SELECT count(*) FROM evictions").fetchone()[0] == 0
        stats = box.stats()
        assert stats.classes["eviction_notice"].rows == 0 and stats.unannounced_rows == 0
        assert [r.seq for r in box.lease(Lane.BACKLOG, 10)] == [1, 2]
        assert [r.payload for r in box.lease(Lane.PRIORITY, 10)] == [b'{"type":"data_evicted"}']
    finally:
        box.close()


def test_a_v1_file_can_be_read_before_it_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    now = wall_ms()
    batches = write_v1(path, now)
    with HistoryReader(path) as reader:
        assert reader.version == 1
        got = list(reader.readings(0, now + 1, ["ahu-1.t"]))
    assert got == [("ahu-1.t", b.ts, b.readings[0].value, "good") for b in batches[3:]]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1  # untouched


def test_a_failed_migration_leaves_the_v1_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    write_v1(path, wall_ms())
    with sqlite3.connect(path) as db:  # something in the way of the new column
        db.execute("CREATE TABLE blocker (x)")
        db.execute("CREATE INDEX outbox_history ON blocker (x)")
    with pytest.raises(StoreError, match=str(path)):
        Outbox(path, 10**12, 86_400.0)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = [row[1] for row in db.execute("PRAGMA table_info(outbox)")]
        assert "sent" not in columns


def _record(now: int):
    from edge_agent.store.outbox import Record, TrafficClass

    batch = Batch("ahu-1", now, (Reading("t", 21.0, now), Reading("rh", 40.0, now)))
    return Record(TrafficClass.TELEMETRY, "ahu-1", now, batch=batch)

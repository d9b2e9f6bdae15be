"""The SQLite outbox, on real database files."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_agent.points import Batch, Quality, Reading, wall_ms
from edge_agent.store import outbox as outbox_module
from edge_agent.store.outbox import (
    Lane,
    Outbox,
    Record,
    Row,
    StoreError,
    StoreFull,
    TrafficClass,
)
from tests.edge_agent.store.conftest import BIG, DAY, evicted_events
from tests.filesystems import fill_disk


def tel(device: str, i: int = 0, n_points: int = 5, ts: int | None = None) -> Record:
    ts = wall_ms() if ts is None else ts
    readings = tuple(Reading(f"p{j}", round(20 + 0.1 * (i + j), 1), ts) for j in range(n_points))
    return Record(TrafficClass.TELEMETRY, device, ts, batch=Batch(device, ts, readings))


_random = random.Random(20261124)


def noisy(device: str, n_points: int = 500) -> Record:
    """Telemetry that does not compress (~4 kB a row): fills a budget quickly."""
    ts = wall_ms()
    readings = tuple(Reading(f"p{j}", _random.random(), ts) for j in range(n_points))
    return Record(TrafficClass.TELEMETRY, device, ts, batch=Batch(device, ts, readings))


def msg(cls: TrafficClass, text: str = "x", size: int = 0, stream: str | None = None) -> Record:
    stream = stream or {TrafficClass.ALARM: "alarm", TrafficClass.COMMAND_RESULT: "cmd/ack"}.get(
        cls, "event"
    )
    payload = json.dumps({"type": text, "pad": "p" * size}).encode()
    return Record(cls, stream, wall_ms(), payload=payload)


def ids(rows: list[Row]) -> list[int]:
    return [row.id for row in rows]


def db_rows(path: Path, where: str = "1") -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(
            f"SELECT s.name, o.cls, o.seq FROM outbox o JOIN streams s ON s.id = o.stream "
            f"WHERE {where} ORDER BY o.id"
        ).fetchall()


# -- append and seq ------------------------------------------------------------------------


def test_append_gives_each_stream_its_own_seq(open_outbox) -> None:
    box = open_outbox()
    rows = box.append([tel("ahu"), tel("chiller"), msg(TrafficClass.EVENT), tel("ahu")])
    assert [(r.stream, r.seq) for r in rows] == [
        ("ahu", 1),
        ("chiller", 1),
        ("event", 1),
        ("ahu", 2),
    ]
    assert ids(rows) == sorted(ids(rows))
    assert rows[0].n_points == 5 and rows[2].n_points == 0
    assert box.append([msg(TrafficClass.EVENT)])[0].seq == 2


def test_a_device_and_a_topic_of_the_same_name_count_separately(open_outbox) -> None:
    box = open_outbox()
    rows = box.append([tel("event"), msg(TrafficClass.EVENT, stream="event"), tel("event")])
    assert [r.seq for r in rows] == [1, 1, 2]


def test_leased_telemetry_decodes_to_the_batch_appended(open_outbox) -> None:
    box = open_outbox()
    ts = wall_ms()
    readings = (
        Reading("t", 21.3, ts),
        Reading("run", True, ts),
        Reading("kwh", 2**40 + 7, ts),
        Reading("old", 4.5, ts - 30_000, Quality.STALE),
        Reading.bad("p", "timeout", ts),
    )
    record = Record(TrafficClass.TELEMETRY, "ahu", ts, batch=Batch("ahu", ts, readings))
    (appended,) = box.append([record])
    (leased,) = box.lease(Lane.LIVE, 10)
    assert leased == appended
    assert leased.batch == record.batch


def test_seq_continues_across_close_and_reopen(open_outbox, tmp_path: Path) -> None:
    box = open_outbox()
    box.append([tel("ahu", i) for i in range(3)] + [msg(TrafficClass.ALARM)])
    box.close()
    box = open_outbox()
    rows = box.append([tel("ahu"), msg(TrafficClass.ALARM)])
    assert [r.seq for r in rows] == [4, 2]
    # What was committed before the restart is backlog; nothing is in flight after it.
    assert [r.seq for r in box.lease(Lane.BACKLOG, 10)] == [1, 2, 3]
    assert [r.seq for r in box.lease(Lane.LIVE, 10)] == [4]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (Record(TrafficClass.TELEMETRY, "d", 1), "batch"),
        (Record(TrafficClass.EVENT, "event", 1), "payload"),
        (Record(TrafficClass.TELEMETRY, "other", 1, batch=Batch("d", 1, ())), "stream and ts"),
    ],
)
def test_malformed_records_are_refused_and_nothing_is_written(
    open_outbox, record: Record, message: str
) -> None:
    box = open_outbox()
    with pytest.raises(ValueError, match=message):
        box.append([tel("d"), record])
    assert box.stats().backlog_rows == 0
    assert box.append([tel("d")])[0].seq == 1


# -- leasing -------------------------------------------------------------------------------


def test_each_lane_leases_its_rows_in_order(open_outbox) -> None:
    box = open_outbox()
    before = box.append([tel("a"), msg(TrafficClass.EVENT), tel("b"), msg(TrafficClass.ALARM)])
    box.mark_boundary()
    after = box.append([tel("a"), msg(TrafficClass.COMMAND_RESULT), tel("b")])
    assert ids(box.lease(Lane.PRIORITY, 10)) == [before[1].id, before[3].id, after[1].id]
    assert ids(box.lease(Lane.BACKLOG, 10)) == [before[0].id, before[2].id]
    assert ids(box.lease(Lane.LIVE, 10)) == [after[0].id, after[2].id]
    assert all(box.lease(lane, 10) == [] for lane in Lane)


def test_the_boundary_is_a_commit_not_a_poll_time(open_outbox) -> None:
    """Rows committed before the CONNACK are backlog however recent their poll; rows
    committed after it are live however old (a poll that waited in memory)."""
    box = open_outbox()
    now = wall_ms()
    before = box.append([tel("a", 0, ts=now - 60_000), tel("b", 0, ts=now - 10)])
    at_connack = box.committed_id()
    assert at_connack == before[-1].id
    after = box.append([tel("a", 1, ts=now - 30_000), tel("b", 1, ts=now)])
    box.mark_boundary(at_connack)
    assert ids(box.lease(Lane.BACKLOG, 10)) == ids(before)
    assert ids(box.lease(Lane.LIVE, 10)) == ids(after)


def test_committed_id_moves_only_with_a_commit(open_outbox) -> None:
    box = open_outbox()
    assert box.committed_id() == 0
    with pytest.raises(ValueError):
        box.append([tel("a"), Record(TrafficClass.EVENT, "event", 1)])  # refused: no commit
    assert box.committed_id() == 0
    rows = box.append([tel("a"), msg(TrafficClass.EVENT)])
    assert box.committed_id() == rows[-1].id
    box.ack([rows[0].id])
    assert box.committed_id() == rows[-1].id
    box.close()
    assert open_outbox().committed_id() == rows[-1].id


def test_a_row_is_never_leased_twice(open_outbox) -> None:
    box = open_outbox()
    rows = box.append([tel("a", i) for i in range(10)])
    first, second, third = box.lease(Lane.LIVE, 4), box.lease(Lane.LIVE, 4), box.lease(Lane.LIVE, 4)
    assert ids(first) + ids(second) + ids(third) == ids(rows)
    assert box.stats().in_flight == 10


def test_limit_zero_leases_nothing(open_outbox) -> None:
    box = open_outbox()
    box.append([tel("a")])
    assert box.lease(Lane.LIVE, 0) == []
    assert len(box.lease(Lane.LIVE, 1)) == 1


def test_ack_deletes_in_one_go(open_outbox, tmp_path: Path) -> None:
    box = open_outbox()
    rows = box.append([tel("a", i) for i in range(5)] + [msg(TrafficClass.EVENT)])
    leased = box.lease(Lane.LIVE, 3)
    box.ack([*ids(leased), rows[-1].id, 999_999])  # an unknown id is harmless
    # The event is deleted; acknowledged telemetry stays as history (sent = 1).
    assert [seq for _, _, seq in db_rows(tmp_path / "outbox.db", "sent = 0")] == [4, 5]
    assert [seq for _, _, seq in db_rows(tmp_path / "outbox.db", "sent = 1")] == [1, 2, 3]
    assert db_rows(tmp_path / "outbox.db", "cls > 0") == []
    stats = box.stats()
    assert (stats.backlog_rows, stats.backlog_points, stats.in_flight) == (2, 10, 0)
    assert (stats.history_rows, stats.history_points) == (3, 15)
    assert ids(box.lease(Lane.LIVE, 10)) == ids(rows[3:5])


def test_requeued_rows_come_back_first_and_in_order(open_outbox) -> None:
    box = open_outbox()
    rows = box.append([tel("a", i) for i in range(8)])
    leased = box.lease(Lane.LIVE, 5)
    box.requeue([leased[3].id, leased[1].id])
    assert ids(box.lease(Lane.LIVE, 3)) == [rows[1].id, rows[3].id, rows[5].id]
    box.requeue()  # disconnect: everything in flight is ready again
    assert box.stats().in_flight == 0
    assert ids(box.lease(Lane.LIVE, 100)) == ids(rows)


def test_requeue_of_unleased_or_acked_rows_does_nothing(open_outbox) -> None:
    box = open_outbox()
    rows = box.append([tel("a", i) for i in range(3)])
    leased = box.lease(Lane.LIVE, 2)
    box.ack([leased[0].id])
    box.requeue([leased[0].id, rows[2].id, 12345])
    assert ids(box.lease(Lane.LIVE, 10)) == [rows[2].id]


def test_live_rows_in_flight_at_a_reconnect_become_backlog(open_outbox) -> None:
    box = open_outbox()
    box.mark_boundary()
    rows = box.append([tel("a", i) for i in range(4)])
    in_flight = box.lease(Lane.LIVE, 2)
    box.mark_boundary()  # the rows stay in flight; the backlog scan must skip them
    assert ids(box.lease(Lane.BACKLOG, 10)) == ids(rows[2:])
    box.requeue(ids(in_flight))
    assert ids(box.lease(Lane.BACKLOG, 10)) == ids(rows[:2])
    new = box.append([tel("a")])
    assert ids(box.lease(Lane.LIVE, 10)) == ids(new)


def test_priority_rows_are_leased_whatever_their_age(open_outbox) -> None:
    box = open_outbox()
    old = box.append([msg(TrafficClass.ALARM)])
    box.close()
    box = open_outbox()
    box.mark_boundary()
    new = box.append([msg(TrafficClass.EVENT)])
    assert ids(box.lease(Lane.PRIORITY, 10)) == ids(old) + ids(new)


# -- crashes and corrupt files -------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edge_agent.points import Batch, Reading, wall_ms
    from edge_agent.store.outbox import Outbox, Record, TrafficClass

    box = Outbox(Path(sys.argv[1]), 10**12, 86400.0)
    i = 0
    while True:
        i += 1
        ts = wall_ms()
        records = [
            Record(TrafficClass.TELEMETRY, f"d{k}", ts, batch=Batch(
                f"d{k}", ts, tuple(Reading(f"p{j}", i + j * 0.5, ts) for j in range(50))))
            for k in range(3)
        ] + [Record(TrafficClass.EVENT, "event", ts, payload=b'{"i": %d}' % i)]
        rows = box.append(records)
        if i % 3 == 0:
            box.ack([rows[0].id])  # acked rows leave gaps that are not losses
        print(" ".join(f"{r.stream}:{r.seq}" for r in rows), flush=True)
    """
)


def test_sigkill_mid_append_loses_no_committed_row_and_never_reuses_a_seq(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    reported: list[str] = []
    deadline = time.monotonic() + 10
    while len(reported) < 150 and time.monotonic() < deadline:
        reported.append(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert len(reported) >= 150, "the writer did not start"

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        last_seq = dict(db.execute("SELECT name, last_seq FROM streams"))
    stored: dict[str, list[int]] = {}
    for name, _cls, seq in db_rows(path):
        stored.setdefault(name, []).append(seq)
    for name, seqs in stored.items():
        # Committed rows are contiguous from 1 to last_seq, except d0's acked multiples of 3.
        missing = set(range(1, last_seq[name] + 1)) - set(seqs)
        assert seqs == sorted(seqs)
        assert all(name == "d0" and seq % 3 == 0 for seq in missing), (name, missing)
    for line in reported:  # everything append() returned was committed
        for item in line.split()[1:]:  # (d0 may have been acked)
            name, seq = item.split(":")
            assert int(seq) in stored[name]
    box = Outbox(path, BIG, DAY)
    try:
        assert box.append([tel("d1")])[0].seq == last_seq["d1"] + 1
    finally:
        box.close()


def test_a_file_that_is_not_a_database_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is a log file, not a database\n" * 100)
    with pytest.raises(StoreError, match=str(path)):
        Outbox(path, BIG, DAY)
    assert path.read_bytes().startswith(b"this is a log file")


def test_a_corrupt_database_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    with pytest.raises(StoreError, match=str(path)):
        Outbox(path, BIG, DAY)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    Outbox(path, BIG, DAY).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        Outbox(path, BIG, DAY)


def test_wal_mode_and_full_sync(open_outbox, tmp_path: Path) -> None:
    box = open_outbox()
    box.append([tel("a")])
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == outbox_module.SCHEMA_VERSION
    with pytest.raises(ValueError, match="synchronous"):
        open_outbox(synchronous="OFF")


# -- eviction ------------------------------------------------------------------------------


def test_over_budget_the_oldest_telemetry_goes_and_is_reported(open_outbox, tmp_path) -> None:
    budget = 300_000
    box = open_outbox(budget, identity={"site": "s1", "gateway": "g1"})
    keep = box.append([msg(TrafficClass.EVENT), msg(TrafficClass.ALARM),
                       msg(TrafficClass.COMMAND_RESULT)])  # fmt: skip
    appended: dict[str, list[int]] = {}
    for _ in range(150):
        for row in box.append([noisy("a"), noisy("b")]):
            appended.setdefault(row.stream, []).append(row.seq)
        assert box.stats().used_bytes <= budget
    stats = box.stats()
    assert stats.evicted_rows > 0 and stats.classes["telemetry"].evicted_rows == stats.evicted_rows
    assert stats.used_bytes <= budget
    path = tmp_path / "outbox.db"
    assert [seq for *_, seq in db_rows(path, "cls > 0 AND seq = 1")] == [1, 1, 1]
    events = evicted_events(box)
    assert events and all(e["reason"] == "disk_budget" for e in events)
    assert events[0]["site"] == "s1" and "disk_full" not in events[0]
    for device in ("a", "b"):
        left = [seq for name, _, seq in db_rows(path, "cls = 0") if name == device]
        assert left == appended[device][-len(left) :]  # a suffix survives
        gone = {s for e in events for s in range(e["streams"][device]["from_seq"],
                                                 e["streams"][device]["to_seq"] + 1)}  # fmt: skip
        assert gone == set(appended[device][: -len(left)])  # exactly what is missing
        rows = sum(e["streams"][device]["rows"] for e in events)
        assert rows == len(gone)
    total = sum(e["classes"]["telemetry"]["points"] for e in events)
    assert total == stats.evicted_points == 500 * stats.evicted_rows
    assert keep[0].seq == 1  # events, alarms and command results all survived


def test_nothing_but_telemetry_goes_while_telemetry_remains_even_in_flight(open_outbox) -> None:
    box = open_outbox(200_000)
    box.append([noisy("a") for _ in range(30)])
    in_flight = box.lease(Lane.LIVE, 1000)
    for _ in range(50):  # events and alarms alone now exceed the budget
        box.append([msg(TrafficClass.EVENT, size=3000), msg(TrafficClass.ALARM, size=500)])
    stats = box.stats()
    assert stats.evicted_rows == 0 and stats.used_bytes > 200_000  # nothing may go yet
    box.ack(ids(in_flight))
    box.append([msg(TrafficClass.EVENT)])
    stats = box.stats()
    assert stats.used_bytes <= 200_000
    assert stats.classes["event"].evicted_rows > 0
    assert stats.classes["alarm"].evicted_rows == 0  # events go first, alarms later


def test_alarms_go_before_command_results(open_outbox) -> None:
    box = open_outbox(150_000)
    for _ in range(60):
        box.append(
            [msg(TrafficClass.COMMAND_RESULT, size=2000), msg(TrafficClass.ALARM, size=2000)]
        )
    stats = box.stats()
    # Events (only the data_evicted ones) went first, then alarms; command results stay.
    assert stats.classes["alarm"].evicted_rows > 0
    assert stats.classes["command_result"].evicted_rows == 0


def test_eviction_counters_survive_a_restart(open_outbox) -> None:
    box = open_outbox(150_000)
    for _ in range(60):
        box.append([noisy("a")])
    before = box.stats()
    assert before.evicted_points > 0
    box.close()
    after = open_outbox(150_000).stats()
    assert (after.evicted_rows, after.evicted_points) == (
        before.evicted_rows,
        before.evicted_points,
    )
    assert (after.backlog_rows, after.backlog_points) == (
        before.backlog_rows,
        before.backlog_points,
    )


def test_telemetry_past_retention_is_evicted_and_reported(open_outbox) -> None:
    box = open_outbox(retention=3600)
    now = wall_ms()
    old = box.append([tel("a", ts=now - 7_200_000), tel("a", ts=now - 5_000_000),
                      msg(TrafficClass.EVENT)])  # fmt: skip
    # The next append runs the check (at most once a minute; the first one is due).
    box._retention_due = 0.0
    fresh = box.append([tel("a", ts=now)])
    assert ids(box.lease(Lane.LIVE, 10)) == ids(fresh)
    events = evicted_events(box)
    (event,) = events
    assert event["reason"] == "retention"
    assert event["streams"]["a"] == {"from_seq": 1, "to_seq": 2, "from_ts": now - 7_200_000,
                                     "to_ts": now - 5_000_000, "rows": 2, "points": 10,
                                     "ranges": [[1, 2]]}  # fmt: skip
    assert old[2].seq == 1  # the event is not subject to retention
    assert box.evict() is None  # nothing more to do


def test_evict_reports_what_it_did(open_outbox) -> None:
    box = open_outbox(BIG)
    for _ in range(40):
        box.append([noisy("a")])
    box.budget_bytes = 100_000
    report = box.evict()
    assert report is not None and report.used_after <= 100_000 < report.used_before
    assert sum(g.streams["a"].rows for g in report.gaps) == box.stats().evicted_rows


def test_stats(open_outbox) -> None:
    box = open_outbox(10_000_000)
    now = wall_ms()
    box.append([tel("a", ts=now - 1000), tel("b", ts=now, n_points=7), msg(TrafficClass.ALARM)])
    box.lease(Lane.LIVE, 1)
    stats = box.stats()
    assert (stats.backlog_rows, stats.backlog_points, stats.in_flight) == (3, 12, 1)
    assert stats.classes["telemetry"].rows == 2 and stats.classes["alarm"].rows == 1
    assert stats.oldest_ts == now - 1000 == stats.classes["telemetry"].oldest_ts
    assert stats.classes["event"].oldest_ts is None
    assert 0 < stats.used_bytes <= stats.limit_bytes == stats.budget_bytes == 10_000_000
    assert stats.evicted_rows == 0


# -- a full disk ---------------------------------------------------------------------------


def test_disk_full_evicts_a_slice_and_retries(open_outbox, monkeypatch) -> None:
    monkeypatch.setattr(outbox_module, "DISK_FULL_SLICE", 50_000)
    box = open_outbox()
    box.append([msg(TrafficClass.ALARM)])
    # SQLite's page limit raises exactly what a full filesystem raises.
    box._db.execute("PRAGMA max_page_count = 100")
    for _ in range(100):
        box.append([noisy("a")])
    stats = box.stats()
    assert stats.evicted_rows > 0 and stats.classes["alarm"].rows == 1
    events = evicted_events(box)
    assert events and all(e["disk_full"] and e["reason"] == "disk_budget" for e in events)


def test_disk_full_that_eviction_cannot_cure_raises_store_full(open_outbox) -> None:
    box = open_outbox()
    box.append([tel("a", i) for i in range(10)])
    box._db.execute("PRAGMA max_page_count = 30")
    with pytest.raises(StoreFull, match="disk is full"):
        box.append([msg(TrafficClass.ALARM, size=200_000)])
    assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert box.append([tel("a")])[0].seq == 11  # nothing half-written


def test_a_disk_smaller_than_the_budget_is_never_filled(small_filesystem: Path) -> None:
    box = Outbox(small_filesystem / "outbox.db", BIG, DAY)
    try:
        for _ in range(400):
            box.append([noisy("a") for _ in range(10)])  # 16 MB in all
        stats = box.stats()
        assert stats.evicted_rows > 0 and stats.limit_bytes < stats.budget_bytes
        assert os.statvfs(small_filesystem).f_bavail > 0
        events = evicted_events(box)
        assert events and all(e["disk_full"] for e in events)
    finally:
        box.close()


@pytest.mark.parametrize("settled", [False, True], ids=["file-growing", "file-settled"])
def test_a_disk_filled_by_someone_else(small_filesystem: Path, settled: bool) -> None:
    """While the file grows, its new pages wait in the WAL for a checkpoint that now has no
    room: StoreFull, until space returns. Once it has settled (evicting inside its own
    pages), the outbox carries on. Either way: no corruption, no seq skipped or reused."""
    path = small_filesystem / "outbox.db"
    box = Outbox(path, BIG, DAY)
    try:
        seqs = [row.seq for _ in range(100) for row in box.append([noisy("a", 200)])]
        while settled and box.stats().evicted_rows == 0:
            seqs += [row.seq for row in box.append([noisy("a") for _ in range(10)])]
        fill_disk(small_filesystem / "filler")
        failures = []
        for _ in range(300):
            try:
                seqs += [row.seq for row in box.append([noisy("a", 200)])]
            except StoreFull as exc:
                failures.append(str(exc))
        if settled:
            assert not failures
        else:
            assert failures and str(path) in failures[0] and "disk is full" in failures[0]
        assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (small_filesystem / "filler").unlink()
        seqs += [row.seq for row in box.append([noisy("a", 200)])]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        box.close()


def test_an_ack_on_a_full_disk_makes_room_like_an_append(small_filesystem: Path) -> None:
    """Issue 10 #14: with 0 bytes free the ack's COMMIT failed ('database or disk is full')
    and, unlike an append, was neither retried nor given room: the uplink crashed."""
    box = Outbox(small_filesystem / "outbox.db", BIG, DAY)
    try:
        while box.stats().evicted_rows == 0:  # an outage fills the disk: the file settles
            box.append([noisy("a") for _ in range(10)])
        fill_disk(small_filesystem / "filler")
        box.mark_boundary()  # the broker is back: publish, ack, poll on
        acked = 0
        for _ in range(300):
            box.append([noisy("a")])
            leased = box.lease(Lane.LIVE, 100) + box.lease(Lane.BACKLOG, 100)
            box.ack(ids(leased))  # raised StoreError about one time in ten
            acked += len(leased)
        stats = box.stats()
        assert stats.in_flight == 0 and stats.history_rows + stats.history_evicted_rows == acked
        assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        box.close()


def test_an_ack_that_finds_no_room_raises_store_full_and_keeps_the_rows(open_outbox) -> None:
    box = open_outbox()
    rows = box.append([tel("a", i, n_points=3) for i in range(2000)])
    leased = box.lease(Lane.LIVE, 5000)  # all in flight: nothing may be evicted for room
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages}")  # the history index cannot grow
    with pytest.raises(StoreFull, match="the ack still fails"):
        box.ack(ids(leased))
    stats = box.stats()
    assert (stats.in_flight, stats.backlog_rows, stats.evicted_rows) == (2000, 2000, 0)
    assert box.lease(Lane.LIVE, 10) == []  # still leased: not published twice meanwhile
    box._db.execute("PRAGMA max_page_count = 1073741823")
    box.ack(ids(leased))  # the caller's retry, once there is room
    assert box.stats().history_rows == 2000 and box.stats().in_flight == 0
    assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert box.append([tel("a")])[0].seq == rows[-1].seq + 1


def test_a_damaged_row_is_skipped_not_fatal(open_outbox, tmp_path: Path) -> None:
    box = open_outbox()
    rows = box.append([tel("a", i) for i in range(3)])
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        db.execute("UPDATE outbox SET body = x'01ff00' WHERE id = ?", (rows[1].id,))
    assert ids(box.lease(Lane.LIVE, 10)) == [rows[0].id, rows[2].id]

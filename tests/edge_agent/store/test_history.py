"""Delivered telemetry kept as local history: ack, lanes, expiry, budget, queries, backfill."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.points import wall_ms
from edge_agent.store import outbox as outbox_module
from edge_agent.store.outbox import Lane, Outbox, Row, TrafficClass
from tests.edge_agent.store.conftest import evicted_events
from tests.edge_agent.store.test_outbox import DAY, ids, msg, noisy, tel

HOUR_MS = 3_600_000


def deliver(box: Outbox, lane: Lane = Lane.LIVE) -> list[Row]:
    """Lease everything ready in `lane` and ack it, as the uplink does after PUBACKs."""
    rows = box.lease(lane, 100_000)
    box.ack(ids(rows))
    return rows


def sent_flags(path: Path) -> dict[int, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT id, sent FROM outbox WHERE cls = 0").fetchall())


# -- ack and leasing -----------------------------------------------------------------------


def test_acked_telemetry_stays_as_history_and_is_never_leased_again(open_outbox, tmp_path):
    box = open_outbox()
    rows = box.append([tel("a", i) for i in range(4)] + [msg(TrafficClass.ALARM)])
    delivered = deliver(box)
    box.ack([r.id for r in box.lease(Lane.PRIORITY, 10)])
    assert ids(delivered) == ids(rows[:4])
    assert sent_flags(tmp_path / "outbox.db") == dict.fromkeys(ids(rows[:4]), 1)
    stats = box.stats()
    assert (stats.backlog_rows, stats.history_rows, stats.history_points) == (0, 4, 20)
    assert stats.classes["alarm"].rows == 0
    # A disconnect resets every lane's scan to the start: history is not found again.
    box.requeue()
    box.mark_boundary()
    assert all(box.lease(lane, 100) == [] for lane in Lane)
    box.close()
    box = open_outbox()  # nor after a restart
    assert all(box.lease(lane, 100) == [] for lane in Lane)
    assert box.stats().history_rows == 4


def test_a_row_acked_twice_is_history_once(open_outbox) -> None:
    box = open_outbox()
    box.append([tel("a", i) for i in range(3)])
    leased = box.lease(Lane.LIVE, 10)
    box.ack(ids(leased))
    box.ack(ids(leased))  # a second PUBACK after a reconnect and a republish
    stats = box.stats()
    assert (stats.history_rows, stats.history_points, stats.backlog_rows) == (3, 15, 0)


def test_only_unsent_rows_count_in_the_backlog(open_outbox) -> None:
    box = open_outbox()
    now = wall_ms()
    box.append([tel("a", ts=now - 5000), tel("a", ts=now - 4000)])
    deliver(box)
    box.append([tel("a", ts=now - 3000, n_points=7)])
    stats = box.stats()
    assert (stats.backlog_rows, stats.backlog_points) == (1, 7)
    assert stats.oldest_ts == stats.classes["telemetry"].oldest_ts == now - 3000
    assert (stats.history_rows, stats.history_points) == (2, 10)
    assert stats.history_oldest_ts == now - 5000
    assert stats.history_evicted_rows == 0


def test_connection_is_the_store_connection(open_outbox) -> None:
    box = open_outbox()
    box.connection.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, what)")
    box.connection.execute("INSERT INTO audit (what) VALUES ('x')")
    box.append([tel("a")])  # the outbox's own transactions carry on around it
    assert box.connection.execute("SELECT what FROM audit").fetchall() == [("x",)]


def test_history_period_must_be_positive(open_outbox) -> None:
    with pytest.raises(ValueError, match="history"):
        open_outbox(history_s=0)


# -- expiry and the disk budget ------------------------------------------------------------


def test_history_past_its_period_is_deleted_silently(open_outbox) -> None:
    box = open_outbox(retention=DAY, history_s=3600)
    now = wall_ms()
    old = box.append([tel("a", ts=now - 2 * HOUR_MS), tel("b", ts=now - 90 * 60_000)])
    kept = box.append([tel("a", ts=now - 30 * 60_000)])
    deliver(box)
    unsent_old = box.append([tel("a", ts=now - 2 * HOUR_MS)])  # unsent: retention is a day
    box._retention_due = 0.0
    box.append([tel("a", ts=now)])
    stats = box.stats()
    assert stats.history_rows == 1 and stats.history_oldest_ts == kept[0].ts
    assert stats.history_evicted_rows == 0  # the period is over: not an eviction
    assert stats.evicted_rows == 0 and evicted_events(box) == []
    assert ids(box.lease(Lane.LIVE, 10))[0] == unsent_old[0].id
    assert old  # (both old rows went)


def test_over_budget_history_goes_first_oldest_first_without_an_event(open_outbox) -> None:
    budget = 400_000
    box = open_outbox(budget)
    delivered = []
    for _ in range(60):
        box.append([noisy("a")])
        delivered += deliver(box)
    unsent = box.append([noisy("b") for _ in range(10)])  # ~40 kB waiting for the broker
    box.mark_boundary()  # (they are backlog now: `deliver` takes only the LIVE lane)
    for _ in range(40):
        box.append([noisy("c")])
        delivered += deliver(box)
    stats = box.stats()
    assert stats.used_bytes <= budget
    assert stats.history_evicted_rows > 0
    assert stats.evicted_rows == 0 and evicted_events(box) == []
    assert stats.backlog_rows == len(unsent)  # no unsent row went while history remained
    # What is left of the history is the newest part.
    left = {r.id for r in box.history(0, wall_ms() + 1) if r.id not in ids(unsent)}
    assert left == set(ids(delivered)[-len(left) :])
    assert stats.history_rows == len(left) == len(delivered) - stats.history_evicted_rows
    box.close()
    assert open_outbox(budget).stats().history_evicted_rows == stats.history_evicted_rows


def test_once_history_is_gone_unsent_telemetry_goes_with_its_event(open_outbox) -> None:
    box = open_outbox(300_000)
    box.append([noisy("a") for _ in range(20)])
    deliver(box)
    for _ in range(100):
        box.append([noisy("b")])
    stats = box.stats()
    assert stats.history_rows == 0 and stats.history_evicted_rows == 20
    assert stats.evicted_rows > 0
    events = evicted_events(box)
    assert events and set(events[0]["streams"]) == {"b"}  # only unsent rows are announced
    assert stats.used_bytes <= 300_000


def test_budget_eviction_is_occasional(open_outbox, monkeypatch) -> None:
    """With history filling the budget, an eviction frees the hysteresis margin at once;
    the appends after it do not evict again until that margin is used up."""
    calls = []
    real = Outbox._evict_history

    def counting(self: Outbox, need: int, **kwargs: object) -> int:
        rows = real(self, need, **kwargs)
        if rows and not kwargs:
            calls.append(rows)
        return rows

    monkeypatch.setattr(Outbox, "_evict_history", counting)
    budget = 1_000_000  # margin 5 %: 50 kB, about 12 noisy rows
    box = open_outbox(budget)
    for _ in range(400):
        box.append([noisy("a")])
        deliver(box)
    assert box.stats().history_evicted_rows > 0
    rows_per_call = box.stats().history_evicted_rows / len(calls)
    assert rows_per_call >= 10, calls


def test_disk_full_evicts_history_first(open_outbox, monkeypatch) -> None:
    monkeypatch.setattr(outbox_module, "DISK_FULL_SLICE", 50_000)
    box = open_outbox()
    box.append([msg(TrafficClass.ALARM)])
    box._db.execute("PRAGMA max_page_count = 100")  # 400 kB: SQLITE_FULL like a full disk
    for _ in range(150):
        box.append([noisy("a")])
        deliver(box)
    unsent = box.append([noisy("b")])
    stats = box.stats()
    assert stats.history_evicted_rows > 0
    assert stats.evicted_rows == 0 and stats.backlog_rows == 2  # the alarm and b
    assert ids(box.lease(Lane.LIVE, 10)) == ids(unsent)


# -- queries -------------------------------------------------------------------------------


def test_history_query_merges_delivered_and_unsent_in_time_order(open_outbox) -> None:
    box = open_outbox()
    now = wall_ms()
    # Commit order differs from time order (a late-committed poll): the query sorts by ts.
    first = box.append([tel("a", 0, ts=now - 50), tel("b", 0, ts=now - 40)])
    box.append([msg(TrafficClass.EVENT)])
    second = box.append([tel("a", 1, ts=now - 60), tel("b", 1, ts=now - 40)])
    deliver(box)
    third = box.append([tel("a", 2, ts=now - 45), tel("b", 2, ts=now - 10)])  # unsent
    everything = list(box.history(now - 1000, now))
    by_time = sorted(first + second + third, key=lambda r: (r.ts, r.id))
    assert [(r.id, r.stream, r.seq, r.ts) for r in everything] == [
        (r.id, r.stream, r.seq, r.ts) for r in by_time
    ]
    assert [r.batch for r in everything] == [r.batch for r in by_time]  # decoded
    # Half-open range, a stream filter, a limit.
    assert ids(box.history(now - 50, now - 10)) == ids(
        [r for r in by_time if now - 50 <= r.ts < now - 10]
    )
    assert {r.stream for r in box.history(now - 1000, now, streams=["b"])} == {"b"}
    assert list(box.history(now - 1000, now, streams=["nope"])) == []
    assert ids(box.history(now - 1000, now, limit=2)) == ids(by_time[:2])


def test_history_query_is_a_snapshot_the_writer_does_not_disturb(open_outbox) -> None:
    box = open_outbox()
    now = wall_ms()
    box.append([tel("a", i, ts=now - 1000 + i) for i in range(600)])
    rows = box.history(now - 1000, now)
    head = [next(rows) for _ in range(10)]
    deliver(box)  # acks (rows change index) and appends while the query is open
    box.append([tel("a", i, ts=now - 500 + i) for i in range(5)])
    rest = list(rows)
    assert [r.seq for r in head + rest] == list(range(1, 601))


# -- backfill ------------------------------------------------------------------------------


def test_resend_republishes_history_in_the_backlog_lane_with_its_seq(open_outbox) -> None:
    box = open_outbox()
    now = wall_ms()
    old = box.append([tel(d, i, ts=now - 600_000 + 1000 * i) for i in range(20) for d in "ab"])
    box.mark_boundary()
    deliver(box, Lane.BACKLOG)  # published after a reconnect: the BACKLOG cursor is past them
    box.mark_boundary()
    live = box.append([tel("a", 99, ts=now)])
    in_range = [r for r in old if now - 595_000 <= r.ts < now - 590_000 and r.stream == "a"]
    assert box.resend(now - 595_000, now - 590_000, streams=["a"]) == (5, 25)
    stats = box.stats()
    assert (stats.backlog_rows, stats.history_rows) == (6, 35)
    resent = box.lease(Lane.BACKLOG, 100)
    assert [(r.stream, r.seq, r.batch) for r in resent] == [
        (r.stream, r.seq, r.batch) for r in in_range
    ]
    assert ids(box.lease(Lane.LIVE, 100)) == ids(live)
    box.ack(ids(resent))
    assert box.stats().history_rows == 40
    assert box.resend(now - 595_000, now - 590_000, streams=["nope"]) == (0, 0)


def test_rows_delivered_live_in_this_connection_are_resent_as_backlog(open_outbox) -> None:
    box = open_outbox()
    box.mark_boundary()  # connected; everything from here is live
    now = wall_ms()
    rows = box.append([tel("a", i, ts=now - 100 + i) for i in range(10)])
    deliver(box, Lane.LIVE)
    newer = box.append([tel("a", 10, ts=now)])
    assert box.resend(now - 100, now - 95) == (5, 25)
    assert ids(box.lease(Lane.BACKLOG, 100)) == ids(rows[:5])
    assert ids(box.lease(Lane.LIVE, 100)) == ids(newer)  # not the resent rows
    box.requeue(ids(newer))
    box.requeue()  # a disconnect: they come back after the reconnect, as backlog
    box.mark_boundary()  # committed before the new CONNACK: `newer` is backlog too
    assert ids(box.lease(Lane.BACKLOG, 100)) == ids(rows[:5]) + ids(newer)
    assert box.lease(Lane.LIVE, 100) == []


def test_resent_rows_are_never_leased_twice(open_outbox) -> None:
    box = open_outbox()
    now = wall_ms()
    rows = box.append([tel("a", i, ts=now - 100 + i) for i in range(10)])
    box.mark_boundary()
    first = box.lease(Lane.BACKLOG, 4)
    box.ack(ids(first[:2]))
    box.requeue(ids(first[2:]))  # returned: below the cursor, in the heap
    deliver(box, Lane.BACKLOG)
    assert box.resend(now - 100, now) == (10, 50)
    leased = box.lease(Lane.BACKLOG, 3)
    box.requeue([leased[1].id])  # leased again below: not twice at the same time
    leased = [leased[0], leased[2], *box.lease(Lane.BACKLOG, 100)]
    assert sorted(ids(leased)) == ids(rows) and len(set(ids(leased))) == 10
    assert box.resend(now - 100, now) == (0, 0)  # all of it is unsent (in flight) now


def test_a_long_resend_commits_in_chunks(open_outbox, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(outbox_module, "EVICT_CHUNK_BYTES", 20_000)  # ~5 noisy rows
    box = open_outbox()
    rows = box.append([noisy("a") for _ in range(40)])
    deliver(box)
    commits = []
    real = box._write

    def counting(synchronous: str):
        commits.append(synchronous)
        return real(synchronous)

    monkeypatch.setattr(box, "_write", counting)
    assert box.resend(0, wall_ms() + 1) == (40, 40 * 500)
    assert len(commits) >= 6  # one transaction per ~20 kB (~180 kB in all), not one
    assert ids(box.lease(Lane.BACKLOG, 100)) == ids(rows)

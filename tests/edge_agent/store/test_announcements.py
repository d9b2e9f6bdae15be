"""Evictions are announced exactly and once, and an announcement is never evicted itself:
even with a limit of a few rows, every seq missing from a stream is named by exactly one
data_evicted event, across restarts and SIGKILLs."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from edge_agent.store import losses
from edge_agent.store.outbox import Lane, Outbox
from tests.edge_agent.store.conftest import DAY, evicted_events
from tests.edge_agent.store.test_outbox import noisy

DEVICES = ("a", "b", "c")


def missing(path: Path, device: str) -> set[int]:
    """Seqs of the device's stream that are no longer in the store (sent or not)."""
    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT last_seq FROM streams WHERE kind = 0 AND name = ?", (device,)
        ).fetchone()
        kept = {seq for (seq,) in db.execute(
            "SELECT o.seq FROM outbox o JOIN streams s ON s.id = o.stream "
            "WHERE o.cls = 0 AND s.kind = 0 AND s.name = ?", (device,))}  # fmt: skip
    return set(range(1, (found[0] if found else 0) + 1)) - kept


def announced(events: list[dict], device: str) -> set[int]:
    """The seqs the events name for a device; each exactly once (no two events, no two
    ranges overlap), and `rows` counts them."""
    seqs: list[int] = []
    for event in events:
        gap = event["streams"].get(device)
        if gap is None:
            continue
        named = [s for low, high in gap["ranges"] for s in range(low, high + 1)]
        assert len(named) == gap["rows"], gap
        assert (min(named), max(named)) == (gap["from_seq"], gap["to_seq"]), gap
        seqs += named
    assert len(seqs) == len(set(seqs)), f"{device}: a seq announced twice"
    return set(seqs)


def fill(box: Outbox, polls: int) -> None:
    """An outage: every poll of three devices committed, none published."""
    for _ in range(polls):
        box.append([noisy(d) for d in DEVICES])


def test_an_announcement_of_lost_data_is_never_evicted(open_outbox, tmp_path: Path) -> None:
    box = open_outbox(60_000)  # about a dozen rows of ~4 kB
    fill(box, 200)
    stats = box.stats()
    assert stats.classes["telemetry"].evicted_rows > 500
    # Before: each eviction appended its own data_evicted event, which the next ones
    # evicted once the telemetry was gone: announcements of lost data were lost.
    assert stats.classes["event"].evicted_rows == 0
    assert stats.unannounced_rows == stats.classes["telemetry"].evicted_rows
    events = evicted_events(box)
    assert len(events) == 1  # coalesced: one announcement, not one per eviction
    assert events[0]["reason"] == "disk_budget"
    for device in DEVICES:
        gone = missing(tmp_path / "outbox.db", device)
        assert gone and announced(events, device) == gone
    assert box.stats().unannounced_rows == 0


def test_announcements_coalesce_and_are_sealed_at_most_once_per_interval(
    open_outbox, tmp_path: Path
) -> None:
    box = open_outbox(60_000)
    fill(box, 50)
    first = box.announce()
    assert len(first) == 1
    fill(box, 50)
    assert box.announce() == []  # sealed less than ANNOUNCE_INTERVAL_S ago: still pending
    assert box.stats().unannounced_rows > 0
    box.mark_boundary()  # a (re)connect: what is pending goes out at once
    assert len(box.announce()) == 1
    rows = box.lease(Lane.PRIORITY, 100)
    events = [json.loads(r.payload) for r in rows if b"data_evicted" in r.payload]
    assert len(events) == 2
    for device in DEVICES:
        assert announced(events, device) == missing(tmp_path / "outbox.db", device)


def test_pending_announcements_survive_a_restart(open_outbox, tmp_path: Path) -> None:
    box = open_outbox(60_000)
    fill(box, 60)
    pending = box.stats().unannounced_rows
    assert pending > 0
    box.close()
    box = open_outbox(60_000)
    assert box.stats().unannounced_rows == pending
    events = evicted_events(box)
    for device in DEVICES:
        assert announced(events, device) == missing(tmp_path / "outbox.db", device)


def test_a_limit_below_a_few_rows_keeps_the_newest_and_says_so_once(
    open_outbox, tmp_path: Path
) -> None:
    box = open_outbox(10_000)  # less than the empty database: nothing useful fits
    for _ in range(100):
        rows = box.append([noisy("a"), noisy("b")])
        kept = {seq for (seq,) in sqlite3.connect(tmp_path / "outbox.db").execute(
            "SELECT seq FROM outbox WHERE cls = 0")}  # fmt: skip
        assert {r.seq for r in rows} <= kept  # the newest data is never what goes
    stats = box.stats()
    assert stats.too_small and "too small to keep anything useful" in stats.too_small
    assert stats.classes["event"].evicted_rows == 0
    box.announce(force=True)
    bodies = [json.loads(r.payload) for r in box.lease(Lane.PRIORITY, 1000)]
    assert [b["type"] for b in bodies] == ["store_too_small", "data_evicted"]
    assert bodies[0]["limit_bytes"] == stats.limit_bytes and bodies[0]["held_s"] < 60
    for device in ("a", "b"):
        assert announced(bodies[1:], device) == missing(tmp_path / "outbox.db", device)


def test_the_eviction_warning_is_rate_limited(open_outbox, capsys) -> None:
    box = open_outbox(60_000)
    fill(box, 100)
    assert box.stats().evicted_rows > 200
    lines = [line for line in capsys.readouterr().out.splitlines() if "evicted unsent" in line]
    assert len(lines) == 1, lines  # one per EVICT_LOG_S, with the totals since the last


def test_a_throttled_line_carries_the_totals_it_held_back(monkeypatch) -> None:
    lines: list[tuple[str, dict]] = []
    now = [1000.0]
    monkeypatch.setattr(losses.time, "monotonic", lambda: now[0])
    throttle = losses.Throttle(lambda m, **f: lines.append((m, f)), "evicted", 60, ["rows"])
    throttle.note(rows=2, streams={"a"}, pending=10)
    for rows, stream, pending in ((3, "b", 13), (4, "a", 17)):
        now[0] += 1
        throttle.note(rows=rows, streams={stream}, pending=pending)
    assert lines == [("evicted", {"count": 1, "rows": 2, "streams": ["a"], "pending": 10})]
    now[0] += 60
    throttle.note(rows=1, streams={"c"}, pending=18)
    assert lines[1] == ("evicted", {"count": 3, "rows": 8, "streams": ["a", "b", "c"],
                                    "pending": 18})  # fmt: skip


_WRITER = textwrap.dedent(
    """
    import json, random, sys
    from pathlib import Path
    from edge_agent.points import Batch, Reading, wall_ms
    from edge_agent.store.outbox import Lane, Outbox, Record, TrafficClass

    rng = random.Random(int(sys.argv[2]))
    box = Outbox(Path(sys.argv[1]), 60_000, 86400.0)
    while True:
        ts = wall_ms()
        box.append([Record(TrafficClass.TELEMETRY, d, ts, batch=Batch(d, ts, tuple(
            Reading(f"p{j}", rng.random(), ts) for j in range(500)))) for d in "abc"])
        if rng.random() < 0.2:  # connected for a moment: publish, some PUBACKs recorded
            box.announce(force=True)
            leased = box.lease(Lane.PRIORITY, 100)
            for row in leased:
                body = {**json.loads(row.payload), "seq": row.seq}
                print("PUB", json.dumps({"seq": row.seq, "body": body}), flush=True)
            box.ack([row.id for row in leased if rng.random() < 0.5])
    """
)


def test_sigkill_never_separates_an_eviction_from_its_announcement(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rng = random.Random(20261204)
    published: dict[int, dict] = {}  # event seq -> body, as the platform would dedupe
    for run in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(run)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(rng.uniform(0.3, 1.2))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        for line in out.split("\n")[:-1]:  # the last one may be cut by the kill
            if not line.startswith("PUB "):
                continue  # the outbox's own log lines
            item = json.loads(line[4:])
            assert published.setdefault(item["seq"], item["body"]) == item["body"]
    box = Outbox(path, 60_000, DAY)
    try:
        assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for event in evicted_events(box):  # sealed after the last kill, or never acked
            assert published.setdefault(event["seq"], event) == event
    finally:
        box.close()
    events = [b for b in published.values() if b["type"] == "data_evicted"]
    for device in "abc":
        gone = missing(path, device)
        assert len(gone) > 100, "the writer did not evict"
        assert announced(events, device) == gone

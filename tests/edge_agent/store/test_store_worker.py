"""The store writer when the store refuses writes (issue 10 #15): polls that never reach the
outbox had no seq, so no gap shows them; they are counted, logged and announced."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from edge_agent.store.outbox import Lane, Outbox
from edge_agent.store.worker import StoreWorker
from tests.edge_agent.store.conftest import BIG, DAY
from tests.edge_agent.store.test_outbox import noisy

IDENTITY = {"site": "s1", "gateway": "g1"}


async def _full_store(path: Path, **kwargs: object) -> StoreWorker:
    """An open writer whose database may not grow by a page: a poll of ~4 kB is refused
    with 'database or disk is full' (and nothing can be evicted for it), a small event
    still fits in a page that has room."""
    store = StoreWorker(path, BIG, DAY, identity=IDENTITY, **kwargs)
    await store.open()
    db = store.outbox.connection
    pages = await store.call(lambda: db.execute("PRAGMA page_count").fetchone()[0])
    await store.call(db.execute, f"PRAGMA max_page_count = {pages}")
    return store


def _events(path: Path, type_: str) -> list[dict]:
    box = Outbox(path, BIG, DAY)
    try:
        bodies = [json.loads(row.payload) for row in box.lease(Lane.PRIORITY, 1000)]
    finally:
        box.close()
    return [b for b in bodies if b["type"] == type_]


async def test_polls_the_store_refuses_at_the_stop_are_counted_and_announced(
    tmp_path: Path, capsys
) -> None:
    path = tmp_path / "outbox.db"
    store = await _full_store(path)
    polls = [noisy("ahu-1") for _ in range(5)] + [noisy("ch-1") for _ in range(3)]
    for record in polls:
        store.submit(record)
    assert await store.flush() is False  # kept in memory
    assert store.stats()["pending_records"] == 8 and store.stats()["error"]
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 1  # one attempt, no retry loop at the stop
    stats = store.stats()
    assert (stats["dropped_rows"], stats["dropped_points"]) == (8, 4000)
    assert "records held in memory could not be written and are lost" in capsys.readouterr().out
    (event,) = _events(path, "data_dropped")  # small enough to be stored alone
    assert event["reason"] == "shutdown" and event["site"] == "s1"
    assert event["classes"] == {"telemetry": {"rows": 8, "points": 4000}}
    ahu = [r.ts for r in polls[:5]]
    assert event["streams"]["ahu-1"] == {"rows": 5, "points": 2500, "from_ts": min(ahu),
                                         "to_ts": max(ahu)}  # fmt: skip
    assert event["streams"]["ch-1"]["rows"] == 3


async def test_polls_dropped_for_memory_are_announced_once_the_store_recovers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    store = await _full_store(path, max_pending_points=2000)  # four polls of 500 points
    for _ in range(10):
        store.submit(noisy("ahu-1"))
    assert await store.flush() is False
    assert store.stats()["dropped_rows"] == 6 and store.stats()["dropped_unannounced"] == 6
    db = store.outbox.connection
    await store.call(db.execute, "PRAGMA max_page_count = 1073741823")  # room again
    assert await store.flush() is True
    assert store.stats()["dropped_unannounced"] == 0 and store.stats()["dropped_points"] == 3000
    await store.close()
    (event,) = _events(path, "data_dropped")
    assert event["reason"] == "store_failing"
    assert event["streams"]["ahu-1"]["rows"] == 6 and event["streams"]["ahu-1"]["points"] == 3000


async def test_an_append_cut_short_by_the_stop_is_counted_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    store = await _full_store(path)
    store._executor.submit(time.sleep, 0.5)  # the store thread is busy for a moment
    for _ in range(3):
        store.submit(noisy("ahu-1"))
    flushing = asyncio.create_task(store.flush())
    await asyncio.sleep(0.1)  # its append waits behind the busy thread
    flushing.cancel()  # as the writer task is cancelled at the stop
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await store.close()  # the append finishes (and fails): its polls are dropped, counted
    assert store.stats()["dropped_rows"] == 3
    (event,) = _events(path, "data_dropped")
    assert event["classes"]["telemetry"]["rows"] == 3

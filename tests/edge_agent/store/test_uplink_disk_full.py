"""A full disk never takes the uplink down (issue 10 #14): the real uplink, a real mosquitto
and an outbox on a real, full filesystem whose acks cannot be recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber
from edge_agent.config.models import AgentConfig
from edge_agent.points import wall_ms
from edge_agent.store.worker import StoreWorker
from edge_agent.uplink import Uplink
from tests.edge_agent.store.test_backfill import poll, until
from tests.filesystems import fill_disk


async def test_acks_that_cannot_be_recorded_leave_the_uplink_up(
    small_filesystem: Path, broker: LocalBroker, platform: PlatformSubscriber
) -> None:
    config = AgentConfig.model_validate({
        "site": {"id": "test-site"}, "gateway": {"id": "gw1"},
        "uplink": {"endpoints": [{"host": "127.0.0.1", "port": broker.port}],
                   "topic_prefix": "t", "inflight": 64},
    })  # fmt: skip
    store = StoreWorker(small_filesystem / "outbox.db", 10**9, 86_400.0)
    await store.open()
    outbox = store.outbox
    assert outbox is not None
    now = wall_ms()
    for i in range(600):  # an outage's backlog
        store.submit_batch(poll("ahu-1", now - 600_000 + 1000 * i, i))
    await store.flush()
    assert outbox.stats().backlog_rows == 600
    # Everything is in the database file and the WAL is empty: with the disk full, any
    # write (an ack, or the eviction that would make room for it) needs space that is not
    # there, until the filler goes.
    await store.call(lambda: outbox.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
    fill_disk(small_filesystem / "filler")
    uplink = Uplink(config, store, "test")
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: len(platform.telemetry().get("ahu-1", [])) >= 600, 20, "delivery")
        await until(lambda: uplink.ack_error is not None, 10, "the failing acks")
        await asyncio.sleep(2.5)  # a few retries
        assert not task.done(), task.exception()  # it used to crash with StoreError
        assert uplink.state == "connected" and uplink.stats()["unrecorded_acks"] == 600
        stats = outbox.stats()
        assert stats.backlog_rows == 600 and stats.in_flight == 600
        (small_filesystem / "filler").unlink()  # room again: the next retry records them
        await until(lambda: outbox.stats().history_rows == 600, 10, "the acks recorded")
        assert uplink.ack_error is None and uplink.stats()["unrecorded_acks"] == 0
    finally:
        await uplink.stop(2)
        await asyncio.wait_for(task, 10)
        await store.close()
    seqs = [b["seq"] for b in platform.telemetry()["ahu-1"]]
    assert seqs == list(range(1, 601))  # the rows stayed leased: none published twice

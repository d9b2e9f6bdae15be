"""Backfill through the real uplink and a real mosquitto: history is published again with
its original seq, flagged historical, while live data keeps flowing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.broker_tools import LocalBroker, PlatformSubscriber
from edge_agent.config.models import AgentConfig
from edge_agent.points import Batch, Reading, wall_ms
from edge_agent.store.worker import StoreWorker
from edge_agent.uplink import Uplink

DEVICES = ("ahu-1", "chiller-1", "meter-1")


def poll(device: str, ts: int, i: int) -> Batch:
    readings = (Reading("c", i, ts), Reading("t", round(20 + 0.1 * i, 1), ts))
    return Batch(device, ts, readings)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_backfill_republishes_history_with_original_seq(
    tmp_path: Path, broker: LocalBroker, platform: PlatformSubscriber
) -> None:
    config = AgentConfig.model_validate(
        {
            "site": {"id": "test-site"},
            "gateway": {"id": "gw1"},
            "uplink": {
                "endpoints": [{"host": "127.0.0.1", "port": broker.port}],
                "topic_prefix": "t",
                "reconnect": {"initial": 0.2, "max": 1.0},
            },
        }
    )
    store = StoreWorker(tmp_path / "outbox.db", 10**9, 86_400.0, commit_interval_s=0.02)
    await store.open()
    outbox = store.outbox
    assert outbox is not None
    now = wall_ms()
    # Polled during an outage ten minutes ago: published as backlog after the connect.
    old_ts = [now - 600_000 + 5000 * i for i in range(20)]
    for i, ts in enumerate(old_ts):
        for device in DEVICES:
            store.submit_batch(poll(device, ts, i))
    await store.flush()
    uplink = Uplink(config, store, "test")
    tasks = [asyncio.create_task(store.run()), asyncio.create_task(uplink.run())]
    try:
        await until(lambda: uplink.state == "connected", 10, "the connection")
        live_ts = []
        for i in range(20, 40):  # polled live, delivered in the LIVE lane of this connection
            live_ts.append(wall_ms())
            for device in DEVICES:
                store.submit_batch(poll(device, live_ts[-1], i))
            await asyncio.sleep(0.01)
        await until(lambda: sum(map(len, platform.telemetry().values())) >= 120, 20, "delivery")
        stats = await store.call(outbox.stats)
        await until(lambda: outbox.stats().history_rows == 120, 10, "the acks")
        first = {d: list(bodies) for d, bodies in platform.telemetry().items()}
        assert {d: [b["seq"] for b in first[d]] for d in DEVICES} == {
            d: list(range(1, 41)) for d in DEVICES
        }
        assert all(b["historical"] == (b["seq"] <= 20) for d in DEVICES for b in first[d])

        # Backfill from the 6th old poll to (not including) the 16th live one.
        since, until_ts = old_ts[5], live_ts[15]
        rows, points = await store.call(outbox.resend, since, until_ts)
        assert (rows, points) == (3 * 30, 3 * 30 * 2)
        stats = await store.call(outbox.stats)
        assert (stats.backlog_rows, stats.history_rows) == (90, 30)
        store.submit_batch(poll("ahu-1", wall_ms(), 40))  # live data goes on (and wakes it)
        await until(lambda: len(platform.telemetry()["ahu-1"]) >= 71, 20, "the backfill")
        await until(lambda: sum(map(len, platform.telemetry().values())) >= 211, 10, "all")
        await until(lambda: outbox.stats().backlog_rows == 0, 10, "the acks")
    finally:
        await uplink.stop(2)
        await asyncio.wait_for(tasks[1], 10)
        tasks[0].cancel()
        await store.close()

    final = platform.telemetry()
    for device in DEVICES:
        bodies = final[device]
        again = bodies[len(first[device]) :]
        replayed = [b for b in again if b["seq"] <= 40]
        # Exactly the rows in the range, in order, each with its original seq and content.
        assert [b["seq"] for b in replayed] == list(range(6, 36)), device
        original = {b["seq"]: b for b in first[device]}
        for body in replayed:
            assert body["historical"] is True
            assert body["values"] == original[body["seq"]]["values"]
            assert body["ts"] == original[body["seq"]]["ts"]
        assert since <= replayed[0]["ts"] and replayed[-1]["ts"] < until_ts
    fresh = [b for b in final["ahu-1"] if b["seq"] == 41]
    assert len(fresh) == 1 and fresh[0]["historical"] is False

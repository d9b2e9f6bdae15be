from __future__ import annotations

import asyncio
import itertools
import json
import time

from drivers.base import Link
from drivers.fake import FakeDevice, FakeDriver
from edge_agent.cache import PointCache
from edge_agent.points import Quality
from edge_agent.scheduler import Deadlines, Poller
from tests.events import EventLog


def _device(device_id: str = "d1", interval: float = 0.05, **connection) -> FakeDevice:
    return FakeDevice.model_validate(
        {
            "id": device_id,
            "driver": "fake",
            "poll_interval": interval,
            "timeout": interval / 2,
            "connection": connection,
            "points": [
                {"id": "c", "kind": "multistate", "signal": {"mode": "counter", "rate": 1}},
                {"id": "t", "signal": {"mode": "walk", "value": 7, "resolution": 0.1}},
            ],
        }
    )


class Recorder:
    def __init__(self) -> None:
        self.batches = []
        self.records = EventLog()
        self.events = self.records.events()

    def event_types(self) -> list[str]:
        return self.records.types()


def _poller(
    device: FakeDevice, rec: Recorder, link: Link | None = None, cache=None, driver=None
) -> Poller:
    driver = driver or FakeDriver(device, link or Link(device.id))
    return Poller(device, driver, rec.batches.append, cache or PointCache(), rec.events)


async def _run_for(seconds: float, *pollers: Poller) -> None:
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_deadlines_do_not_drift_and_skip_missed_slots():
    d = Deadlines(start=100.0, interval=5.0)
    assert d.advance(now=101.0) == 0 and d.next == 105.0
    assert d.advance(now=109.9) == 0 and d.next == 110.0
    # A 13 s stall: slots 115 and 120 are skipped, not caught up in a burst.
    assert d.advance(now=123.0) == 2 and d.next == 125.0
    assert d.advance(now=125.1, slots=4) == 0 and d.next == 145.0


async def test_polls_stay_on_their_grid():
    rec = Recorder()
    poller = _poller(_device(interval=0.05), rec)
    start = time.time() * 1000
    await _run_for(1.02, poller)
    stamps = [b.ts for b in rec.batches]
    assert 18 <= len(stamps) <= 22
    # Slot k starts at start + 50k ms; lateness does not accumulate.
    lateness = [ts - (start + 50 * k) for k, ts in enumerate(stamps)]
    assert max(lateness) - min(lateness) < 30, lateness


async def test_a_silent_device_backs_off_and_is_reported_once():
    rec = Recorder()
    poller = _poller(_device(offline=True, interval=0.02), rec)
    await _run_for(1.5, poller)
    # 75 slots in 1.5 s; with backoff doubling per failure, only a handful of attempts.
    assert 4 <= len(rec.batches) <= 9
    assert rec.event_types() == ["device_down"]
    assert all(
        r.quality is Quality.BAD and r.reason == "timeout" for b in rec.batches for r in b.readings
    )
    assert poller.health.up is False and poller.health.failures == len(rec.batches)


async def test_recovery_is_reported_once(tmp_path):
    control = tmp_path / "faults.json"
    control.write_text('{"offline": true}')
    rec = Recorder()
    poller = _poller(_device(control_file=str(control), interval=0.02), rec)
    task = asyncio.create_task(poller.run())
    await asyncio.sleep(0.1)
    control.write_text("{}")
    await asyncio.sleep(0.6)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert rec.event_types() == ["device_down", "device_recovered"]
    assert poller.health.up and rec.batches[-1].readings[0].quality is Quality.GOOD


async def test_devices_on_one_link_keep_the_gap():
    link = Link("rs485-1", gap_s=0.03)
    rec = Recorder()
    pollers = [_poller(_device(f"d{i}", interval=0.05), rec, link=link) for i in range(3)]
    await _run_for(0.6, *pollers)
    stamps = sorted(b.readings[0].ts for b in rec.batches)  # when each device answered
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) >= 10
    assert min(gaps) >= 28  # ms; the link serialises the three devices


async def test_a_failing_point_does_not_spoil_the_others(tmp_path):
    control = tmp_path / "faults.json"
    control.write_text(json.dumps({"points": {"t": {"fail": "exception"}}}))
    rec = Recorder()
    batch = await _poller(_device(control_file=str(control)), rec).poll_once()
    by_point = {r.point: r for r in batch.readings}
    assert by_point["t"].quality is Quality.BAD and by_point["t"].reason == "exception 2"
    assert by_point["c"].quality is Quality.GOOD and by_point["c"].value == 1


class BrokenDriver(FakeDriver):
    async def read(self, points):
        raise RuntimeError("bug in driver")


async def test_a_driver_bug_becomes_bad_quality_not_a_dead_poller():
    rec = Recorder()
    device = _device(interval=0.02)
    poller = _poller(device, rec, driver=BrokenDriver(device, Link("x")))
    await _run_for(0.2, poller)
    assert rec.batches
    assert rec.batches[0].readings[0].reason == "driver error: RuntimeError: bug in driver"
    assert rec.event_types() == ["device_down"]


async def test_cache_marks_old_values_stale_without_restamping():
    rec = Recorder()
    cache = PointCache()
    device = _device(interval=0.02)
    batch = await _poller(device, rec, cache=cache).poll_once()
    assert cache.get("d1.t").quality is Quality.GOOD
    await asyncio.sleep(0.1)  # > 3 intervals without a poll
    stale = cache.get("d1.t")
    assert stale.quality is Quality.STALE and stale.ts == batch.ts
    assert stale.value == batch.readings[1].value

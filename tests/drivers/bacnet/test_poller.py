"""The driver under the agent's Poller: down and recovered once each, no exceptions."""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.cache import PointCache
from edge_agent.points import Batch, Quality
from edge_agent.scheduler import Poller
from tests.drivers.bacnet.conftest import POINTS, device_config
from tests.drivers.bacnet.sim import SimProcess
from tests.events import EventLog


async def test_poller_reports_down_and_recovered(sim: SimProcess, open_driver: Callable) -> None:
    device = device_config(sim.address, POINTS)
    driver = await open_driver(device)
    batches: list[Batch] = []
    records = EventLog()
    poller = Poller(device, driver, batches.append, PointCache(), records.events())
    await poller.poll_once()
    sim.command(offline=True)
    await poller.poll_once()
    await poller.poll_once()
    sim.command(offline=False)
    await poller.poll_once()

    assert [all(r.quality is Quality.GOOD for r in b.readings) for b in batches] == [
        True,
        False,
        False,
        True,
    ]
    assert {r.reason for r in batches[1].readings} == {"timeout"}
    assert records.types() == ["device_down", "device_recovered"]
